# Meta-Adapter, CLIP RN50, ImageNet, 16 shots, cross-category: meta-train the gated attention adapter on the
# base classes (queries: their K-shot images, from the stored feature bank), keep the epoch with the best
# validation accuracy, report base, novel and all-class test accuracy (every image classified among all
# classes). Official recipe: AdamW lr 1e-4, eps 1e-4, wd 0.01, cosine per iteration, batch 64, 5 epochs,
# cross-entropy over all classes (loss_classes='base' restricts the softmax to the base classes).
# base_classes: the base split (list of class indices, e.g. from tools/rank_classes.py, which ranks the
# classes by zero-shot accuracy on the training supports only, as the official protocol; default 70%).
_base_ = ['./tip_imagenet_16shot.py']
method = 'Meta-Adapter'
max_epochs = 5
train_from = 'feature_bank'
base_classes = list(range(700))  # replace with the ranking of tools/rank_classes.py for the official split
model = dict(head=dict(_delete_=True, type='MetaAdapterHead', num_classes=1000, feat_dim=1024, num_shots=16,
                       loss_classes='all', topk=(1, 5)))
train_dataloader = dict(batch_size=64)
train_cfg = dict(_delete_=True, type='FinetuneLoop', max_epochs=max_epochs, selection='best_val', search=False)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-4, eps=1e-4, weight_decay=0.01, betas=(0.9, 0.999)))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
                        eta_min=0., convert_to_iter_based=True)]
model_wrapper_cfg = dict(_delete_=True, type='MMDistributedDataParallel', broadcast_buffers=False,
                         find_unused_parameters=False)
val_evaluator = dict(_delete_=True, type='BaseNovelAccuracy', topk=(1, 5))
test_evaluator = dict(_delete_=True, type='BaseNovelAccuracy', topk=(1, 5))
