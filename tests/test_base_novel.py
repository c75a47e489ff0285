"""Base/novel class splits: Meta-Adapter's published lists ship with the package and are the default split of
its 8 datasets; a split may also be given by class names."""
import json
import os.path as osp
import random

import pytest

from conftest import ROOT, demo_options, read_results
from tip_adapter_mm.datasets.base_novel import (OFFICIAL_FILE, official_datasets, official_split, resolve_classes,
                                                spec_values)
from tip_adapter_mm.settings import check_values

COUNTS = dict(imagenet=(700, 300), caltech101=(70, 30), dtd=(32, 15), eurosat=(7, 3), fgvc_aircraft=(70, 30),
              oxford_pets=(29, 8), sun397=(277, 120), ucf101=(70, 31))


def test_published_lists_ship_with_their_source():
    with open(OFFICIAL_FILE) as f:
        data = json.load(f)
    assert 'ArsenalCheng/Meta-Adapter' in data['source'] and 'dc1d9c0' in data['source']
    assert official_datasets() == sorted(COUNTS)
    for name, (n_base, n_novel) in COUNTS.items():
        split = official_split(name)
        assert (len(split['base']), len(split['novel'])) == (n_base, n_novel), name
        assert not set(split['base']) & set(split['novel']), name


def test_imagenet_split_is_by_index_and_not_the_first_700():
    split = official_split('imagenet')
    assert split['kind'] == 'class_indices' and sorted(split['base'] + split['novel']) == list(range(1000))
    assert len(set(split['base']) & set(range(700))) == 493  # what the former default shared with it
    assert resolve_classes('meta_adapter/imagenet', 1000) == split['base']


def test_names_are_matched_to_the_dataset_order():
    split = official_split('oxford_pets')
    names = split['base'] + split['novel']
    random.Random(0).shuffle(names)
    index = resolve_classes('meta_adapter/oxford_pets', len(names), names)
    assert [names[i] for i in index] == split['base']
    # case and '_' vs ' ' do not matter
    spaced = [n.replace('_', ' ').title() for n in names]
    assert resolve_classes('meta_adapter/oxford_pets', len(names), spaced) == index
    with pytest.raises(ValueError, match=r"1 of 29 classes are not classes of the dataset, e.g. \['shiba_inu'\]"):
        resolve_classes('meta_adapter/oxford_pets', None, [n for n in names if n != 'shiba_inu'])


@pytest.mark.parametrize('spec, match', [
    ('meta_adapter/food101', "no published Meta-Adapter base/novel split for 'food101'"),
    ('first_half', "must be 'meta_adapter/<dataset>'"), ([0, 'one'], 'not a mix'), ([1, 1], 'twice'), ([], 'empty')])
def test_bad_specs_are_named(spec, match):
    with pytest.raises((ValueError, KeyError), match=match):
        spec_values(spec)


def test_settings_accept_published_names_and_refuse_others():
    check_values({'num_classes': 47, 'base_classes': 'meta_adapter/dtd'})
    check_values({'num_classes': 10, 'base_classes': ['zero', 'one']})
    for bad in ('meta_adapter/food101', [3, 12], [0, 'one']):
        with pytest.raises(ValueError, match='base_classes must be'):
            check_values({'num_classes': 10, 'base_classes': bad})


def test_every_meta_adapter_config_with_a_published_split_uses_it():
    from mmengine.config import Config
    for name in COUNTS:
        cfg = Config.fromfile(osp.join(ROOT, f'configs/meta_adapter_{name}_16shot.py'))
        assert cfg.base_classes == f'meta_adapter/{name}'
        assert cfg.model.head.base_classes == cfg.test_evaluator.base_classes == cfg.val_evaluator.base_classes \
            == cfg.base_classes


def test_head_and_metric_match_names_once_the_dataset_is_known():
    from tip_adapter_mm.evaluation import BaseNovelAccuracy
    from tip_adapter_mm.models import MetaAdapterHead
    names = ['cat', 'dog', 'fish', 'bird']
    head = MetaAdapterHead(num_classes=4, feat_dim=8, num_shots=1, base_classes=['dog', 'bird'])
    assert not head.base_mask.any()
    head.set_class_names(names)
    assert head.base_mask.tolist() == [False, True, False, True]
    metric = BaseNovelAccuracy(base_classes=['dog', 'bird'], topk=(1, ))
    metric.dataset_meta = dict(classes=names)
    # (rank of the true class in the top k, label) per image: three hits, then a miss of class 1
    results = [(0, label) for label in (0, 1, 3)] + [(1, 1)]
    out = metric.compute_metrics(results)
    assert out['base/top1'] == pytest.approx(200 / 3) and out['novel/top1'] == 100.


@pytest.mark.slow
def test_split_by_names_runs_as_the_split_by_indices(meta_run, demo_assets, tmp_path):
    from tip_adapter_mm.launch import main_train
    _, res, _ = meta_run
    names = ['zero', 'one', 'two', 'three', 'four', 'five', 'six']
    main_train([osp.join(ROOT, 'configs/meta_adapter_digits_16shot.py'), '--work-dir', str(tmp_path),
                '--cfg-options', *demo_options(demo_assets, base_classes=json.dumps(names).replace(' ', ''))])
    again = read_results(tmp_path)
    for key in ('val_top1', 'test_top1', 'test_base_top1', 'test_novel_top1', 'selected_epoch'):
        assert again[key] == res[key], key
