# Meta-Adapter on the embedded demo: meta-trained on 7 digit classes, evaluated on all 10 (base, novel, all);
# the recipe of configs/_base_/schedules/meta_adapter.py. The base digits are the dataset's (0-6; novel 7-9).
_base_ = [
    './_base_/models/tiny_clip.py',
    './_base_/datasets/digits_fewshot.py',
    './_base_/schedules/meta_adapter.py',
    './_base_/default_runtime.py',
]
method = 'Meta-Adapter'
# the dataset's settings (top-level keys of its _base_ file) where the head and the loop read them
model = dict(head=dict(type='MetaAdapterHead', num_classes={{_base_.num_classes}}, num_shots={{_base_.num_shots}},
                       base_classes={{_base_.base_classes}}, loss_classes='all'))
# the data protocol: 'default', the project's (cache: the K-shot train sample; queries: its base-class images,
# or query_shots held-out images per base class; evaluated: the whole test split), or 'meta_adapter_official',
# Meta-Adapter's own (with hp_selection='legacy_test': see the *_official.py configs and the README)
data_protocol = 'default'
query_shots = None
train_dataloader = dict(batch_size=64, dataset=dict(protocol=data_protocol, base_classes={{_base_.base_classes}},
                                                    query_shots=query_shots))
val_dataloader = dict(dataset=dict(protocol=data_protocol, base_classes={{_base_.base_classes}}))
test_dataloader = dict(dataset=dict(protocol=data_protocol, base_classes={{_base_.base_classes}}))
train_cfg = dict(hp_selection={{_base_.hp_selection}})
default_hooks = dict(logger=dict(interval=10))
