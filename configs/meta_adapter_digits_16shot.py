# Meta-Adapter on the embedded demo: meta-trained on 7 digit classes, evaluated on all 10 (base, novel, all);
# the recipe of configs/_base_/schedules/meta_adapter.py.
_base_ = [
    './_base_/models/tiny_clip.py',
    './_base_/datasets/digits_fewshot.py',
    './_base_/schedules/meta_adapter.py',
    './_base_/default_runtime.py',
]
method = 'Meta-Adapter'
base_classes = [0, 1, 2, 3, 4, 5, 6]  # novel: 7, 8, 9
model = dict(head=dict(_delete_=True, type='MetaAdapterHead', num_classes=10, feat_dim=64, num_shots=16,
                       loss_classes='all', topk=(1, 5)))
train_dataloader = dict(batch_size=64)
default_hooks = dict(logger=dict(interval=10))
