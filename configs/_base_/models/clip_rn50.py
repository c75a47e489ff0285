# CLIP RN50 (OpenAI weights through open_clip) with a Tip-Adapter cache head. Its class count, shots, alpha and
# beta come from the dataset (the method config). Another backbone is one override, not another file:
#   --cfg-options model.backbone.model_name=ViT-B-16 model.backbone.pretrained=laion2b_s34b_b88k
# The mean / std below and the head's feat_dim (with the pipelines' 224 px and bicubic resize) are RN50 + openai's,
# as open_clip's registries give them (tip_adapter_mm.models.clip_preprocess); the project's runner replaces
# them with the new backbone's (tip_adapter_mm.settings.backbone_updates) unless the config sets its own.
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='CLIPDataPreprocessor',
        mean=[122.770938, 116.7460125, 104.09373615],  # open_clip's mean and std of the weights, x 255
        std=[68.5005327, 66.6321579, 70.32316305],
        to_rgb=True),
    backbone=dict(type='CLIPBackbone', model_name='RN50', pretrained='openai'),
    head=dict(type='CacheHead', feat_dim=1024, topk=(1, 5)),
)
