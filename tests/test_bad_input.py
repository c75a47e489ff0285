"""Bad input gets a clear error, before anything is written."""
import os
import os.path as osp

import pytest
import torch

from conftest import ROOT, demo_options
from folders import write_image_folder
from tip_adapter_mm.launch import main_test, main_train

CONFIG = osp.join(ROOT, 'configs/tip_digits_16shot.py')


def _assert_nothing_written(work_dir):
    assert not osp.exists(work_dir), os.listdir(work_dir)


def test_missing_data_root(demo_assets, tmp_path):
    work_dir = str(tmp_path / 'wd')
    opts = demo_options(demo_assets, **{'train_dataloader.dataset.data_root': str(tmp_path / 'nodata')})
    with pytest.raises(FileNotFoundError, match=r"data root '.*nodata' does not exist"):
        main_train([CONFIG, '--work-dir', work_dir, '--cfg-options', *opts])
    _assert_nothing_written(work_dir)


def test_missing_split(demo_assets, tmp_path):
    work_dir = str(tmp_path / 'wd')
    opts = demo_options(demo_assets, **{'test_dataloader.dataset.split_dirs.test': 'heldout'})
    with pytest.raises(FileNotFoundError, match=r"split folder '.*heldout' for the test split"):
        main_train([CONFIG, '--work-dir', work_dir, '--cfg-options', *opts])
    _assert_nothing_written(work_dir)


def test_class_with_fewer_than_k_images(demo_assets, tmp_path):
    root = write_image_folder(tmp_path / 'data', {s: {str(d): (3 if d == 7 and s == 'train' else 20)
                                                      for d in range(10)} for s in ('train', 'val', 'test')},
                              size=32, ext='.png')
    work_dir = str(tmp_path / 'wd')
    opts = demo_options(demo_assets, **{f'{k}.dataset.data_root': root for k in
                                        ('train_dataloader', 'val_dataloader', 'test_dataloader')})
    with pytest.raises(ValueError, match=r"class 'seven' \(label 7\) has 3 usable images.*fewer than the 16"):
        main_train([CONFIG, '--work-dir', work_dir, '--cfg-options', *opts])
    _assert_nothing_written(work_dir)


def test_unknown_model_name(demo_assets, tmp_path):
    work_dir = str(tmp_path / 'wd')
    opts = demo_options(demo_assets, **{'model.backbone.model_name': 'tiny-clp'})
    with pytest.raises(ValueError, match=r"unknown open_clip model name 'tiny-clp'.*tiny-clip"):
        main_train([CONFIG, '--work-dir', work_dir, '--cfg-options', *opts])
    _assert_nothing_written(work_dir)


def test_shots_set_in_one_place_only(demo_assets, tmp_path):
    work_dir = str(tmp_path / 'wd')
    opts = demo_options(demo_assets, **{'train_dataloader.dataset.num_shots': 8})  # head 16, dataset 8
    with pytest.raises(ValueError, match=r'train_dataloader\.dataset\.num_shots=8 but num_shots=16'):
        main_train([CONFIG, '--work-dir', work_dir, '--cfg-options', *opts])
    _assert_nothing_written(work_dir)


def test_shots_set_in_one_place_only_under_plain_runner(demo_assets, tmp_path):
    """mmengine's own Runner.from_cfg (no project tool, no project runner): the config's hook refuses it
    before anything is computed."""
    from mmengine.config import Config, DictAction
    from mmengine.runner import Runner
    cfg = Config.fromfile(CONFIG)
    for item in demo_options(demo_assets, **{'model.head.num_shots': 8}):
        key, value = item.split('=', 1)
        cfg.merge_from_dict({key: DictAction._parse_iterable(value)})
    cfg.work_dir = str(tmp_path / 'wd')
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=r'model\.head\.num_shots=8 but num_shots=16'):
        runner.train()
    assert not osp.exists(tmp_path / 'wd' / 'results.json') and not osp.exists(tmp_path / 'wd' / 'epoch_1.pth')


def test_checkpoint_for_another_class_count(demo_assets, tmp_path):
    ckpt = tmp_path / 'other.pth'
    torch.save({'meta': {}, 'state_dict': {'head.clip_weights': torch.zeros(7, 64),
                                           'head.cache_keys': torch.zeros(7 * 16, 64)}}, ckpt)
    work_dir = str(tmp_path / 'wd')
    with pytest.raises(ValueError, match=r"checkpoint '.*other.pth' holds head.clip_weights of shape \(7, 64\) "
                                         r'but the config builds \(10, 64\)'):
        main_test([CONFIG, str(ckpt), '--work-dir', work_dir, '--cfg-options', *demo_options(demo_assets)])
    _assert_nothing_written(work_dir)


def test_checkpoint_for_another_feature_size(demo_assets, tmp_path):
    ckpt = tmp_path / 'vit.pth'
    torch.save({'state_dict': {'head.clip_weights': torch.zeros(10, 512)}}, ckpt)
    work_dir = str(tmp_path / 'wd')
    with pytest.raises(ValueError, match=r'shape \(10, 512\) but the config builds \(10, 64\)'):
        main_test([CONFIG, str(ckpt), '--work-dir', work_dir, '--cfg-options', *demo_options(demo_assets)])
    _assert_nothing_written(work_dir)


def test_head_refuses_mismatched_state_dict_directly():
    """The same check guards load_state_dict, whatever loads the checkpoint."""
    from tip_adapter_mm.models import CacheHead
    head = CacheHead(num_classes=10, feat_dim=64, num_shots=2)
    state = head.state_dict()
    state['cache_keys'] = torch.zeros(30, 64)
    with pytest.raises(ValueError, match=r'head.cache_keys of shape \(30, 64\) but the config builds \(20, 64\)'):
        head.load_state_dict(state)


@pytest.mark.slow
def test_unreadable_test_image_is_named_or_skipped_and_counted(demo_assets, tmp_path):
    import shutil

    from conftest import read_results
    digits, _ = demo_assets
    root = tmp_path / 'digits'
    shutil.copytree(digits, root)
    broken = sorted((root / 'test' / '3').iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:40])  # a truncated PNG
    roots = {f'{k}.dataset.data_root': str(root) for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')}
    with pytest.raises(RuntimeError, match=rf"cannot read image '.*{broken.name}'"):
        main_test([CONFIG, '--work-dir', str(tmp_path / 'a'), '--cfg-options', *demo_options(demo_assets, **roots)])
    assert not osp.exists(tmp_path / 'a' / 'results_test.json')
    main_test([CONFIG, '--work-dir', str(tmp_path / 'b'), '--cfg-options',
               *demo_options(demo_assets, **roots, **{'test_dataloader.dataset.skip_unreadable': True})])
    res = read_results(tmp_path / 'b', 'results_test.json')
    assert res['skipped_images']['test'] == 1 and res['test_size'] == 497 - 1
