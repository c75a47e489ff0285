"""Images are decoded as the published pipelines decode them (Dassl's ``read_image``, torchvision's
``pil_loader``: ``Image.open(path).convert('RGB')``), not as mmcv's pillow backend does (EXIF rotation, LA
images pasted on a coloured canvas)."""
import glob
import os.path as osp
import random

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from conftest import ROOT

import tip_adapter_mm  # noqa: F401  (registration)
from tip_adapter_mm.datasets.transforms import LoadImageRGB  # noqa: F401  (registers it on its own, too)
from mmpretrain.registry import TRANSFORMS

NEW = dict(type='LoadImageRGB')
OLD = dict(type='LoadImageFromFile', imdecode_backend='pillow')
ORIENTATION = 0x0112  # the EXIF Orientation tag


def reference(path):
    """An independent re-implementation of the reference loader, in the pipeline's BGR order."""
    return np.asarray(Image.open(path).convert('RGB'))[..., ::-1]


def load(cfg, path):
    return TRANSFORMS.build(dict(cfg))(dict(img_path=str(path)))


def _rgb(h=24, w=40, seed=0):
    rng = np.random.default_rng(seed)
    # smooth gradients plus noise: JPEG keeps it recognisable, and any rotation changes the pixels
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], -1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _exif(orientation):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif


@pytest.fixture
def images(tmp_path):
    """The files of the tests: name -> path."""
    files = {}
    rgb = Image.fromarray(_rgb())
    for o in (3, 6, 8):  # 180 degrees (same shape), 90 degrees either way (shape transposed)
        files[f'exif{o}.jpg'] = tmp_path / f'exif{o}.jpg'
        rgb.save(files[f'exif{o}.jpg'], quality=90, exif=_exif(o))
    files['exif6.png'] = tmp_path / 'exif6.png'
    rgb.save(files['exif6.png'], exif=_exif(6))
    grey = _rgb(seed=1)[..., 0]
    alpha = np.zeros_like(grey)
    alpha[:, 10:] = 128
    alpha[:, 30:] = 255  # transparent, half and fully opaque columns
    files['la.png'] = tmp_path / 'la.png'
    Image.fromarray(np.stack([grey, alpha], -1), 'LA').save(files['la.png'])
    files['rgba.png'] = tmp_path / 'rgba.png'
    Image.fromarray(np.concatenate([_rgb(seed=2), alpha[..., None]], -1), 'RGBA').save(files['rgba.png'])
    files['p_transparent.png'] = tmp_path / 'p_transparent.png'
    Image.fromarray(_rgb(seed=3)).quantize(16).save(files['p_transparent.png'], transparency=0)
    files['plain.jpg'] = tmp_path / 'plain.jpg'
    Image.fromarray(_rgb(seed=4)).save(files['plain.jpg'], quality=90)
    files['plain.png'] = tmp_path / 'plain.png'
    Image.fromarray(_rgb(seed=5)).save(files['plain.png'])
    files['grey.png'] = tmp_path / 'grey.png'
    Image.fromarray(grey).save(files['grey.png'])
    return files


def test_the_files_are_what_the_tests_need(images):
    for o in (3, 6, 8):
        with Image.open(images[f'exif{o}.jpg']) as img:
            assert img.getexif()[ORIENTATION] == o and img.size == (40, 24)
    with Image.open(images['la.png']) as img:
        assert img.mode == 'LA'
    with Image.open(images['p_transparent.png']) as img:
        assert img.mode == 'P' and 'transparency' in img.info
    with Image.open(images['rgba.png']) as img:
        assert img.mode == 'RGBA'


@pytest.mark.parametrize('name', ['exif3.jpg', 'exif6.jpg', 'exif8.jpg', 'exif6.png', 'la.png', 'rgba.png',
                                  'p_transparent.png', 'plain.jpg', 'plain.png', 'grey.png'])
def test_decodes_exactly_as_the_reference_loaders(images, name):
    from torchvision.datasets.folder import pil_loader
    out = load(NEW, images[name])
    img = out['img']
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert np.array_equal(img, reference(images[name]))
    # torchvision's loader (Tip-Adapter's ImageFolder) gives the same RGB image; the pipeline holds BGR
    assert np.array_equal(img[..., ::-1], np.asarray(pil_loader(str(images[name]))))
    assert out['img_shape'] == out['ori_shape'] == img.shape[:2]


@pytest.mark.parametrize('name', ['exif3.jpg', 'exif6.jpg', 'exif8.jpg', 'exif6.png', 'la.png'])
def test_mmcv_pillow_backend_differs_on_these_files(images, name):
    """The old pipeline's loader rotates EXIF-oriented images and composites LA ones: what this fixes."""
    old, new = load(OLD, images[name])['img'], load(NEW, images[name])['img']
    assert old.shape != new.shape or not np.array_equal(old, new)
    if name in ('exif6.jpg', 'exif8.jpg', 'exif6.png'):  # a quarter turn transposes the shape
        assert new.shape[:2] == (24, 40) and old.shape[:2] == (40, 24)
    if name == 'la.png':  # the same where opaque; mmcv's canvas colour shows through elsewhere
        assert np.array_equal(old[:, 30:], new[:, 30:]) and not np.array_equal(old[:, :10], new[:, :10])
        assert (new[..., 0] == new[..., 1]).all() and (new[..., 1] == new[..., 2]).all()  # grey, alpha dropped


