"""A tiny open_clip CLIP, pretrained contrastively on the digits in about 20 s, for the offline demo.

Real CLIP weights cannot be downloaded here, so the demo pretrains its own CLIP: the ``tiny-clip``
architecture of ``tiny-clip.json`` (a small ViT for 32x32 images and a small text transformer with
open_clip's default tokenizer) is trained with CLIP's InfoNCE loss on the ``pretrain`` split of the digits
(:mod:`.digits`), with captions made from :data:`DIGIT_TEMPLATES`. A fraction of the captions name a
wrong, look-alike digit on purpose, so that zero-shot CLIP is clearly imperfect (about 65 % test top-1) and
few-shot adaptation has something to fix (a 16-shot Tip-Adapter cache reaches about 77-83 %).

The checkpoint is saved in open_clip's training-checkpoint format and loads with::

    register_tiny_clip()
    model = open_clip.create_model('tiny-clip', pretrained=checkpoint_path)
"""
import json
import math
import os
import os.path as osp
import time
from typing import Optional, Sequence, Tuple

import numpy as np

from .digits import DIGIT_CLASSNAMES, DIGIT_TEMPLATES, prepare_digits
from ..utils.progress import progress_bar

#: Name under which the tiny CLIP is registered with open_clip.
TINY_CLIP_NAME = 'tiny-clip'

#: The open_clip model config of the tiny CLIP.
TINY_CLIP_CONFIG = osp.join(osp.dirname(osp.abspath(__file__)), 'tiny-clip.json')

#: CLIP's image normalisation (OpenAI mean and std, RGB).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Default fraction of the pretraining captions that name a wrong digit.
DEFAULT_CAPTION_NOISE = 0.44

#: The wrong digit a noisy caption names in ``noise_mode='confusable'``: pairs of look-alike digits.
DIGIT_CONFUSIONS = {0: 6, 6: 0, 1: 7, 7: 1, 2: 5, 5: 2, 3: 8, 8: 3, 4: 9, 9: 4}


def register_tiny_clip() -> str:
    """Register ``tiny-clip.json`` with open_clip (public ``add_model_config``; idempotent); return the name.

    Called by :class:`~tip_adapter_mm.models.CLIPBackbone` when a config asks for ``'tiny-clip'``, never at
    import time.
    """
    import open_clip

    if TINY_CLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(TINY_CLIP_CONFIG)  # registers the file stem, 'tiny-clip'
    return TINY_CLIP_NAME


def _recipe(**kwargs) -> str:
    """Fingerprint of the architecture and pretraining arguments, stored in the checkpoint."""
    import hashlib
    with open(TINY_CLIP_CONFIG, 'rb') as f:
        blob = f.read() + json.dumps(kwargs, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _default_threads() -> int:
    """The CPUs this process may use, at most 4 (more does not pay off for such a small model)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _load_split(data_root: str, split: str):
    """All images of a split as a float tensor [N, 3, H, W] in [0, 1] and int64 labels [N]."""
    import torch
    from PIL import Image

    images, labels = [], []
    for digit in range(len(DIGIT_CLASSNAMES)):
        folder = osp.join(data_root, split, str(digit))
        for name in sorted(os.listdir(folder)):
            if not name.endswith('.png'):
                continue
            with Image.open(osp.join(folder, name)) as img:
                images.append(np.asarray(img.convert('RGB'), dtype=np.uint8))
            labels.append(digit)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.)
    return x, torch.tensor(labels, dtype=torch.long)


def _augment(x, generator, min_scale: float, flip_prob: float):
    """Random resized crop (area ``min_scale``..1, aspect 3/4..4/3) and horizontal flip, batched."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    u = torch.rand(n, 5, generator=generator)
    area = min_scale + (1. - min_scale) * u[:, 0]
    log_ratio = math.log(3. / 4.) + (math.log(4. / 3.) - math.log(3. / 4.)) * u[:, 1]
    ratio = log_ratio.exp()
    sx = (area * ratio).sqrt().clamp(max=1.)  # crop width / image width
    sy = (area / ratio).sqrt().clamp(max=1.)
    tx = (1. - sx) * (2. * u[:, 2] - 1.)  # crop centre, in [-1, 1] coordinates
    ty = (1. - sy) * (2. * u[:, 3] - 1.)
    flip = torch.where(u[:, 4] < flip_prob, -1., 1.)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sx * flip
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=False)


