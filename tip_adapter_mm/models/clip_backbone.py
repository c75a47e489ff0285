import difflib
import os.path as osp
from typing import List, Optional, Sequence

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS

from ..functional import text_classifier

#: OpenAI's names (as used by ``clip.load`` and the papers) -> open_clip names.
OPENAI_NAMES = {'RN50': 'RN50', 'RN101': 'RN101', 'RN50x4': 'RN50x4', 'RN50x16': 'RN50x16',
                'RN50x64': 'RN50x64', 'ViT-B/32': 'ViT-B-32', 'ViT-B/16': 'ViT-B-16',
                'ViT-L/14': 'ViT-L-14', 'ViT-L/14@336px': 'ViT-L-14-336'}


def resolve_model_name(model_name: str, pretrained: Optional[str]) -> str:
    """The open_clip model name for ``model_name`` and ``pretrained``.

    Accepts OpenAI's names (``ViT-B/16``) and open_clip's (``ViT-B-16``). OpenAI weights were trained with
    QuickGELU, and open_clip 3.x builds plain GELU for ``ViT-B-16`` + ``openai`` (it only warns), so with
    ``pretrained='openai'`` the ``-quickgelu`` variant is used.
    """
    import open_clip
    name = OPENAI_NAMES.get(model_name, model_name)
    from ..demo.tiny_clip import TINY_CLIP_NAME, register_tiny_clip
    if name == TINY_CLIP_NAME:  # the embedded demo's model: registered with open_clip when asked for
        register_tiny_clip()
    known = open_clip.list_models()
    if pretrained == 'openai' and not name.endswith('-quickgelu') and f'{name}-quickgelu' in known:
        name = f'{name}-quickgelu'
    if name not in known:
        close = difflib.get_close_matches(model_name, known + list(OPENAI_NAMES), n=5, cutoff=0.5)
        raise ValueError(f"unknown open_clip model name '{model_name}'; close names: {close or 'none'} "
                         '(open_clip.list_models() lists all)')
    return name


def _is_local_file(pretrained: str) -> bool:
    return (osp.sep in pretrained or pretrained.endswith(('.pt', '.pth', '.bin', '.safetensors', '.ckpt'))
            or osp.exists(pretrained))


