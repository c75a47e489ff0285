# Tip-Adapter-F, CLIP RN50, ImageNet, 16 shots: the Tip-Adapter config with trainable cache keys and the
# official fine-tuning recipe (_base_/schedules/tip_f.py): AdamW lr 1e-3, eps 1e-4, weight decay 0.01, cosine
# annealing to 0 stepped every iteration, batch 256, 20 epochs, cross-entropy on the Tip logits with the
# initial alpha and beta. Then the epoch chosen on the selection split is kept, alpha/beta are searched again
# with the trained keys, and the test split is evaluated. Only the keys require a gradient (fp32 master
# weights). train_from='image' (--cfg-options train_from=image) re-encodes augmented images at every step,
# as the official code does; the default trains from the stored views.
_base_ = [
    './_base_/models/clip_rn50.py',
    './_base_/datasets/imagenet_fewshot.py',
    './_base_/schedules/tip_f.py',
    './_base_/default_runtime.py',
]
method = 'Tip-Adapter-F'
# the dataset's settings (top-level keys of its _base_ file) where the head and the loop read them
model = dict(head=dict(num_classes={{_base_.num_classes}}, num_shots={{_base_.num_shots}},
                       alpha={{_base_.init_alpha}}, beta={{_base_.init_beta}}, train_keys=True))
train_cfg = dict(search_scale={{_base_.search_scale}}, hp_selection={{_base_.hp_selection}})
