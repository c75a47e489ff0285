"""No file runs code: every checkpoint and weights file is read with weights_only=True, through every entry
point, and the refusal names the file and the offending global. Importing the package changes nothing."""
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, demo_options
from tip_adapter_mm.launch import main_test, main_train
from tip_adapter_mm.utils.checkpoint import CheckpointError, safe_load

TIP = osp.join(ROOT, 'configs/tip_digits_16shot.py')
TIP_F = osp.join(ROOT, 'configs/tip_f_digits_16shot.py')


class _Payload:
    """Unpickling this object runs ``os.system('touch MARKER')``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def _evil_checkpoint(path, marker):
    """A file shaped like a project checkpoint whose meta carries a code payload."""
    torch.save({'meta': {'note': _Payload(str(marker))}, 'state_dict': {'head.alpha': torch.tensor(1.)}},
               str(path))
    return str(path)


def _refused(excinfo, path):
    text = str(excinfo.value)
    assert str(path) in text and 'system' in text, text


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / 'pwned'
    return _evil_checkpoint(tmp_path / 'evil.pth', marker), marker


def test_safe_load_refuses_code_and_names_file_and_global(evil):
    path, marker = evil
    with pytest.raises(CheckpointError) as excinfo:
        safe_load(path)
    _refused(excinfo, path)
    assert 'posix.system' in str(excinfo.value) or 'os.system' in str(excinfo.value)
    assert not marker.exists()


_RANDOM = [np.random.default_rng(seed).bytes(size) for seed in range(40) for size in (7, 256)]
_RANDOM += [b'\x80\x02' + np.random.default_rng(seed).bytes(64) for seed in range(40)]  # pickle-like


@pytest.mark.parametrize('content, needle', [(b'', 'is empty'), (b'\x80\x02garbage', 'not a'),
                                             (b'\x80\x02q\x00', 'not a')] + [(c, 'not a') for c in _RANDOM],
                         ids=lambda v: f'{len(v)}B' if isinstance(v, bytes) else None)
def test_safe_load_names_the_file_of_broken_files(tmp_path, content, needle):
    path = tmp_path / 'broken.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=needle) as excinfo:
        safe_load(str(path))
    assert str(path) in str(excinfo.value)


def test_truncated_checkpoint_is_named(tmp_path):
    path = tmp_path / 'full.pth'
    torch.save({'state_dict': {'w': torch.randn(64, 64)}}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='truncated or not a torch file') as excinfo:
        safe_load(str(path))
    assert str(path) in str(excinfo.value)


def test_test_tool_refuses_malicious_checkpoint(demo_assets, evil, tmp_path):
    path, marker = evil
    with pytest.raises(CheckpointError) as excinfo:
        main_test([TIP, path, '--work-dir', str(tmp_path / 'wd'), '--cfg-options', *demo_options(demo_assets)])
    _refused(excinfo, path)
    assert not marker.exists() and not (tmp_path / 'wd').exists()


def test_resume_refuses_malicious_checkpoint(demo_assets, evil, tmp_path):
    path, marker = evil
    with pytest.raises(CheckpointError) as excinfo:
        main_train([TIP_F, '--work-dir', str(tmp_path / 'wd'), '--resume', path, '--cfg-options',
                    *demo_options(demo_assets)])
    _refused(excinfo, path)
    assert not marker.exists()


def test_load_from_refuses_malicious_checkpoint(demo_assets, evil, tmp_path):
    path, marker = evil
    with pytest.raises(CheckpointError) as excinfo:
        main_train([TIP, '--work-dir', str(tmp_path / 'wd'), '--cfg-options', f'load_from={path}',
                    *demo_options(demo_assets)])
    _refused(excinfo, path)
    assert not marker.exists()


def test_runner_from_cfg_refuses_malicious_checkpoint(demo_assets, evil, tmp_path):
    """Without the project's tools (plain Runner.from_cfg), the config's hook loads with weights_only=True."""
    from mmengine.config import Config, DictAction
    from mmengine.runner import Runner
    path, marker = evil
    cfg = Config.fromfile(TIP)
    options = {}
    for item in demo_options(demo_assets):
        key, value = item.split('=', 1)
        options[key] = DictAction._parse_iterable(value)
    cfg.merge_from_dict(options)
    cfg.work_dir, cfg.load_from = str(tmp_path / 'wd'), path
    runner = Runner.from_cfg(cfg)
    with pytest.raises(CheckpointError) as excinfo:
        runner.test()
    _refused(excinfo, path)
    assert not marker.exists()


def test_convert_tool_refuses_malicious_file(evil, tmp_path):
    path, marker = evil
    out = tmp_path / 'out.pth'
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'convert_meta_adapter.py'), path, str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0
    assert path in proc.stderr and 'system' in proc.stderr, proc.stderr[-2000:]
    assert not marker.exists() and not out.exists()


def test_convert_tool_refuses_mmengine_class_plus_payload(tmp_path):
    """A file naming an mmengine class was once loaded unsafely as a 'project checkpoint'; no longer."""
    from mmengine.logging import HistoryBuffer
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'mixed.pth')
    torch.save({'message_hub': {'log_scalars': {'loss': HistoryBuffer([1.], [1])}}, 'x': _Payload(str(marker)),
                'state_dict': {}}, path)
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'convert_meta_adapter.py'), path,
                           str(tmp_path / 'out.pth')], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0 and path in proc.stderr
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()


_SNAPSHOT = r'''
import json, sys
def snapshot():
    import mmengine.runner.runner as runner_module
    import open_clip
    from mmengine.config import Config
    from mmengine.fileio.backends import LocalBackend
    from mmengine.runner.checkpoint import CheckpointLoader
    return dict(
        schemes={k: f'{v.__module__}.{v.__qualname__}' for k, v in CheckpointLoader._schemes.items()},
        put=LocalBackend.__dict__['put'].__module__,
        pretty_text=Config.__dict__['pretty_text'].fget.__module__,
        git_hash=runner_module.get_git_hash.__module__,
        models=open_clip.list_models())
before = snapshot()
import tip_adapter_mm  # noqa
after_import = snapshot()
print(json.dumps(dict(before=before, after_import=after_import)))
'''


def test_import_changes_nothing_in_mmengine_or_open_clip():
    proc = subprocess.run([sys.executable, '-c', _SNAPSHOT], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['before'] == out['after_import']
    assert 'tiny-clip' not in out['after_import']['models']


@pytest.mark.slow
def test_shims_are_scoped_to_a_run(tip_run):
    """After a run (tip_run ran in this process), mmengine is what it was: the shims were restored."""
    import mmengine.runner.runner as runner_module
    from mmengine.config import Config
    from mmengine.fileio.backends import LocalBackend
    from mmengine.runner.checkpoint import CheckpointLoader
    assert CheckpointLoader._schemes[''].__module__.startswith('mmengine')
    assert LocalBackend.__dict__['put'].__module__.startswith('mmengine')
    assert Config.__dict__['pretty_text'].fget.__module__.startswith('mmengine')
    assert runner_module.get_git_hash.__module__.startswith('mmengine')


@pytest.mark.slow
def test_own_checkpoints_need_no_unsafe_global(tip_run):
    work_dir = tip_run[0]
    ckpt = torch.load(osp.join(str(work_dir), 'epoch_1.pth'), map_location='cpu', weights_only=True)
    assert 'state_dict' in ckpt and 'message_hub' in ckpt