@MODELS.register_module()
class CLIPBackbone(BaseModule):
    """An open_clip CLIP model as an mmpretrain backbone.

    ``forward`` returns the raw (un-normalised) image embedding as a one-element tuple (a [B, D] input is
    taken as already encoded features and passed through); heads normalise it,
    and cache building averages raw features over augmented views before normalising, as the official code
    does. ``encode_text`` builds the zero-shot text classifier.

    Weights are loaded in ``__init__`` (mmengine's ``Runner.test`` never calls ``init_weights``). Frozen CLIP
    weights are kept out of the state dict unless ``save_frozen=True``, so a checkpoint holds the adapter
    state only and stays valid as long as the same open_clip weights are used.

    The preprocessing that goes with the model and weights (``image_size``, ``mean``, ``std``,
    ``interpolation``, :attr:`preprocess`) is read from open_clip's registries
    (:func:`~tip_adapter_mm.models.clip_preprocess.clip_preprocess`); the project's runner puts it into the
    config's pipelines, data preprocessor and head (:mod:`tip_adapter_mm.settings`).

    Args:
        model_name (str): open_clip model name (``RN50``, ``ViT-B-16``, ...) or OpenAI's (``ViT-B/16``).
        pretrained (str, optional): an open_clip pretrained tag (``openai``, ``laion2b_s34b_b79k``, ...), a
            local checkpoint file (a state dict, or open_clip's training checkpoint), or None for random
            weights.
        freeze (bool): freeze CLIP (no gradients, eval mode). Defaults to True.
        save_frozen (bool): keep frozen CLIP weights in checkpoints. Defaults to False.
        cache_dir (str, optional): where open_clip stores downloaded weights.
        precision (str): open_clip precision ('fp32', 'fp16', 'bf16', ...). Defaults to 'fp32'.
        text_batch_size (int): prompts encoded per batch by :meth:`encode_text`.
        init_cfg (dict, optional): unused; CLIP weights come from ``pretrained``.
    """

    def __init__(self,
                 model_name: str = 'RN50',
                 pretrained: Optional[str] = 'openai',
                 freeze: bool = True,
                 save_frozen: bool = False,
                 cache_dir: Optional[str] = None,
                 precision: str = 'fp32',
                 text_batch_size: int = 1000,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        import open_clip
        self.model_name = resolve_model_name(model_name, pretrained)
        self.pretrained = pretrained
        self.precision = precision
        if pretrained and _is_local_file(pretrained) and not osp.isfile(pretrained):
            raise FileNotFoundError(f"CLIP checkpoint file '{pretrained}' (model.backbone.pretrained) does "
                                    'not exist')
        rank, world_size = get_dist_info()
        if world_size > 1 and rank != 0:
            barrier()  # rank 0 downloads into the cache first
        try:
            self.clip = open_clip.create_model(self.model_name, pretrained=pretrained or None,
                                               precision=precision, cache_dir=cache_dir)
        except Exception as e:
            if not pretrained or _is_local_file(pretrained):
                raise
            raise RuntimeError(
                f"could not obtain the '{pretrained}' weights of open_clip model '{self.model_name}' "
                f'({type(e).__name__}: {e}). Without internet access, download the weights on another '
                'machine (open_clip.create_model(..., pretrained=...) saves them under the Hugging Face '
                'cache, or take the file named in open_clip.get_pretrained_cfg(model, tag)) and set '
                "model.backbone.pretrained='/path/to/open_clip_pytorch_model.bin'."
            ) from e
        finally:
            if world_size > 1 and rank == 0:
                barrier()
        self.tokenizer = open_clip.get_tokenizer(self.model_name)
        self.freeze = freeze
        self.save_frozen = save_frozen
        self.text_batch_size = text_batch_size
        if freeze:
            self.clip.requires_grad_(False).eval()
            if not save_frozen:
                self.register_state_dict_post_hook(self._drop_clip_keys)
                self.register_load_state_dict_post_hook(self._ignore_missing_clip_keys)

    @property
    def feat_dim(self) -> int:
        """Dimension of the joint embedding."""
        return int(self.clip.text_projection.shape[1]) if hasattr(self.clip, 'text_projection') \
            else int(self.clip.visual.output_dim)

    @property
    def preprocess(self):
        """The preprocessing open_clip uses for this model and weights
        (:func:`~tip_adapter_mm.models.clip_preprocess.clip_preprocess`: image size, mean, std, interpolation,
        resize mode, feature size), read from open_clip's registries."""
        from .clip_preprocess import clip_preprocess
        return clip_preprocess(self.model_name, self.pretrained)

    @property
    def image_size(self):
        """The input size of the image tower (an int for square inputs)."""
        return self.preprocess.image_size

    @property
    def mean(self):
        """The per-channel normalisation mean in [0, 1] (RGB)."""
        return self.preprocess.mean

    @property
    def std(self):
        """The per-channel normalisation std in [0, 1] (RGB)."""
        return self.preprocess.std

    @property
    def interpolation(self) -> str:
        """The resize interpolation of the weights' preprocessing."""
        return self.preprocess.interpolation

    @property
    def dtype(self) -> torch.dtype:
        return next(self.clip.parameters()).dtype

    def init_weights(self):
        """CLIP weights come from ``pretrained`` in ``__init__``; never re-initialise them."""
        self._is_init = True

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.clip.eval()  # keeps e.g. RN50 BatchNorm statistics frozen
        return self

    def forward(self, x: torch.Tensor):
        if x.dim() == 2:  # stored image features (see CLIPDataPreprocessor): nothing to encode
            return (x.float(), )
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            return (self.clip.encode_image(x.to(self.dtype)).float(), )

    @torch.no_grad()
    def encode_text(self, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
        """Zero-shot classifier: class names x templates -> normalised, averaged, re-normalised [C, D]."""
        prompts: List[str] = [t.format(name.replace('_', ' ')) for name in classnames for t in templates]
        device = next(self.clip.parameters()).device
        chunks = []
        for i in range(0, len(prompts), self.text_batch_size):
            tokens = self.tokenizer(prompts[i:i + self.text_batch_size]).to(device)
            chunks.append(self.clip.encode_text(tokens).float())
        emb = torch.cat(chunks).view(len(classnames), len(templates), -1)
        return text_classifier(emb)

    @staticmethod
    def _drop_clip_keys(module, state_dict, prefix, local_metadata):
        for key in [k for k in state_dict if k.startswith(prefix + 'clip.')]:
            del state_dict[key]

    @staticmethod
    def _ignore_missing_clip_keys(module, incompatible_keys):
        incompatible_keys.missing_keys[:] = [
            k for k in incompatible_keys.missing_keys if not (k.startswith('clip.') or '.clip.' in k)]
