# Meta-Adapter, CLIP RN50, FGVCAircraft, 16 shots, under Meta-Adapter's OFFICIAL protocol, by name: to compare with
# its published numbers. The project's own protocol on the same data is meta_adapter_fgvc_aircraft_16shot.py; the
# README's "Differences from the official code" lists what each switch below changes.
# - data_protocol='meta_adapter_official': the official readers' lists, one random.seed(fewshot_seed) stream
#   queries: K images per base class of train; cache: K images per class of the VALIDATION split;
#   evaluated: K images per novel class of the test split (with replacement where a class has fewer);
# - hp_selection='legacy_test': the epoch is selected on the test split, as the official code does;
# - train_cfg.precision='official_fp16': the adapter trains in pure fp16 with AdamW eps 1e-4, as the official code.
_base_ = ['./meta_adapter_fgvc_aircraft_16shot.py']
data_protocol = 'meta_adapter_official'
hp_selection = 'legacy_test'
train_dataloader = dict(dataset=dict(protocol=data_protocol))
val_dataloader = dict(dataset=dict(protocol=data_protocol))
test_dataloader = dict(dataset=dict(protocol=data_protocol))
train_cfg = dict(hp_selection=hp_selection, precision='official_fp16')
