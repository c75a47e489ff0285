# Distribution shift: evaluate an ImageNet Tip-Adapter / Tip-Adapter-F checkpoint on ImageNet-A (CoOp
# layout data/imagenet-adversarial/; labels in ImageNet's 1000-class index space, wnids from data/imagenet):
#   python tools/test.py configs/eval_imagenet_a.py work_dirs/tip_imagenet_16shot/epoch_1.pth
_base_ = ['./tip_imagenet_16shot.py']
test_dataloader = dict(dataset=dict(_delete_=True, type='ImageNetVariant', variant='imagenet_a',
                                    data_root='data/imagenet-adversarial', imagenet_root='data/imagenet',
                                    pipeline={{_base_.test_pipeline}}))
# predict among the 200 classes of the set, as CoOp evaluates it
test_evaluator = dict(_delete_=True, type='BaseNovelAccuracy', topk=(1, 5), restrict_to_subset=True)
