import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import time

import shutil
import tempfile

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
#: the feature store of the test session's runs (never the user's data/features)
STORE_ROOT = osp.join(tempfile.gettempdir(), f'tip-adapter-mm-tests-{os.getpid()}', 'features')


@pytest.fixture(scope='session', autouse=True)
def _session_feature_store():
    yield STORE_ROOT
    shutil.rmtree(osp.dirname(STORE_ROOT), ignore_errors=True)


@pytest.fixture(scope='session')
def demo_assets():
    """(digits root, tiny CLIP checkpoint), made once and cached under data/ (or $TIP_ADAPTER_MM_DATA)."""
    from tip_adapter_mm.demo import ensure_demo_assets
    return ensure_demo_assets(os.environ.get('TIP_ADAPTER_MM_DATA', osp.join(ROOT, 'data')))


def demo_options(assets, **overrides):
    """--cfg-options that point a digits config at the demo assets."""
    digits, ckpt = assets
    options = {'model.backbone.pretrained': ckpt, 'experiment_name': f'test-{time.time_ns()}',
               'feature_store.root': STORE_ROOT}
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options[f'{key}.dataset.data_root'] = digits
    options.update(overrides)
    return [f'{k}={v}' for k, v in options.items()]


def run_train(config, work_dir, assets, *extra, **overrides):
    from tip_adapter_mm.launch import main_train
    main_train([osp.join(ROOT, config), '--work-dir', str(work_dir), *extra, '--cfg-options',
                *demo_options(assets, **overrides)])
    return read_results(work_dir)


def run_checkpoint(work_dir) -> str:
    """The checkpoint a run saved: final.pth, else the one last_checkpoint names (Tip-Adapter: epoch_1.pth)."""
    final = osp.join(str(work_dir), 'final.pth')
    if osp.isfile(final):
        return final
    with open(osp.join(str(work_dir), 'last_checkpoint')) as f:
        return f.read().strip()


def run_config(work_dir) -> str:
    """The copy of the config the run dumped into its work dir (with the test's --cfg-options)."""
    configs = glob.glob(osp.join(str(work_dir), '*.py'))
    assert len(configs) == 1, configs
    return configs[0]


def read_scalars(work_dir):
    """The lines of the scalars.json mmengine's visualizer (LocalVisBackend) wrote for a run."""
    paths = glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json'))
    assert len(paths) == 1, paths
    with open(paths[0]) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_results(work_dir, name='results.json'):
    """A run's record: results.json of a training run, results_test.json of a test-only run."""
    with open(osp.join(str(work_dir), name)) as f:
        return json.load(f)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_dist(script, args, nproc, timeout=600):
    """Run tools/dist_*.sh with nproc CPU processes; return the completed process."""
    env = dict(os.environ, PORT=str(free_port()), OMP_NUM_THREADS='1', PYTHON=sys.executable)
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', script), *args[:1], str(nproc), *args[1:]]
                          if script == 'dist_train.sh' else ['bash', osp.join(ROOT, 'tools', script), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return proc


@pytest.fixture(scope='session')
def tip_run(demo_assets, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('tip')
    return work_dir, run_train('configs/tip_digits_16shot.py', work_dir, demo_assets)


@pytest.fixture(scope='session')
def zeroshot_run(demo_assets, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('zeroshot')
    return work_dir, run_train('configs/zeroshot_digits.py', work_dir, demo_assets)


#: epochs of the shared Tip-Adapter-F run (short; the schedule follows)
TIPF_EPOCHS = 4
#: keep every epoch's checkpoint (the default keeps the last, the selected one and final.pth), for tests that
#: compare epochs
KEEP_ALL = {'default_hooks.checkpoint.max_keep_ckpts': -1}


@pytest.fixture(scope='session')
def tipf_run(demo_assets, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('tipf')
    return work_dir, run_train('configs/tip_f_digits_16shot.py', work_dir, demo_assets, max_epochs=TIPF_EPOCHS,
                                **KEEP_ALL)


@pytest.fixture(scope='session')
def meta_run(demo_assets, tmp_path_factory):
    """(work dir, results, runner) of the demo's Meta-Adapter run."""
    from tip_adapter_mm.launch import main_train
    work_dir = tmp_path_factory.mktemp('meta')
    runner = main_train([osp.join(ROOT, 'configs/meta_adapter_digits_16shot.py'), '--work-dir', str(work_dir),
                         '--cfg-options', *demo_options(demo_assets, **KEEP_ALL)])
    return work_dir, read_results(work_dir), runner
