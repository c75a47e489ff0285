# Meta-Adapter, CLIP RN50, StanfordCars, 16 shots, cross-category: meta-trained on the base classes. The
# default split takes the first 137 of 196 class indices as base (the official base count); for the
# official rule (zero-shot accuracy on the training supports) use tools/rank_classes.py.
_base_ = ['./_base_/models/clip_rn50.py', './_base_/datasets/stanford_cars_fewshot.py',
          './_base_/schedules/meta_adapter.py', './_base_/default_runtime.py']
method = 'Meta-Adapter'
base_classes = list(range(137))
model = dict(head=dict(_delete_=True, type='MetaAdapterHead', num_classes=196, feat_dim=1024, num_shots=16,
                       loss_classes='all', topk=(1, 5)))
train_dataloader = dict(batch_size=64)
val_evaluator = dict(_delete_=True, type='BaseNovelAccuracy', topk=(1, 5))
test_evaluator = dict(_delete_=True, type='BaseNovelAccuracy', topk=(1, 5))
