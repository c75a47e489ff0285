# The project's tiny CLIP, pretrained on the embedded digits demo (tools/demo.py makes the checkpoint).
# It is loaded through the same local-checkpoint path a user's own open_clip weights take.
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        mean=[122.770938, 116.7460125, 104.09373615],
        std=[68.5005327, 66.6321579, 70.32316305],
        to_rgb=True),
    backbone=dict(type='CLIPBackbone', model_name='tiny-clip', pretrained='data/tiny_clip/tiny_clip.pt'),
    head=dict(type='CacheHead', num_classes=10, feat_dim=64, num_shots=16, alpha=1., beta=1.,
              topk=(1, 5)),
)
