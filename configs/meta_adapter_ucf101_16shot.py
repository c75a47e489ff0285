# Meta-Adapter, CLIP RN50, UCF101, 16 shots, cross-category: meta-trained on the base classes. The
# base/novel split is Meta-Adapter's published one (its official code's lists, shipped in
# tip_adapter_mm/datasets/data/meta_adapter_base_novel.json with their source).
_base_ = ['./_base_/models/clip_rn50.py', './_base_/datasets/ucf101_fewshot.py',
          './_base_/schedules/meta_adapter.py', './_base_/default_runtime.py']
method = 'Meta-Adapter'
base_classes = 'meta_adapter/ucf101'  # the published split (tip_adapter_mm/datasets/data/)
# the dataset's settings (top-level keys of its _base_ file) where the head, the loop and the metrics read them
model = dict(head=dict(type='MetaAdapterHead', num_classes={{_base_.num_classes}}, num_shots={{_base_.num_shots}},
                       base_classes=base_classes, loss_classes='all'))
# the data protocol: 'default', the project's (cache: the K-shot train sample; queries: its base-class images,
# or query_shots held-out images per base class; evaluated: the whole test split), or 'meta_adapter_official',
# Meta-Adapter's own (with hp_selection='legacy_test': see the *_official.py configs and the README)
data_protocol = 'default'
query_shots = None
train_dataloader = dict(batch_size=64, dataset=dict(protocol=data_protocol, base_classes=base_classes,
                                                    query_shots=query_shots))
val_dataloader = dict(dataset=dict(protocol=data_protocol, base_classes=base_classes))
test_dataloader = dict(dataset=dict(protocol=data_protocol, base_classes=base_classes))
train_cfg = dict(hp_selection={{_base_.hp_selection}})
val_evaluator = dict(_delete_=True, type='BaseNovelAccuracy', base_classes=base_classes, topk=(1, 5))
test_evaluator = dict(_delete_=True, type='BaseNovelAccuracy', base_classes=base_classes, topk=(1, 5))
