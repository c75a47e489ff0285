# CLIP RN50 (OpenAI weights through open_clip) with a Tip-Adapter cache head. The head's feature size goes
# with the backbone; its class count, shots, alpha and beta come from the dataset (the method config).
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='CLIPDataPreprocessor',
        mean=[122.770938, 116.7460125, 104.09373615],  # CLIP's mean and std, x 255
        std=[68.5005327, 66.6321579, 70.32316305],
        to_rgb=True),
    backbone=dict(type='CLIPBackbone', model_name='RN50', pretrained='openai'),
    head=dict(type='CacheHead', feat_dim=1024, topk=(1, 5)),
)
