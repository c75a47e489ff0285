# Tip-Adapter-F: the official fine-tuning recipe (see configs/tip_f_imagenet_16shot.py for the walk-through):
# trainable cache keys, AdamW lr 1e-3 / eps 1e-4 / wd 0.01, cosine to 0 per iteration, batch 256, 20 epochs
# (EuroSAT: 100), epoch kept on the selection split, alpha/beta searched again, test. Method configs add
# model.head.train_keys=True and the dataset's search_scale and hp_selection.
max_epochs = 20  # the cosine schedule ends with the loop
train_from = 'feature_bank'  # or 'image': re-encode augmented images with CLIP at every step (official)
train_cfg = dict(type='FinetuneLoop', max_epochs=max_epochs, train_from=train_from, search=True,
                 search_step=[200, 20])
val_cfg = dict()
# --auto-scale-lr: the lr above is for a total batch of 256 (the official single-GPU batch); with it enabled,
# mmengine scales the lr by (world size x train batch) / 256
auto_scale_lr = dict(base_batch_size=256, enable=False)
test_cfg = dict(type='FeatureTestLoop')  # on the test split's features (feature store)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, eps=1e-4, weight_decay=0.01, betas=(0.9, 0.999)))
# no end / T_max: mmengine ends the schedule with the loop's max_epochs
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, eta_min=0., convert_to_iter_based=True)]
# the keys are trainable, so plain DDP (the training-free configs skip frozen children)
model_wrapper_cfg = dict(type='MMDistributedDataParallel', broadcast_buffers=False, find_unused_parameters=False)
custom_hooks = [dict(type='BuildCacheHook', augment_epochs=10), dict(type='ResultsHook')]
