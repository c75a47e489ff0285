# Tip-Adapter-F: the official fine-tuning recipe (see configs/tip_f_imagenet_16shot.py for the walk-through):
# trainable cache keys, AdamW lr 1e-3 / eps 1e-4 / wd 0.01, cosine to 0 per iteration, batch 256,
# max_epochs (top level; a dataset base may set it, EuroSAT 100), epoch kept on validation, alpha/beta
# searched again, test. Method configs add model.head.train_keys=True to a CacheHead model base.
max_epochs = 20
train_from = 'feature_bank'
train_cfg = dict(type='FinetuneLoop', max_epochs=max_epochs, selection='best_val', search=True,
                 search_scale=[7, 3], search_step=[200, 20])
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, eps=1e-4, weight_decay=0.01, betas=(0.9, 0.999)))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
                        eta_min=0., convert_to_iter_based=True)]
model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=False)
custom_hooks = [dict(type='BuildCacheHook', augment_epochs=10), dict(type='ResultsHook')]
