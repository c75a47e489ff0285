# Tip-Adapter-F, CLIP RN50, ImageNet, 16 shots: the Tip-Adapter config with trainable cache keys and the
# official fine-tuning recipe: AdamW lr 1e-3, eps 1e-4, weight decay 0.01, cosine annealing to 0 stepped
# every iteration, batch 256, 20 epochs, cross-entropy on the Tip logits with the initial alpha and beta.
# Then the epoch with the best validation accuracy is kept, alpha/beta are searched again with the trained
# keys, and the test split is evaluated. Only the keys require a gradient (fp32 master weights).
_base_ = ['./tip_imagenet_16shot.py']
method = 'Tip-Adapter-F'
max_epochs = 20  # sets the loop and the cosine schedule together (EuroSAT: 100)
train_from = 'feature_bank'  # or 'image': re-encode augmented images with CLIP at every step (official)
model = dict(head=dict(train_keys=True))
train_cfg = dict(_delete_=True, type='FinetuneLoop', max_epochs=max_epochs, selection='best_val',
                 search=True, search_scale=[7, 3], search_step=[200, 20])
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, eps=1e-4, weight_decay=0.01, betas=(0.9, 0.999)))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs,
                        eta_min=0., convert_to_iter_based=True)]
# the keys are trainable, so plain DDP (the training-free configs skip frozen children)
model_wrapper_cfg = dict(_delete_=True, type='MMDistributedDataParallel', broadcast_buffers=False,
                         find_unused_parameters=False)
