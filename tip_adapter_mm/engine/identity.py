"""What a checkpoint was made by (method, head, backbone and weights, class count, shots), recorded in its meta
and checked against the config that loads it."""
import os.path as osp
from typing import Mapping, Optional

KEY = 'run_identity'


def run_identity(cfg: Mapping) -> dict:
    """The identity of the run that ``cfg`` describes."""
    model = cfg.get('model') or {}
    head, backbone = model.get('head') or {}, model.get('backbone') or {}
    pretrained = backbone.get('pretrained')
    return dict(method=cfg.get('method'), head=head.get('type'), backbone=backbone.get('model_name'),
                weights=osp.basename(str(pretrained)) if pretrained else None, feat_dim=head.get('feat_dim'),
                num_classes=head.get('num_classes'), num_shots=head.get('num_shots'))


def check_identity(saved: Optional[Mapping], cfg: Mapping, path: str, resume: bool = False):
    """Raise ``ValueError`` if the checkpoint at ``path`` was made by another method or CLIP than ``cfg`` runs.

    Class count and shots may differ for a Meta-Adapter (it transfers to other classes); the heads check
    their own shapes when they load. A checkpoint without a record (converted official weights) passes.
    With ``resume``, the checkpoint must come from a run of the same method (a Tip-Adapter cache is no
    Tip-Adapter-F training state).
    """
    if not saved:
        return
    now = run_identity(cfg)

    def name(identity):
        return f"{identity.get('method') or '?'} ({identity.get('head')})"
    if saved.get('head') and now['head'] and saved['head'] != now['head']:
        raise ValueError(f"checkpoint '{path}' was made by {name(saved)} but the config runs {name(now)}: "
                         'use the config of the method that made it')
    if resume and saved.get('method') and now['method'] and saved['method'] != now['method']:
        raise ValueError(f"--resume needs a training checkpoint of this run, but '{path}' was made by "
                         f"{saved['method']}; the config runs {now['method']}. To start from its weights, use "
                         'load_from instead')
    for key, what in (('backbone', 'CLIP model'), ('weights', 'CLIP weights')):
        if saved.get(key) and now[key] and saved[key] != now[key]:
            raise ValueError(f"checkpoint '{path}' was made with the {what} {saved[key]!r} but the config "
                             f'uses {now[key]!r}: its features live in another embedding space')
