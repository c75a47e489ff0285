"""Hardening against bad files, bad settings and faults: no silent wrong result, no lost result, clear errors."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, demo_options, read_results
from folders import write_image_folder
from test_config import _cfg
from tip_adapter_mm.launch import main_test, main_train

TIP = osp.join(ROOT, 'configs/tip_digits_16shot.py')
TIP_F = osp.join(ROOT, 'configs/tip_f_digits_16shot.py')
META = osp.join(ROOT, 'configs/meta_adapter_digits_16shot.py')


def _roots(root):
    return {f'{k}.dataset.data_root': str(root) for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')}


# ---------------------------------------------------------------- a checkpoint of another method

@pytest.mark.slow
@pytest.mark.parametrize('run, ckpt_name, config, message', [
    ('meta_run', 'final.pth', TIP,
     r'was made by Meta-Adapter \(MetaAdapterHead\) but the config runs Tip-Adapter \(CacheHead\)'),
    ('tip_run', 'epoch_1.pth', META,
     r'was made by Tip-Adapter \(CacheHead\) but the config runs Meta-Adapter \(MetaAdapterHead\)')])
def test_checkpoint_of_another_method_is_refused(request, demo_assets, tmp_path, run, ckpt_name, config, message):
    ckpt = osp.join(str(request.getfixturevalue(run)[0]), ckpt_name)
    with pytest.raises(ValueError, match=message):
        main_test([config, ckpt, '--work-dir', str(tmp_path / 'wd'), '--cfg-options', *demo_options(demo_assets)])
    assert not osp.exists(tmp_path / 'wd')


def test_checkpoint_of_another_clip_is_refused():
    from tip_adapter_mm.engine.identity import check_identity, run_identity
    cfg = _cfg('tip_caltech101_16shot.py')
    saved = run_identity(cfg)
    check_identity(saved, cfg, 'x.pth')  # its own run
    with pytest.raises(ValueError, match=r"made with the CLIP model 'RN101' but the config uses 'RN50'"):
        check_identity(dict(saved, backbone='RN101'), cfg, 'x.pth')


@pytest.mark.slow
def test_tip_adapter_checkpoint_cannot_resume_a_finetuning_run(tip_run, demo_assets, tmp_path):
    ckpt = osp.join(str(tip_run[0]), 'epoch_1.pth')
    with pytest.raises(ValueError, match=r"--resume needs a training checkpoint of this run, but '.*epoch_1.pth' "
                                         r'was made by Tip-Adapter; the config runs Tip-Adapter-F'):
        main_train([TIP_F, '--work-dir', str(tmp_path / 'wd'), '--resume', ckpt, '--cfg-options',
                    *demo_options(demo_assets)])
    assert not osp.exists(tmp_path / 'wd' / 'results.json')


# ---------------------------------------------------------------- settings ignored or accepted silently

@pytest.mark.parametrize('option, message', [
    ('num_shot=4', r"unknown top-level key 'num_shot' \(did you mean \['num_shots'"),
    ('data_root=/elsewhere', r"'data_root' is a variable of the config file.*train_dataloader\.dataset\.data_root"),
    ('search_scale=[-5,-5]', r'search_scale must be two numbers > 0, \[beta, alpha\], got \[-5, -5\]'),
    ('num_shots=1.5', r'num_shots must be an integer >= 0 .*, got 1.5'),
    ('fewshot_seed=abc', r"fewshot_seed must be an integer, got 'abc'"),
    ('base_classes=[0,11]', r'base_classes must be .* in \[0, num_classes\).*, got \[0, 11\]'),
    ('init_beta=0', r'init_beta must be a number > 0, got 0'),
    ('hp_selection=test', r"hp_selection must be one of .*got 'test'"),
    ('num_shots=4', r'num_shots=4: this is a zero-shot CLIP config .* Use the Tip-Adapter config'),
])
def test_settings_are_checked_before_anything_runs(option, message):
    config = ('meta_adapter_digits_16shot.py' if option.startswith('base_classes') else
              'zeroshot_digits.py' if option == 'num_shots=4' else 'tip_digits_16shot.py')
    with pytest.raises(ValueError, match=message):
        _cfg(config, option)


def test_split_file_with_labels_of_another_dataset(demo_assets, tmp_path):
    split = tmp_path / 'split.json'
    split.write_text(json.dumps({'num_shots': 1, 'train': [['train/0/a.png', 0], ['train/1/b.png', 42]]}))
    from mmpretrain.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    with pytest.raises(ValueError, match=r"split file '.*split.json': 'train' has labels \[42\] outside \[0, 10\)"):
        DATASETS.build(dict(type='FewShotImageFolder', data_root=demo_assets[0], split='train', num_shots=1,
                            split_file=str(split), classnames='digits'))


# ---------------------------------------------------------------- results lost or overwritten

def test_a_second_run_in_a_busy_work_dir_is_refused(tmp_path):
    from tip_adapter_mm.engine.workdir import lock_work_dir
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; sys.path.insert(0, sys.argv[1]); '
                               'from tip_adapter_mm.engine.workdir import lock_work_dir; '
                               'lock_work_dir(sys.argv[2]); print("locked", flush=True); time.sleep(60)',
                               ROOT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(RuntimeError, match=rf"work dir '.*' is in use by another run \(process {holder.pid}:"):
            lock_work_dir(str(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    lock_work_dir(str(tmp_path)).release()  # free again once that process is gone


@pytest.mark.slow
def test_testing_a_checkpoint_keeps_the_runs_results(tip_run, demo_assets, tmp_path):
    work_dir = tmp_path / 'run'
    shutil.copytree(str(tip_run[0]), work_dir)
    before = (work_dir / 'results.json').read_text()
    main_test([TIP, str(work_dir / 'epoch_1.pth'), '--work-dir', str(work_dir), '--cfg-options',
               *demo_options(demo_assets)])
    assert (work_dir / 'results.json').read_text() == before
    tested = read_results(work_dir, 'results_test.json')
    assert tested['test_top1'] == tip_run[1]['test_top1']


@pytest.mark.slow
def test_files_the_project_did_not_write_are_not_overwritten(demo_assets, tmp_path):
    work_dir = tmp_path / 'wd'
    work_dir.mkdir()
    (work_dir / 'results.json').write_text('{"mine": 1}\n')
    with pytest.raises(FileExistsError, match=r"'.*results.json' exists and was not written by this project"):
        main_train([TIP, '--work-dir', str(work_dir), '--cfg-options', *demo_options(demo_assets)])
    assert (work_dir / 'results.json').read_text() == '{"mine": 1}\n'
    assert not (work_dir / 'epoch_1.pth').exists()
    main_train([TIP, '--work-dir', str(work_dir), '--force', '--cfg-options', *demo_options(demo_assets)])
    assert read_results(work_dir)['written_by'].startswith('tip_adapter_mm')
    # a second run over the project's own files is fine
    main_train([TIP, '--work-dir', str(work_dir), '--cfg-options', *demo_options(demo_assets)])


# ---------------------------------------------------------------- errors that name the file and the cause

def test_data_root_that_is_a_file(demo_assets, tmp_path):
    path = tmp_path / 'not_a_folder'
    path.write_text('x')
    with pytest.raises(NotADirectoryError, match=rf"data root '{path}' .* is a file; expected a folder"):
        main_train([TIP, '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                    *demo_options(demo_assets, **_roots(path))])
    assert not osp.exists(tmp_path / 'wd')


def test_empty_class_folder(demo_assets, tmp_path):
    root = write_image_folder(tmp_path / 'data', {s: {str(d): 20 for d in range(10)}
                                                  for s in ('train', 'val', 'test')}, size=32, ext='.png')
    for f in os.listdir(osp.join(root, 'train', '4')):
        os.remove(osp.join(root, 'train', '4', f))
    with pytest.raises(ValueError, match=r"class folder\(s\) \['.*train/4'\] of the train split hold no image"):
        main_train([TIP, '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                    *demo_options(demo_assets, **_roots(root))])
    assert not osp.exists(tmp_path / 'wd')


def test_unreadable_image_stops_the_run_before_any_work(demo_assets, tmp_path):
    root = tmp_path / 'digits'
    shutil.copytree(demo_assets[0], root)
    broken = sorted((root / 'test' / '5').iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:60])  # a truncated PNG: its header parses
    with pytest.raises(RuntimeError, match=rf"cannot read image '.*{broken.name}' of the test split"):
        main_train([TIP, '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                    *demo_options(demo_assets, **_roots(root))])
    assert not osp.exists(tmp_path / 'wd')  # found before the cache, the search and the checkpoint


# ---------------------------------------------------------------- leftovers

def test_stale_temporaries_of_a_killed_save_are_removed(tmp_path):
    from tip_adapter_mm.engine.workdir import remove_stale_temporaries
    (tmp_path / '.epoch_3.pth8f2k.tmp').write_bytes(b'half')
    (tmp_path / 'epoch_2.pth').write_bytes(b'kept')
    (tmp_path / 'notes.tmp').write_text('kept: not a temporary of ours')
    assert remove_stale_temporaries(str(tmp_path)) == 1
    assert sorted(os.listdir(tmp_path)) == ['epoch_2.pth', 'notes.tmp']


@pytest.mark.slow
def test_tip_config_without_shots_records_no_search(demo_assets, tmp_path):
    res = main_train([TIP, '--work-dir', str(tmp_path), '--cfg-options', *demo_options(demo_assets, num_shots=0)])
    res = read_results(tmp_path)
    assert res['selection_split'] == 'none' and res['search_scale'] is None and res['num_shots'] == 0


@pytest.mark.slow
def test_dist_scripts_take_paths_with_spaces(tip_run, demo_assets, tmp_path):
    from conftest import run_dist
    work_dir = tmp_path / 'a folder with spaces'
    proc = run_dist('dist_test.sh', ['configs/tip_digits_16shot.py', osp.join(str(tip_run[0]), 'epoch_1.pth'),
                                     '2', '--work-dir', str(work_dir), '--cfg-options',
                                     *demo_options(demo_assets)], 2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert read_results(work_dir, 'results_test.json')['test_top1'] == tip_run[1]['test_top1']
