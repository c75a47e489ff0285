"""CoOpSplitDataset, FGVCAircraft, ImageNetVariant and tools/convert_coop_split.py on tiny replicas of the real
on-disk layouts (CoOp DATASETS.md)."""
import importlib.util
import json
import os
import os.path as osp
import pickle
import sys
import types

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from PIL import Image

from folders import coop_fewshot_splits, dassl_fewshot

from tip_adapter_mm.datasets import (COOP_DATASETS, IMAGENET_VARIANTS, CoOpSplitDataset, FGVCAircraft,
                                     ImageNetVariant)
from tip_adapter_mm.datasets.metadata import resolve_templates

init_default_scope('mmpretrain')
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PIPELINE = [dict(type='LoadImageFromFile', imdecode_backend='pillow'), dict(type='PackInputs')]
PETS = ['abyssinian', 'american_bulldog', 'Bengal']  # label order
COUNTS = dict(train=7, val=5, test=2)


def write_jpg(path, seed=0):
    os.makedirs(osp.dirname(path), exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (4, 4, 3), dtype=np.uint8)
    Image.fromarray(img).save(path)


def write_coop(root, name, impath=lambda split, cls, i: f'{cls}_{split}_{i}.jpg'):
    """A CoOp dataset folder: images and split_zhou_<Name>.json, per COOP_DATASETS[name]; entries are
    interleaved so that label 2 appears first in train (first-appearance order != label order)."""
    s = COOP_DATASETS[name]
    folder = osp.join(str(root), s['folder'])
    split = {}
    for key, n in COUNTS.items():
        entries = []
        for i in range(n):
            for label in (2, 0, 1):
                rel = impath(key, PETS[label], i)
                write_jpg(osp.join(folder, s['image_dir'], rel), seed=len(entries))
                entries.append([rel, label, PETS[label]])
        split[key] = entries
    with open(osp.join(folder, s['split_file']), 'w') as f:
        json.dump(split, f)
    return folder, split


@pytest.fixture(scope='module')
def pets(tmp_path_factory):
    """(CoOp data root, dataset folder, split dict) of an oxford_pets replica."""
    root = tmp_path_factory.mktemp('coop')
    folder, split = write_coop(root, 'oxford_pets')
    return str(root), folder, split


def _pets(folder, split='train', **kw):
    kw.setdefault('num_shots', 4)
    kw.setdefault('serialize_data', False)  # skips mmengine's gc.collect() (0.2 s a dataset here)
    return CoOpSplitDataset(data_root=folder, dataset='oxford_pets', split=split, **kw)


def _items(entries, prefix='images/'):
    return [(prefix + p, label) for p, label, _ in entries]


def test_settings_table():
    assert set(COOP_DATASETS) == {'imagenet', 'caltech101', 'oxford_pets', 'stanford_cars', 'oxford_flowers',
                                  'food101', 'fgvc_aircraft', 'sun397', 'dtd', 'eurosat', 'ucf101'}
    coop = {k: (v['folder'], v['image_dir'], v['split_file']) for k, v in COOP_DATASETS.items()
            if v['type'] == 'CoOpSplitDataset'}
    assert coop['stanford_cars'] == ('stanford_cars', '', 'split_zhou_StanfordCars.json')
    assert coop['dtd'] == ('dtd', 'images', 'split_zhou_DescribableTextures.json')
    assert coop['caltech101'] == ('caltech-101', '101_ObjectCategories', 'split_zhou_Caltech101.json')
    assert len(coop) == 9
    assert COOP_DATASETS['eurosat']['epochs'] == 100
    assert all(v['epochs'] == 20 for k, v in COOP_DATASETS.items() if k != 'eurosat')
    assert COOP_DATASETS['imagenet']['search_scale'] == [7, 3] and COOP_DATASETS['imagenet']['init_alpha'] == 1.17
    assert COOP_DATASETS['oxford_flowers']['search_scale'] == [50, 50]
    for v in COOP_DATASETS.values():
        assert resolve_templates(v['templates']) and v['init_beta'] == 1
    assert len(resolve_templates(COOP_DATASETS['imagenet']['templates'])) == 7
    assert {v['folder'] for v in IMAGENET_VARIANTS.values()} == {
        'imagenetv2', 'imagenet-sketch', 'imagenet-adversarial', 'imagenet-rendition'}


