# The project's tiny CLIP, pretrained on the embedded digits demo (tools/demo.py makes the checkpoint).
# It is loaded through the same local-checkpoint path a user's own open_clip weights take.
_base_ = ['./clip_rn50.py']
model = dict(
    backbone=dict(model_name='tiny-clip', pretrained='data/tiny_clip/tiny_clip.pt'),
    head=dict(feat_dim=64))
