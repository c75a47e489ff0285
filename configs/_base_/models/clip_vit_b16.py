# CLIP ViT-B/16 (OpenAI weights through open_clip) with a Tip-Adapter cache head.
_base_ = ['./clip_rn50.py']
model = dict(backbone=dict(model_name='ViT-B/16'), head=dict(feat_dim=512))
