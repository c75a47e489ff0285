"""Every entry point runs the same experiment: the project's tools, mmpretrain's own packaged tools/train.py
and tools/test.py, ``mim train/test mmpretrain`` and a plain ``Runner.from_cfg(Config.fromfile(...))`` give
the same alpha, beta and accuracies, bit for bit, for each method on the demo."""
import os
import os.path as osp
import subprocess
import sys

import pytest

from conftest import TIPF_EPOCHS, ROOT, demo_options, read_results

pytestmark = pytest.mark.slow

# (config, the shared run of the project's tools, options of that run: every entry point gets the same ones)
METHODS = {
    'zeroshot': ('configs/zeroshot_digits.py', 'zeroshot_run', {}),
    'tip': ('configs/tip_digits_16shot.py', 'tip_run', {}),
    'tip_f': ('configs/tip_f_digits_16shot.py', 'tipf_run', {'max_epochs': TIPF_EPOCHS}),
    'meta': ('configs/meta_adapter_digits_16shot.py', 'meta_run', {}),
}
KEYS = ('test_top1', 'test_top5', 'val_top1', 'alpha', 'beta', 'selected_epoch', 'novel_top1', 'base_top1',
        'selection_split', 'hp_selection', 'num_shots', 'seed')


def _mmpretrain_tool(name):
    import mmpretrain
    return osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools', name)


def _mim():
    return osp.join(osp.dirname(sys.executable), 'mim')


def _run(argv, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (argv, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def _subset(res):
    return {k: res.get(k) for k in KEYS}


def _runner_from_cfg(config, work_dir, options):
    """What a user writes in Python: mmengine's Config and Runner, nothing of the project's tools."""
    from mmengine.config import Config, DictAction
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in (o.split('=', 1) for o in options)})
    cfg.work_dir = str(work_dir)
    Runner.from_cfg(cfg).train()
    return read_results(work_dir)


@pytest.mark.parametrize('method', list(METHODS))
def test_every_entry_point_gives_the_same_run(method, demo_assets, tmp_path, request):
    config, fixture, short = METHODS[method]
    options = demo_options(demo_assets)
    project_dir, reference = request.getfixturevalue(fixture)[:2]  # the project's tools/train.py
    short_opts = [f'{k}={v}' for k, v in short.items()]
    # mmpretrain's packaged tools/train.py (what `mim train mmpretrain` runs)
    _run([sys.executable, _mmpretrain_tool('train.py'), osp.join(ROOT, config), '--work-dir',
          str(tmp_path / 'mmpretrain'), '--cfg-options', *options, *short_opts], cwd=str(tmp_path))
    # mim itself
    _run([_mim(), 'train', 'mmpretrain', osp.join(ROOT, config), '--work-dir', str(tmp_path / 'mim'),
          '--cfg-options', *options, *short_opts], cwd=str(tmp_path))
    runs = {name: read_results(tmp_path / name) for name in ('mmpretrain', 'mim')}
    # mmengine's Runner.from_cfg on the file: the file alone is the experiment (a plain Runner applies no
    # top-level setting, so a shorter run sets the key and its place, train_cfg.max_epochs, both)
    both = options + short_opts + [f'train_cfg.{k}={v}' for k, v in short.items()]
    runs['runner'] = _runner_from_cfg(config, tmp_path / 'runner', both)
    expected = _subset(reference)
    assert expected['test_top1'] is not None
    for name, res in runs.items():
        assert _subset(res) == expected, name
    # test.py: the project's, mmpretrain's and mim's on the run's checkpoint give the run's test accuracy
    ckpt = osp.join(str(project_dir), 'final.pth' if osp.exists(osp.join(str(project_dir), 'final.pth'))
                    else 'epoch_1.pth')
    _run([sys.executable, osp.join(ROOT, 'tools', 'test.py'), osp.join(ROOT, config), ckpt, '--work-dir',
          str(tmp_path / 'test_project'), '--cfg-options', *options], cwd=str(tmp_path))
    _run([sys.executable, _mmpretrain_tool('test.py'), osp.join(ROOT, config), ckpt, '--work-dir',
          str(tmp_path / 'test_mmpretrain'), '--cfg-options', *options], cwd=str(tmp_path))
    _run([_mim(), 'test', 'mmpretrain', osp.join(ROOT, config), '--checkpoint', ckpt, '--work-dir',
          str(tmp_path / 'test_mim'), '--cfg-options', *options], cwd=str(tmp_path))
    for name in ('test_project', 'test_mmpretrain', 'test_mim'):
        tested = read_results(tmp_path / name, 'results_test.json')
        for key in ('test_top1', 'test_top5', 'novel_top1', 'alpha', 'beta'):
            assert tested.get(key) == reference.get(key), (name, key)

