"""tools/demo.py prints its stages and the table; each run's full log goes to a file."""
import importlib.util
import os.path as osp

import pytest

from conftest import ROOT, STORE_ROOT

pytestmark = pytest.mark.slow


def _demo_module():
    spec = importlib.util.spec_from_file_location('demo_tool', osp.join(ROOT, 'tools', 'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_demo_run_prints_one_line_and_logs_to_a_file(demo_assets, tmp_path, capfd):
    demo = _demo_module()
    data_dir = osp.dirname(osp.dirname(demo_assets[1]))  # the folder holding digits/ and tiny_clip/
    work_dir = str(tmp_path / 'zeroshot_seed1')
    res = demo.run_config('configs/zeroshot_digits.py', work_dir, data_dir, 16, 1,
                          [f'feature_store.root={STORE_ROOT}'], stage='[1/1] Zero-shot CLIP: ')
    out, err = capfd.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('[1/1] Zero-shot CLIP: zeroshot_seed1 ... test top-1 '), out
    assert f"{res['test_top1']:.2f}" in lines[0] and not err.strip()
    log = open(osp.join(work_dir, 'console.log')).read()
    assert 'Config:' in log and 'results written to' in log  # the config dump and the run's log are in the file
