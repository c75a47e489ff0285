# Meta-Adapter on the embedded demo: meta-trained on 7 digit classes, evaluated on all 10 (base, novel, all);
# the recipe of meta_adapter_imagenet_16shot.py (see there).
_base_ = ['./tip_digits_16shot.py']
method = 'Meta-Adapter'
max_epochs = 5
train_from = 'feature_bank'
base_classes = [0, 1, 2, 3, 4, 5, 6]  # novel: 7, 8, 9
model = dict(head=dict(_delete_=True, type='MetaAdapterHead', num_classes=10, feat_dim=64, num_shots=16,
                       loss_classes='all', topk=(1, 5)))
train_dataloader = dict(batch_size=64)
train_cfg = dict(_delete_=True, type='FinetuneLoop', max_epochs=max_epochs, selection='best_val', search=False)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-4, eps=1e-4, weight_decay=0.01, betas=(0.9, 0.999)))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
                        eta_min=0., convert_to_iter_based=True)]
model_wrapper_cfg = dict(_delete_=True, type='MMDistributedDataParallel', broadcast_buffers=False,
                         find_unused_parameters=False)