def pretrain_tiny_clip(data_root: str, out_file: str, seed: int = 0,
                       caption_noise: float = DEFAULT_CAPTION_NOISE,
                       noise_mode: str = 'confusable', confusions: Optional[dict] = None,
                       steps: int = 600, batch_size: int = 64, lr: float = 1e-3,
                       weight_decay: float = 0.1, warmup: int = 30,
                       aug_min_scale: float = 0.5, aug_flip_prob: float = 0.5,
                       num_threads: Optional[int] = None,
                       templates: Sequence[str] = DIGIT_TEMPLATES,
                       verbose: bool = False) -> str:
    """Pretrain the tiny CLIP with InfoNCE on the ``pretrain`` digits and save it to ``out_file``.

    Every pretraining image gets one fixed caption, drawn once (seeded) as in a noisy web-crawled dataset:
    a random template of ``templates`` filled with the image's class name or, for a fraction
    ``caption_noise`` of the images, with the name of a wrong digit. With ``noise_mode='confusable'``
    (the default) the wrong digit is the look-alike partner of :data:`DIGIT_CONFUSIONS` (0/6, 1/7, 2/5,
    3/8, 4/9), so the text classifier is systematically biased within these pairs (zero-shot about 65 %)
    while the image features still separate them, which is what a few-shot cache can fix; with
    ``'uniform'`` the wrong digit is uniform among the other nine (this mostly slows learning down, and the
    cache then gains little over zero-shot).

    The loss is CLIP's symmetric InfoNCE with a learnable temperature; training uses AdamW with a linear
    warm-up and a cosine decay, batched random resized crops (area ``aug_min_scale``..1) and horizontal
    flips. The token-embedding table keeps its random initialisation. The defaults take about 20-30 s on
    two CPU cores. The run is deterministic for a given seed and thread count, and does not disturb the
    caller's global RNG state or thread setting.

    The checkpoint is open_clip's training format ``{'epoch', 'name', 'state_dict'}``, written atomically
    (``out_file + '.tmp'``, then ``os.replace``), with a fingerprint of the architecture and of these
    arguments. If ``out_file`` exists with the same fingerprint, it is returned at once.

    Args:
        data_root (str): root of the digits dataset (see :func:`.digits.prepare_digits`).
        out_file (str): checkpoint path.
        seed (int): seed of the initialisation, captions, batches and augmentations.
        caption_noise (float): fraction of the images whose caption names a wrong digit.
        noise_mode (str): ``'confusable'`` or ``'uniform'``, see above.
        confusions (dict, optional): digit -> wrong digit for ``'confusable'`` (digits missing from it keep
            clean captions); defaults to :data:`DIGIT_CONFUSIONS`.
        steps (int): optimisation steps.
        batch_size (int): images per step.
        lr (float): peak learning rate.
        weight_decay (float): AdamW weight decay (not applied to gains, biases and embeddings).
        warmup (int): linear warm-up steps.
        aug_min_scale (float): smallest crop area of the random resized crop.
        aug_flip_prob (float): probability of a horizontal flip.
        num_threads (int, optional): torch threads during training; defaults to the usable CPUs, at most 4.
        templates (sequence of str): caption templates.
        verbose (bool): print where the checkpoint went (a progress bar with the loss shows the steps).

    Returns:
        str: ``out_file``.
    """
    import torch
    recipe = _recipe(seed=seed, caption_noise=caption_noise, noise_mode=noise_mode, confusions=confusions,
                     steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
                     aug_min_scale=aug_min_scale, aug_flip_prob=aug_flip_prob, templates=list(templates))
    if osp.isfile(out_file):
        if torch.load(out_file, map_location='cpu', weights_only=True).get('recipe') == recipe:
            return out_file
        print(f'{out_file} was made by another pretraining recipe; pretraining again')
    import open_clip
    import torch.nn.functional as F

    register_tiny_clip()
    start_time = time.time()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads or _default_threads())
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the model's initialisation
            model = open_clip.create_model(TINY_CLIP_NAME)
        gen = torch.Generator().manual_seed(seed)  # everything else
        model.train()
        # the 49408 x width token table stays at its random init: only the ten class names and the template
        # words ever occur, and skipping its gradient and AdamW update makes a step much cheaper
        model.token_embedding.weight.requires_grad_(False)
        tokenizer = open_clip.get_tokenizer(TINY_CLIP_NAME)

        images, labels = _load_split(data_root, 'pretrain')
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        n, c, t = images.shape[0], len(DIGIT_CLASSNAMES), len(templates)

        # one fixed (noisy) caption per image, as in a noisy web-crawled dataset
        noisy = torch.rand(n, generator=gen) < caption_noise
        if noise_mode == 'confusable':
            confusions = {int(k): int(v) for k, v in (DIGIT_CONFUSIONS if confusions is None
                                                      else confusions).items()}
            wrong = torch.tensor([confusions.get(d, d) for d in range(c)])[labels]
        elif noise_mode == 'uniform':
            wrong = (labels + torch.randint(1, c, (n,), generator=gen)) % c
        else:
            raise ValueError(f"noise_mode must be 'confusable' or 'uniform', got {noise_mode!r}")
        caption_class = torch.where(noisy, wrong, labels)
        caption_template = torch.randint(0, t, (n,), generator=gen)
        caption_id = caption_class * t + caption_template
        tokens = tokenizer([tpl.format(name) for name in DIGIT_CLASSNAMES for tpl in templates])

        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or 'embedding' in name or 'logit_scale' in name else decay).append(p)
        optimizer = torch.optim.AdamW([{'params': decay, 'weight_decay': weight_decay},
                                       {'params': no_decay, 'weight_decay': 0.}], lr=lr)

        def lr_at(step):
            if step < warmup:
                return lr * (step + 1) / warmup
            return 0.5 * lr * (1. + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

        order = torch.randperm(n, generator=gen)
        pos = 0
        bar = progress_bar(total=steps, desc=f'pretraining {TINY_CLIP_NAME}', unit='step')
        for step in range(steps):
            if pos + batch_size > n:
                order, pos = torch.randperm(n, generator=gen), 0
            idx = order[pos:pos + batch_size]
            pos += batch_size
            for group in optimizer.param_groups:
                group['lr'] = lr_at(step)

            x = _augment(images[idx], gen, aug_min_scale, aug_flip_prob)
            x = (x - mean) / std
            img = model.encode_image(x, normalize=True)
            # the text tower runs once per distinct caption; gathering gives the same loss and gradients
            txt = model.encode_text(tokens, normalize=True)[caption_id[idx]]
            logits = model.logit_scale.exp() * img @ txt.t()
            target = torch.arange(len(idx))
            loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            bar.update(1)
            if step % 50 == 0 or step == steps - 1:
                bar.set_postfix(loss=f'{loss.item():.4f}', scale=f'{model.logit_scale.exp().item():.1f}',
                                refresh=False)
        bar.close()

        model.eval()
        checkpoint = {'epoch': int(math.ceil(steps * batch_size / n)), 'name': TINY_CLIP_NAME,
                      'state_dict': model.state_dict(), 'recipe': recipe}
        out_dir = osp.dirname(osp.abspath(out_file))
        os.makedirs(out_dir, exist_ok=True)
        tmp = out_file + '.tmp'
        torch.save(checkpoint, tmp)
        os.replace(tmp, out_file)
    finally:
        torch.set_num_threads(old_threads)
    if verbose:
        print(f'pretrained {TINY_CLIP_NAME} in {time.time() - start_time:.1f}s -> {out_file}')
    return out_file


def ensure_demo_assets(data_dir: str = 'data') -> Tuple[str, str]:
    """Prepare the digits dataset and the pretrained tiny CLIP under ``data_dir`` (each only once).

    Returns:
        tuple: (digits root ``data_dir/digits``, checkpoint ``data_dir/tiny_clip/tiny_clip.pt``).
    """
    digits_root = prepare_digits(osp.join(data_dir, 'digits'))
    checkpoint = pretrain_tiny_clip(digits_root, osp.join(data_dir, 'tiny_clip', 'tiny_clip.pt'))
    return digits_root, checkpoint
