# Tip-Adapter-F on the embedded demo: the demo's Tip-Adapter config with the Tip-Adapter-F recipe of
# tip_f_imagenet_16shot.py (see there).
_base_ = ['./tip_digits_16shot.py']
method = 'Tip-Adapter-F'
max_epochs = 20
train_from = 'feature_bank'
model = dict(head=dict(train_keys=True))
train_cfg = dict(_delete_=True, type='FinetuneLoop', max_epochs=max_epochs, selection='best_val',
                 search=True, search_scale=[20, 20], search_step=[200, 20])
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, eps=1e-4, weight_decay=0.01, betas=(0.9, 0.999)))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
                        eta_min=0., convert_to_iter_based=True)]
model_wrapper_cfg = dict(_delete_=True, type='MMDistributedDataParallel', broadcast_buffers=False,
                         find_unused_parameters=False)
train_dataloader = dict(batch_size=256)
