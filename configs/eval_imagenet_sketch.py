# Distribution shift: evaluate an ImageNet Tip-Adapter / Tip-Adapter-F checkpoint on ImageNet-Sketch (CoOp
# layout data/imagenet-sketch/; labels in ImageNet's 1000-class index space, wnids from data/imagenet):
#   python tools/test.py configs/eval_imagenet_sketch.py work_dirs/tip_imagenet_16shot/epoch_1.pth
_base_ = ['./tip_imagenet_16shot.py']
test_dataloader = dict(dataset=dict(_delete_=True, type='ImageNetVariant', variant='imagenet_sketch',
                                    data_root='data/imagenet-sketch', imagenet_root='data/imagenet',
                                    pipeline={{_base_.test_pipeline}}))
