"""A user's own image folder in one short config (configs/_base_/datasets/folder_fewshot.py): no validation
folder (held out of train), class names from a {folder: name} mapping, the dataset named after its folder, top-k
capped at the class count, no base/novel metric; a mapping that does not fit the folders is an error."""
import json
import os.path as osp

import pytest

from conftest import ROOT, STORE_ROOT
from folders import write_image_folder
from tip_adapter_mm.datasets import FewShotImageFolder

FOLDERS = ['daisy', 'rose', 'tulip', 'sunflower']  # sorted: daisy, rose, sunflower, tulip


@pytest.fixture(scope='module')
def flowers(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'flowers'
    layout = {'train': {c: 12 for c in FOLDERS}, 'test': {c: 5 for c in FOLDERS}}  # no val folder
    return write_image_folder(str(root), layout, size=32, ext='.png')


def test_mapping_names_the_folders_and_a_mismatch_lists_both(flowers):
    names = {'tulip': 'tulip flower', 'daisy': 'daisy flower', 'rose': 'rose flower', 'sunflower': 'sunflower'}
    ds = FewShotImageFolder(data_root=flowers, split='test', classnames=names, serialize_data=False)
    assert ds.metainfo['classes'] == ('daisy flower', 'rose flower', 'sunflower', 'tulip flower')
    with pytest.raises(ValueError, match=r"maps the folders \['daisy', 'lily', 'rose', 'tulip'\].*are \['daisy', "
                                         r"'rose', 'sunflower', 'tulip'\].*missing from the mapping: \['sunflower'\]"):
        FewShotImageFolder(data_root=flowers, split='test', serialize_data=False,
                           classnames={'tulip': 't', 'daisy': 'd', 'rose': 'r', 'lily': 'l'})


def test_no_validation_folder_holds_validation_out_of_train(flowers):
    kw = dict(data_root=flowers, num_shots=4, seed=1, serialize_data=False)
    val = set(FewShotImageFolder(split='val', **kw).split_items())
    cache = set(FewShotImageFolder(split='train', **kw).split_items())
    assert len(val) == 4 * 4 and not val & cache and all(p.startswith('train/') for p, _ in val)


@pytest.mark.slow
def test_short_config_on_own_folder(flowers, demo_assets, tmp_path):
    from tip_adapter_mm.launch import main_train
    _, ckpt = demo_assets
    config = tmp_path / 'flowers_tip.py'
    # the README's short config (no class count: counted from the folders), with class names, 4 shots and the
    # demo's tiny CLIP in place of RN50: its 32 px, mean/std and feature size come from the backbone
    config.write_text(f"""
_base_ = ['{ROOT}/configs/tip_folder_16shot.py']
num_shots = 4
data_root = '{flowers}'
names = {{'daisy': 'Daisy', 'rose': 'Rose', 'sunflower': 'Sunflower', 'tulip': 'Tulip'}}
model = dict(backbone=dict(model_name='tiny-clip', pretrained='{ckpt}'), head=dict(num_shots=num_shots))
train_dataloader = dict(dataset=dict(data_root=data_root, classnames=names, num_shots=num_shots))
val_dataloader = dict(dataset=dict(data_root=data_root, classnames=names, num_shots=num_shots))
test_dataloader = dict(dataset=dict(data_root=data_root, classnames=names, num_shots=num_shots))
feature_store = dict(root='{STORE_ROOT}')
""")
    runner = main_train([str(config), '--work-dir', str(tmp_path / 'run')])
    assert runner.model.head.num_classes == 4 and runner.model.head.feat_dim == 64
    assert runner.cfg.test_dataloader.dataset.pipeline[2].crop_size == 32
    res = json.loads((tmp_path / 'run' / 'results.json').read_text())
    assert res['dataset'] == 'flowers' and res['method'] == 'Tip-Adapter'
    assert res['val_size'] == 16 and res['cache_size'] == 16
    assert 'test_top1' in res and res.get('test_top5') is None  # top-5 of 4 classes is not reported
    assert not any(k.startswith(('test_base', 'test_novel')) for k in res)
    from tip_adapter_mm.utils.checkpoint import safe_load
    meta = safe_load(str(tmp_path / 'run' / 'epoch_1.pth'))['meta']['dataset_meta']
    assert meta['classes'] == ('Daisy', 'Rose', 'Sunflower', 'Tulip') and meta['templates'] == ('a photo of a {}.', )
    # a class count that does not fit the folders is an error naming both, before any output
    with pytest.raises(ValueError, match='the dataset has 4 classes but model.head.num_classes is 5'):
        main_train([str(config), '--work-dir', str(tmp_path / 'bad'), '--cfg-options', 'num_classes=5'])
    assert not osp.exists(tmp_path / 'bad')


def test_unfilled_sizes_under_a_plain_runner_say_who_fills_them():
    """num_classes None (counted from the data) and feat_dim 'auto' (the backbone's) are the runner's to fill: the
    heads built without it (a plain Runner.from_cfg) say so instead of a TypeError."""
    from tip_adapter_mm.models import CacheHead, MetaAdapterHead
    for head in (CacheHead, MetaAdapterHead):
        with pytest.raises(ValueError, match=r"num_classes=None is filled in from the data / the backbone by the "
                                             r"project's runner .*FewShotRunner"):
            head(num_classes=None, feat_dim=64, num_shots=4)
        with pytest.raises(ValueError, match=r"feat_dim='auto' is filled in"):
            head(num_classes=4, feat_dim='auto', num_shots=4)