@pytest.mark.parametrize('shots,seed', [(4, 1), (2, 2), (1, 3)])
def test_sampling_matches_dassl(pets, shots, seed):
    _, folder, split = pets
    ds = _pets(folder, num_shots=shots, seed=seed)
    assert ds.split_items() == dassl_fewshot(_items(split['train']), shots, seed)
    assert [label for _, label in ds.split_items()][::shots] == [2, 0, 1]  # classes in first-appearance order
    assert _pets(folder, num_shots=None).split_items() == _items(split['train'])  # the JSON order


def test_class_names_templates_and_test_split(pets):
    _, folder, split = pets
    ds = _pets(folder, pipeline=PIPELINE)
    assert ds.metainfo['classes'] == tuple(PETS)  # by label, not by first appearance
    assert ds.metainfo['templates'] == ('a photo of a {}, a type of pet.', )
    test = _pets(folder, 'test')
    assert test.split_items() == _items(split['test'])
    assert test.get_data_info(0)['img_path'] == osp.join(folder, 'images', split['test'][0][0])
    assert ds[0]['data_samples'].gt_label.item() == ds.split_items()[0][1]
    explicit = CoOpSplitDataset(data_root=folder, split_file_name='split_zhou_OxfordPets.json', image_dir='images',
                                num_shots=4)
    assert explicit.split_items() == ds.split_items()
    assert explicit.metainfo['templates'] == ('a photo of a {}.', )


def test_presets_and_data_root_resolution(pets, tmp_path):
    root, folder, _ = pets
    ds = _pets(root)  # CoOp's $DATA root that holds oxford_pets/
    assert ds.data_root == osp.join(root, 'oxford_pets') and ds.split_items() == _pets(folder).split_items()
    from mmpretrain.registry import DATASETS
    built = DATASETS.build(dict(type='CoOpSplitDataset', dataset='oxford_pets', data_root=folder, num_shots=4,
                                templates=['{}.']))
    assert built.metainfo['templates'] == ('{}.', ) and built.split_items() == ds.split_items()
    with pytest.raises(ValueError, match="use type='FewShotFGVCAircraft'"):
        CoOpSplitDataset(data_root=folder, dataset='fgvc_aircraft')
    with pytest.raises(KeyError, match="unknown dataset 'pets'"):
        CoOpSplitDataset(data_root=folder, dataset='pets')
    with pytest.raises(ValueError, match='needs split_file_name and image_dir'):
        CoOpSplitDataset(data_root=folder)

    # Stanford Cars: paths relative to the dataset folder (image_dir '')
    cars, split = write_coop(tmp_path, 'stanford_cars', impath=lambda key, cls, i: (
        f"cars_{'test' if key == 'test' else 'train'}/{cls}_{key}{i}.jpg"))
    ds = CoOpSplitDataset(data_root=cars, dataset='stanford_cars', split='test')
    assert ds.split_items() == _items(split['test'], prefix='')
    assert ds.split_items()[0][0].startswith('cars_test/') and osp.isfile(ds.get_data_info(0)['img_path'])
    assert ds.metainfo['templates'] == ('a photo of a {}.', )


def test_validation_modes(pets):
    _, folder, split = pets
    val = _items(split['val'])
    assert _pets(folder, 'val').split_items() == val  # 'full' by default (Tip-Adapter)
    assert _pets(folder, 'val', val_mode='full', num_shots=16, allow_replacement=True).split_items() == val
    train = _items(split['train'])
    few = _pets(folder, 'val', num_shots=2, val_mode='fewshot').split_items()
    assert few == coop_fewshot_splits(train, val, 2, 1)[1] and len(few) == 3 * 2  # CoOp's list, min(K, 4) per class
    few8 = _pets(folder, 'val', num_shots=8, val_mode='fewshot', short_classes='replace').split_items()
    assert few8 == coop_fewshot_splits(train, val, 8, 1, repeat=True)[1] and len(set(few8)) == 3 * 4  # 4 of the 5
    with pytest.raises(ValueError, match='val_mode'):
        _pets(folder, 'val', val_mode='bogus')