@pytest.mark.parametrize('name', ['plain.jpg', 'plain.png', 'grey.png', 'rgba.png', 'p_transparent.png'])
def test_identical_to_the_old_loader_where_it_was_already_right(images, name):
    """Without EXIF orientation nor LA, the array (values, dtype, shape, layout) is the one mmcv gave."""
    old, new = load(OLD, images[name]), load(NEW, images[name])
    assert old['img'].dtype == new['img'].dtype and old['img'].shape == new['img'].shape
    assert old['img'].strides == new['img'].strides
    assert np.array_equal(old['img'], new['img'])
    assert (old['img_shape'], old['ori_shape']) == (new['img_shape'], new['ori_shape'])


def _pipelines():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/datasets/fewshot_224.py'))
    return dict(train=cfg.train_pipeline, test=cfg.test_pipeline)


def _run(pipeline, loader, path, seed=0):
    from mmengine.dataset import Compose
    steps = [dict(loader)] + [dict(t) for t in pipeline[1:]]
    random.seed(seed)
    np.random.seed(seed)
    return Compose([TRANSFORMS.build(t) for t in steps])(dict(img_path=str(path)))


@pytest.mark.parametrize('which', ['train', 'test'])
def test_the_rest_of_the_pipelines_sees_the_same_array(images, which):
    """The pillow-backend RandomResizedCrop / ResizeEdge / CenterCrop after the loader: unchanged output on
    images both loaders decode alike, the reference's decoding on the others."""
    pipeline = _pipelines()[which]
    assert pipeline[0] == NEW
    for name in ('plain.jpg', 'plain.png', 'grey.png', 'rgba.png'):
        for seed in range(3):
            old, new = _run(pipeline, OLD, images[name], seed), _run(pipeline, NEW, images[name], seed)
            assert old['inputs'].dtype == new['inputs'].dtype
            assert np.array_equal(old['inputs'].numpy(), new['inputs'].numpy()), (name, seed)
    old, new = _run(pipeline, OLD, images['exif6.jpg']), _run(pipeline, NEW, images['exif6.jpg'])
    assert old['inputs'].shape == new['inputs'].shape == (3, 224, 224)
    assert not np.array_equal(old['inputs'].numpy(), new['inputs'].numpy())


def test_options_and_errors_name_the_path(images, tmp_path):
    out = load(dict(NEW, to_float32=True), images['plain.jpg'])
    assert out['img'].dtype == np.float32 and np.array_equal(out['img'], reference(images['plain.jpg']))
    missing = tmp_path / 'missing.jpg'
    with pytest.raises(FileNotFoundError, match='missing.jpg'):
        load(NEW, missing)
    bad = tmp_path / 'not_an_image.jpg'
    bad.write_bytes(b'this is not an image')
    with pytest.raises(OSError, match='not_an_image.jpg'):
        load(NEW, bad)
    truncated = tmp_path / 'truncated.jpg'
    truncated.write_bytes(images['plain.jpg'].read_bytes()[:200])
    with pytest.raises(OSError, match='truncated.jpg'):
        load(NEW, truncated)
    for path in (missing, bad, truncated):
        assert load(dict(NEW, ignore_empty=True), path) is None
    assert 'LoadImageRGB' in repr(TRANSFORMS.build(NEW))


def _pipelines_of(dataset):
    """The pipelines of a dataset config and of the datasets it wraps."""
    found = []
    while isinstance(dataset, dict):
        if dataset.get('pipeline') is not None:
            found.append(dataset['pipeline'])
        dataset = dataset.get('dataset')
    return found


def _transform_types(obj):
    """Every ``type`` of a transform-like dict anywhere in a config."""
    if isinstance(obj, dict):
        return ([obj['type']] if isinstance(obj.get('type'), str) else []) + \
            [t for v in obj.values() for t in _transform_types(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _transform_types(v)]
    return []


@pytest.mark.parametrize('path', sorted(glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)),
                         ids=lambda p: osp.relpath(p, osp.join(ROOT, 'configs')))
def test_every_config_decodes_with_the_reference_loader(path):
    from tip_adapter_mm.engine.runner import resolve_config
    cfg = Config.fromfile(path)
    assert 'LoadImageFromFile' not in _transform_types(cfg.to_dict())
    if osp.basename(osp.dirname(path)) != 'configs':
        return  # a base file: checked above, and through the configs that inherit it
    resolvable = Config.fromfile(path)
    if resolvable.get('dataset_name', '') is None:  # a config for the user's own folder: they set num_classes
        resolvable.merge_from_dict({'num_classes': 4})
    for c in (cfg, resolve_config(resolvable)):
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            pipelines = _pipelines_of(c[key]['dataset'])
            assert pipelines, (key, 'no pipeline')
            for pipeline in pipelines:
                types = [t['type'] for t in pipeline]
                assert types[0] == 'LoadImageRGB' and types.count('LoadImageRGB') == 1, (key, types)
                assert 'LoadImageFromFile' not in types


def test_importing_the_package_registers_the_transform():
    """What ``custom_imports=['tip_adapter_mm']`` gives a config (a fresh process, nothing else imported)."""
    import subprocess
    import sys
    code = ('import tip_adapter_mm\nfrom mmpretrain.registry import TRANSFORMS\n'
            "assert TRANSFORMS.get('LoadImageRGB') is not None, 'LoadImageRGB is not registered'")
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
