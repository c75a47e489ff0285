# Training-free Tip-Adapter: build the cache, grid-search alpha/beta on the selection split of hp_selection
# (tip_adapter_mm.protocol), save, test. The method config adds the dataset's search_scale and hp_selection.
train_cfg = dict(type='TrainingFreeLoop', search=True, search_step=[200, 20])
val_cfg = dict()
# nothing trains (the lr is 0): --auto-scale-lr has nothing to scale
auto_scale_lr = dict(base_batch_size=256, enable=False)
test_cfg = dict(type='FeatureTestLoop')  # on the test split's features (feature store)
# the runner requires an optimizer; nothing is trained
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.))
# nothing requires a gradient, so plain DDP refuses the model; this wrapper skips frozen children
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel')
custom_hooks = [dict(type='BuildCacheHook', augment_epochs=10), dict(type='ResultsHook')]