def test_split_file_round_trip(pets, tmp_path):
    _, folder, _ = pets
    train = _pets(folder, num_shots=2, seed=3).split_items()
    val = _pets(folder, 'val', num_shots=2, seed=3, val_mode='fewshot').split_items()
    path = str(tmp_path / 'split.json')
    with open(path, 'w') as f:
        json.dump(dict(num_shots=2, seed=3, train=train, val=val), f)
    for seed in (3, 7):  # the file wins over the seed
        assert _pets(folder, num_shots=2, seed=seed, split_file=path).split_items() == train
        assert _pets(folder, 'val', num_shots=2, seed=seed, split_file=path).split_items() == val
    assert _pets(folder, num_shots=2, seed=7).split_items() != train
    with pytest.raises(ValueError, match='holds a 2-shot list but num_shots is 4'):
        _pets(folder, num_shots=4, split_file=path)


def _converter():
    spec = importlib.util.spec_from_file_location('convert_coop_split', osp.join(ROOT, 'tools',
                                                                                 'convert_coop_split.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_coop_pickle(path, train, val, prefix, monkeypatch):
    """A pickle as CoOp writes it: Dassl Datum objects (a stand-in registered under Dassl's module path)."""
    mod = 'dassl.data.datasets.base_dataset'

    class Datum:
        def __init__(self, impath, label, classname):
            self._impath, self._label, self._domain, self._classname = impath, label, 0, classname

    Datum.__module__, Datum.__qualname__ = mod, 'Datum'
    with monkeypatch.context() as m:
        for name in ('dassl', 'dassl.data', 'dassl.data.datasets', mod):
            m.setitem(sys.modules, name, types.ModuleType(name))
        sys.modules[mod].Datum = Datum
        data = {key: [Datum(prefix + p, label, PETS[label]) for p, label in items]
                for key, items in (('train', train), ('val', val))}
        with open(path, 'wb') as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    assert 'dassl' not in sys.modules


def test_coop_pickle_converter_round_trip(pets, tmp_path, monkeypatch, capsys):
    _, folder, split = pets
    convert = _converter()
    train = dassl_fewshot(_items(split['train']), 2, 1)
    val = dassl_fewshot(_items(split['val']), 2, 5)
    # written on another machine: absolute paths under a foreign root, found by their tail
    src = str(tmp_path / 'shot_2-seed_1.pkl')
    _write_coop_pickle(src, train, val, '/home/someone/DATA/oxford_pets/', monkeypatch)
    dst = str(tmp_path / 'out' / 'coop_shot_2-seed_1.json')
    out = convert.main([src, dst, '--data-root', folder])
    assert 'unpickling' in capsys.readouterr().err
    with open(dst) as f:
        data = json.load(f)
    assert data == out and data['num_shots'] == 2 and data['seed'] == 1
    assert [tuple(x) for x in data['train']] == train and [tuple(x) for x in data['val']] == val
    assert _pets(folder, num_shots=2, seed=9, split_file=dst).split_items() == train
    assert _pets(folder, 'val', num_shots=2, split_file=dst).split_items() == val
    # absolute paths under the data root; and an explicit --src-root
    src2 = str(tmp_path / 'shot_2-seed_2.pkl')
    _write_coop_pickle(src2, train, val, folder + '/', monkeypatch)
    assert convert.main([src2, str(tmp_path / 'b.json'), '--data-root', folder])['train'] == [list(t) for t in train]
    src3 = str(tmp_path / 'other.pkl')
    _write_coop_pickle(src3, train, val, 'D:\\data\\oxford_pets\\', monkeypatch)
    out3 = convert.main([src3, str(tmp_path / 'c.json'), '--data-root', folder, '--src-root', 'D:\\data\\oxford_pets'])
    assert out3['train'] == [list(t) for t in train] and out3['num_shots'] == 2 and out3['seed'] is None
    with pytest.raises(ValueError, match='give --src-root'):
        convert.main([src, str(tmp_path / 'd.json'), '--data-root', str(tmp_path)])
    # anything but Datum and plain containers is refused
    evil = str(tmp_path / 'evil.pkl')
    with open(evil, 'wb') as f:
        pickle.dump({'train': [os.getcwd]}, f)
    with pytest.raises(pickle.UnpicklingError, match='refusing'):
        convert.main([evil, str(tmp_path / 'e.json'), '--data-root', folder])


def test_missing_files_are_clear_errors(pets, tmp_path):
    _, folder, _ = pets
    with pytest.raises(FileNotFoundError, match=r"data root '.*nowhere' does not exist"):
        CoOpSplitDataset(data_root=str(tmp_path / 'nowhere'), dataset='dtd')
    empty = tmp_path / 'dtd'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"CoOp split file '.*dtd/split_zhou_DescribableTextures.json' does "
                                                r"not exist.*README"):
        CoOpSplitDataset(data_root=str(empty), dataset='dtd')
    (empty / 'split_zhou_DescribableTextures.json').write_text('{"train": [], "val": [], "test": []}')
    with pytest.raises(FileNotFoundError, match=r"image folder '.*dtd/images' does not exist.*README"):
        CoOpSplitDataset(data_root=str(empty), dataset='dtd')
    (empty / 'images').mkdir()
    (empty / 'split_zhou_DescribableTextures.json').write_text('{"train": [["a.jpg", 1, "b"]], "test": []}')
    with pytest.raises(ValueError, match=r'no class name for the labels \[0\]'):
        CoOpSplitDataset(data_root=str(empty), dataset='dtd')
    (empty / 'split_zhou_DescribableTextures.json').write_text('{"train": [["a.jpg"]], "test": []}')
    with pytest.raises(ValueError, match=r"entry 0 of 'train'"):
        CoOpSplitDataset(data_root=str(empty), dataset='dtd')


def test_unreadable_images(tmp_path):
    folder, split = write_coop(tmp_path, 'eurosat')
    corrupt, truncated = split['test'][1][0], split['test'][4][0]
    with open(osp.join(folder, '2750', corrupt), 'wb') as f:
        f.write(b'not an image at all')
    path = osp.join(folder, '2750', truncated)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    ds = CoOpSplitDataset(data_root=folder, dataset='eurosat', split='test', pipeline=PIPELINE)
    assert len(ds) == 6 and ds.metainfo['skipped_images'] == []
    ds[0]
    for i, name in ((1, corrupt), (4, truncated)):
        with pytest.raises(RuntimeError, match=rf"cannot read image '.*2750/{name}'.*skip_unreadable=True"):
            ds[i]
    ds = CoOpSplitDataset(data_root=folder, dataset='eurosat', split='test', pipeline=PIPELINE, skip_unreadable=True)
    assert len(ds) == 4 and ds.metainfo['skipped_images'] == [f'2750/{corrupt}', f'2750/{truncated}']
    assert all(ds[i]['inputs'].shape[-2:] == (4, 4) for i in range(len(ds)))


# -- FGVC-Aircraft ---------------------------------------------------------------------------------------
VARIANTS = ['A300B4', 'Cessna 172', 'F-16A/B', 'Boeing 717']  # file order, not sorted; names with spaces


@pytest.fixture(scope='module')
def fgvc(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('coop') / 'fgvc_aircraft')
    os.makedirs(osp.join(folder, 'images'))
    with open(osp.join(folder, 'variants.txt'), 'w') as f:
        f.write('\n'.join(VARIANTS) + '\n')
    lists, n = {}, 0
    for key, count in dict(train=5, val=3, test=2).items():
        lines = []
        for i in range(count):
            for label in (1, 3, 0, 2):
                n += 1
                image_id = f'{1000000 + n:07d}'
                write_jpg(osp.join(folder, 'images', image_id + '.jpg'), seed=n)
                lines.append((image_id, label))
        with open(osp.join(folder, f'images_variant_{key}.txt'), 'w') as f:
            f.write(''.join(f'{i} {VARIANTS[label]}\n' for i, label in lines))
        lists[key] = [(f'images/{i}.jpg', label) for i, label in lines]
    return folder, lists


def test_fgvc_aircraft(fgvc, tmp_path):
    folder, lists = fgvc
    ds = FGVCAircraft(data_root=folder, num_shots=2, seed=4, pipeline=PIPELINE)
    assert ds.metainfo['classes'] == tuple(VARIANTS)
    assert ds.metainfo['templates'] == ('a photo of a {}, a type of aircraft.', )
    assert ds.split_items() == dassl_fewshot(lists['train'], 2, 4)
    assert ds[0]['data_samples'].gt_label.item() == ds.split_items()[0][1]
    assert FGVCAircraft(data_root=folder, split='val').split_items() == lists['val']
    assert len(FGVCAircraft(data_root=folder, split='val', num_shots=2, val_mode='fewshot')) == 4 * 2
    assert FGVCAircraft(data_root=folder, split='test', num_shots=2).split_items() == lists['test']
    from mmpretrain.registry import DATASETS
    built = DATASETS.build(dict(type='FewShotFGVCAircraft', data_root=folder, split='test'))
    assert built.split_items() == lists['test']
    assert DATASETS.get('FGVCAircraft').__module__.startswith('mmpretrain.')  # mmpretrain's own stays usable

    broken = tmp_path / 'fgvc_aircraft'
    broken.mkdir()
    with pytest.raises(FileNotFoundError, match=r"'.*fgvc_aircraft/variants.txt' does not exist.*README"):
        FGVCAircraft(data_root=str(broken))
    (broken / 'variants.txt').write_text('A300B4\n')
    (broken / 'images').mkdir()
    with pytest.raises(FileNotFoundError, match=r"images_variant_train.txt' does not exist"):
        FGVCAircraft(data_root=str(broken))
    for key in ('train', 'val', 'test'):
        (broken / f'images_variant_{key}.txt').write_text('0001 A300B4\n0002 Boeing 747\n')
    with pytest.raises(ValueError, match=r"line 2: variant 'Boeing 747' of image '0002' is not in"):
        FGVCAircraft(data_root=str(broken))


# -- ImageNet variants -----------------------------------------------------------------------------------
WNIDS = [f'n{i:08d}' for i in range(1000)]
PRESENT = [3, 500, 999]


@pytest.fixture(scope='module')
def variants(tmp_path_factory):
    """A CoOp $DATA root: imagenet/train with 1000 (empty) wnid folders, classnames.txt, the 4 variants with
    3 classes each (ImageNet indices PRESENT)."""
    root = tmp_path_factory.mktemp('coop')
    for w in WNIDS:
        os.makedirs(root / 'imagenet' / 'train' / w)
    names_file = root / 'imagenet' / 'classnames.txt'
    names_file.write_text(''.join(f'{w} class {i}\n' for i, w in enumerate(WNIDS)))
    for name, s in IMAGENET_VARIANTS.items():
        base = root / s['folder'] / s['image_dir']
        for j, idx in enumerate(PRESENT):
            cls = str(idx) if s['class_folders'] == 'index' else WNIDS[idx]
            for k in range(2):
                write_jpg(str(base / cls / f'{k}.jpeg'), seed=idx + k)
        (base / 'README.txt').write_text('not a class')
    return str(root), str(names_file)


@pytest.mark.parametrize('variant', sorted(IMAGENET_VARIANTS))
def test_imagenet_variants(variants, variant):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    root, names_file = variants
    s = IMAGENET_VARIANTS[variant]
    folder = osp.join(root, s['folder'])
    ds = ImageNetVariant(data_root=folder, variant=variant, imagenet_root=osp.join(root, 'imagenet'), num_shots=16,
                         pipeline=PIPELINE)
    cls = (lambda i: str(i)) if s['class_folders'] == 'index' else (lambda i: WNIDS[i])
    assert ds.split_items() == [(f"{s['image_dir']}/{cls(i)}/{k}.jpeg", i) for i in PRESENT for k in range(2)]
    assert ds.subset_classes() == PRESENT and ds.metainfo['subset_classes'] == tuple(PRESENT)
    assert ds.metainfo['classes'] == tuple(IMAGENET_CLASSNAMES) and len(ds.metainfo['templates']) == 7
    assert ds[5]['data_samples'].gt_label.item() == 999
    # the other wnid sources and CoOp's $DATA root give the same list
    assert ImageNetVariant(data_root=folder, variant=variant, classnames_file=names_file).split_items() == \
        ds.split_items()
    assert ImageNetVariant(data_root=root, variant=variant, classnames_file=names_file).data_root == folder
    with pytest.raises(ValueError, match='test-only distribution-shift set'):
        ImageNetVariant(data_root=folder, variant=variant, split='train', imagenet_root=osp.join(root, 'imagenet'))


def test_imagenet_variant_wnid_sources(variants, tmp_path):
    root, names_file = variants
    folder = osp.join(root, 'imagenet-adversarial')
    v2 = ImageNetVariant(data_root=osp.join(root, 'imagenetv2'), variant='imagenet_v2')  # no wnids needed
    assert v2.subset_classes() == PRESENT
    with pytest.raises(FileNotFoundError, match=r"needs the 1000 ImageNet wnids.*imagenet_root.*classnames_file"):
        ImageNetVariant(data_root=folder, variant='imagenet_a')
    copy = tmp_path / 'imagenet-adversarial'
    copy.mkdir()
    os.symlink(osp.join(folder, 'imagenet-a'), copy / 'imagenet-a')
    with open(names_file) as f:
        (copy / 'classnames.txt').write_text(f.read())  # CoOp's guide copies classnames.txt beside the images
    assert ImageNetVariant(data_root=str(copy), variant='imagenet_a').subset_classes() == PRESENT
    short = tmp_path / 'short.txt'
    short.write_text(''.join(f'{w} x\n' for w in WNIDS[:999]))
    with pytest.raises(ValueError, match='999 distinct wnids.*expected the 1000'):
        ImageNetVariant(data_root=folder, variant='imagenet_a', classnames_file=str(short))
    unsorted = tmp_path / 'unsorted.txt'
    unsorted.write_text(''.join(f'{w} x\n' for w in WNIDS[::-1]))
    with pytest.raises(ValueError, match='not sorted'):
        ImageNetVariant(data_root=folder, variant='imagenet_a', classnames_file=str(unsorted))
    other = tmp_path / 'other.txt'
    other.write_text(''.join(f'm{i:08d} x\n' for i in range(1000)))
    with pytest.raises(ValueError, match=r"class folders \['n00000003'.*are not ImageNet wnids"):
        ImageNetVariant(data_root=folder, variant='imagenet_a', classnames_file=str(other))
    os.makedirs(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match=r"image folder '.*nowhere/imagenet-r' of ImageNet variant"):
        ImageNetVariant(data_root=str(tmp_path / 'nowhere'), variant='imagenet_r', classnames_file=names_file)
    with pytest.raises(ValueError, match='unknown ImageNet variant'):
        ImageNetVariant(data_root=folder, variant='imagenet_c')


@pytest.mark.parametrize('variant', ['v2', 'sketch', 'a', 'r'])
def test_distribution_shift_configs(variant):
    import os.path as osp

    from mmengine.config import Config
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    cfg = Config.fromfile(osp.join(root, 'configs', f'eval_imagenet_{variant}.py'))
    ds = cfg.test_dataloader.dataset
    assert (ds.type, ds.variant, ds.imagenet_root) == ('ImageNetVariant', f'imagenet_{variant}', 'data/imagenet')
    assert ds.pipeline[1]['type'] == 'ResizeEdge' and 'split_dirs' not in ds  # replaced, not merged
    assert cfg.model.head.type == 'CacheHead'  # the ImageNet model, unchanged
    assert cfg.test_evaluator.get('restrict_to_subset', False) == (variant in ('a', 'r'))  # 200-way, as CoOp


@pytest.mark.slow
def test_restrict_to_subset_through_the_runner(variants, demo_assets, tmp_path):
    """configs/eval_imagenet_a.py run by mmengine's Runner: the metric predicts among the set's classes only
    (CoOp's 200-way ImageNet-A protocol), which is the argmax of the logits over those classes."""
    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner

    from conftest import ROOT
    from tip_adapter_mm.engine.hooks.build_cache_hook import find_cache_hook
    root, _ = variants
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'eval_imagenet_a.py'))
    digits = Config.fromfile(osp.join(ROOT, 'configs', 'tip_digits_16shot.py'))
    cfg.model.backbone.update(model_name='tiny-clip', pretrained=demo_assets[1])
    cfg.model.head.update(feat_dim=64, num_shots=0, alpha=0.)  # zero-shot: the text classifier alone
    cfg.num_shots, cfg.init_alpha = 0, 0.
    cfg.train_dataloader.dataset.update(num_shots=0, data_root=osp.join(root, 'imagenet'),
                                        pipeline=digits.train_dataloader.dataset.pipeline)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.test_dataloader.dataset.update(data_root=osp.join(root, 'imagenet-adversarial'),
                                       imagenet_root=osp.join(root, 'imagenet'),
                                       pipeline=digits.test_dataloader.dataset.pipeline)  # 32 px for the tiny CLIP
    cfg.test_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    head = runner.model.head
    feats, labels = find_cache_hook(runner).features(runner, 'test')
    with torch.no_grad():
        logits = head.logits(feats)
    present = torch.tensor(PRESENT)
    restricted = (present[logits[:, present].argmax(1)] == labels).float().mean().item() * 100
    full = (logits.argmax(1) == labels).float().mean().item() * 100
    assert metrics['accuracy/top1'] == pytest.approx(restricted, abs=1e-4)
    assert restricted >= full and len(labels) == 2 * len(PRESENT)
