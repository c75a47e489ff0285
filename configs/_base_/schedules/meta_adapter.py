# Meta-Adapter: meta-train the adapter on the base classes (base_classes, top level) with the official
# recipe (AdamW lr 1e-4, eps 1e-4, wd 0.01, cosine per iteration, batch 64, 5 epochs), keep the epoch with
# the best validation accuracy, report base, novel and all-class accuracy. Method configs set the
# MetaAdapterHead, batch 64 and the BaseNovelAccuracy evaluators.
max_epochs = 5
train_from = 'feature_bank'
train_cfg = dict(type='FinetuneLoop', max_epochs=max_epochs, selection='best_val', search=False)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-4, eps=1e-4, weight_decay=0.01, betas=(0.9, 0.999)))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
                        eta_min=0., convert_to_iter_based=True)]
model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=False)
custom_hooks = [dict(type='BuildCacheHook', augment_epochs=10), dict(type='ResultsHook')]
