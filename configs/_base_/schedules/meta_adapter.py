# Meta-Adapter: meta-train the adapter on the base classes (base_classes, top level) with the official
# recipe (AdamW lr 1e-4, eps 1e-4, wd 0.01, cosine per iteration, batch 64, 5 epochs), keep the epoch chosen
# on the selection split, report base, novel and all-class accuracy. Method configs set the MetaAdapterHead,
# batch 64, the BaseNovelAccuracy evaluators and the dataset's hp_selection.
max_epochs = 5  # the cosine schedule ends with the loop
train_from = 'feature_bank'  # or 'image': the base-class query images re-encoded at every step
train_cfg = dict(type='FinetuneLoop', max_epochs=max_epochs, train_from=train_from, search=False)
val_cfg = dict()
# --auto-scale-lr: the lr above is for a total batch of 64 (the official single-GPU batch); with it enabled,
# mmengine scales the lr by (world size x train batch) / 64
auto_scale_lr = dict(base_batch_size=64, enable=False)
test_cfg = dict(type='FeatureTestLoop')  # on the test split's features (feature store)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-4, eps=1e-4, weight_decay=0.01, betas=(0.9, 0.999)))
# no end / T_max: mmengine ends the schedule with the loop's max_epochs
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, eta_min=0., convert_to_iter_based=True)]
model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=False)
custom_hooks = [dict(type='BuildCacheHook', augment_epochs=10), dict(type='ResultsHook')]
