# CLIP RN101 (OpenAI weights through open_clip) with a Tip-Adapter cache head.
_base_ = ['./clip_rn50.py']
model = dict(backbone=dict(model_name='RN101'), head=dict(feat_dim=512))
