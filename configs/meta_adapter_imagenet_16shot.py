# Meta-Adapter, CLIP RN50, ImageNet, 16 shots, cross-category: meta-train the gated attention adapter on the
# base classes (queries: their K-shot images, from the stored feature bank), keep the epoch with the best
# validation accuracy, report base, novel and all-class test accuracy (every image classified among all
# classes). Official recipe (_base_/schedules/meta_adapter.py): AdamW lr 1e-4, eps 1e-4, wd 0.01, cosine per
# iteration, batch 64, 5 epochs, cross-entropy over all classes (loss_classes='base': base classes only).
# base_classes: the default takes the first 700 class indices (the official base count); for the official
# rule (zero-shot accuracy on the training supports only) use tools/rank_classes.py.
_base_ = [
    './_base_/models/clip_rn50.py',
    './_base_/datasets/imagenet_fewshot.py',
    './_base_/schedules/meta_adapter.py',
    './_base_/default_runtime.py',
]
method = 'Meta-Adapter'
base_classes = list(range(700))
model = dict(head=dict(_delete_=True, type='MetaAdapterHead', num_classes=1000, feat_dim=1024, num_shots=16,
                       loss_classes='all', topk=(1, 5)))
train_dataloader = dict(batch_size=64)
val_evaluator = dict(_delete_=True, type='BaseNovelAccuracy', topk=(1, 5))
test_evaluator = dict(_delete_=True, type='BaseNovelAccuracy', topk=(1, 5))
