"""Packaging: the configs and tools a wheel ships (``tip_adapter_mm/.mim``), the console commands and ``mim train``
from a wheel installed in a fresh virtual environment, the extras' import errors, and shipped-config names."""
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import ROOT, demo_options

COMMANDS = ('tip-adapter-train', 'tip-adapter-test', 'tip-adapter-infer', 'tip-adapter-export',
            'tip-adapter-extract', 'tip-adapter-sweep')


def repo_files(folder, suffixes=('.py', )):
    """The files under ROOT/folder with one of ``suffixes``, relative to it, with '/' separators."""
    top = osp.join(ROOT, folder)
    return sorted(osp.relpath(osp.join(d, f), top).replace(os.sep, '/') for d, _, files in os.walk(top)
                  for f in files if f.endswith(suffixes) and '__pycache__' not in d)


def copy_source_tree(dst):
    """Copy what git would hand out (tracked and untracked-not-ignored files, symbolic links kept as links)."""
    out = subprocess.run(['git', '-C', ROOT, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                         capture_output=True, check=True)
    for rel in filter(None, out.stdout.decode().split('\0')):
        src, target = osp.join(ROOT, rel), osp.join(dst, rel)
        if not osp.lexists(src):  # deleted but not yet committed
            continue
        os.makedirs(osp.dirname(target), exist_ok=True)
        if osp.islink(src):
            os.symlink(os.readlink(src), target)
        else:
            shutil.copy2(src, target)


def test_mim_folder_links_to_the_repository_configs_and_tools():
    """In a checkout, tip_adapter_mm/.mim/{configs,tools} are the repository's folders (an editable install
    sees every config), not stale copies."""
    for name in ('configs', 'tools'):
        path = osp.join(ROOT, 'tip_adapter_mm', '.mim', name)
        assert osp.islink(path), f'{path} should be a symbolic link to ../../{name}'
        assert osp.samefile(path, osp.join(ROOT, name))


def test_sdist_and_wheel_manifest_list_every_config_and_tool(tmp_path):
    """setuptools' own file list (egg_info's SOURCES.txt: the sdist's files and the package data) holds every
    config and tool, under configs/ and tools/ and under tip_adapter_mm/.mim/."""
    subprocess.run([sys.executable, 'setup.py', '-q', 'egg_info', '--egg-base', str(tmp_path)], cwd=ROOT,
                   check=True, capture_output=True, timeout=120)
    with open(tmp_path / 'tip_adapter_mm.egg-info' / 'SOURCES.txt') as f:
        sources = set(f.read().split())
    configs, tools = repo_files('configs'), repo_files('tools', ('.py', '.sh'))
    assert len(configs) > 50 and 'tip_digits_16shot.py' in configs and '_base_/default_runtime.py' in configs
    for folder, names in (('configs', configs), ('tools', tools)):
        missing = [n for n in names if f'{folder}/{n}' not in sources]
        assert not missing, f'the sdist lacks {folder}/{missing}'
        missing = [n for n in names if f'tip_adapter_mm/.mim/{folder}/{n}' not in sources
                   and not re.fullmatch(r'setup_env\.sh|run_\w+\.sh', n)]
        assert not missing, f'the package data lacks tip_adapter_mm/.mim/{folder}/{missing}'
    assert 'tip_adapter_mm/.mim/tools/run_tests.sh' not in sources  # the checkout's own scripts stay out


def test_shipped_config_names(capsys):
    from mmengine.config import Config

    from tip_adapter_mm.cli.configs import resolve_config, shipped_config_dir
    shipped = osp.join(shipped_config_dir(), 'tip_digits_16shot.py')
    assert osp.samefile(resolve_config('tip_adapter_mm::tip_digits_16shot.py'), shipped)
    assert osp.samefile(resolve_config('tip_adapter_mm::tip_digits_16shot'), shipped)
    assert osp.samefile(resolve_config('tip_adapter_mm::_base_/models/tiny_clip.py'),
                        osp.join(ROOT, 'configs', '_base_', 'models', 'tiny_clip.py'))
    # an existing file is itself; a missing path that names a shipped config is that config, said on stderr
    local = osp.join(ROOT, 'configs', 'zeroshot_digits.py')
    assert resolve_config(local) == local
    cwd = os.getcwd()
    try:
        os.chdir(osp.dirname(ROOT))  # configs/... does not exist here
        assert osp.samefile(resolve_config('configs/zeroshot_digits.py'), local)
        assert 'shipped with tip_adapter_mm' in capsys.readouterr().err
        assert resolve_config('configs/no_such_config.py') == 'configs/no_such_config.py'
    finally:
        os.chdir(cwd)
    for bad in ('tip_adapter_mm::no_such_config.py', 'tip_adapter_mm::../setup.py'):
        with pytest.raises(FileNotFoundError, match=r"not among the \d+ configs shipped with tip_adapter_mm"):
            resolve_config(bad)
    # the shipped file is a complete config: its _base_ files resolve from the shipped folder
    cfg = Config.fromfile(resolve_config('tip_adapter_mm::tip_digits_16shot.py'))
    assert cfg.num_shots == 16 and cfg.model.head.type == 'CacheHead'


def test_missing_extras_name_the_extra_to_install(tmp_path, monkeypatch):
    from tip_adapter_mm.demo import prepare_digits
    from tip_adapter_mm.sweep.plots import dataset_figure
    monkeypatch.setitem(sys.modules, 'sklearn.datasets', None)  # "import sklearn.datasets" now fails
    with pytest.raises(ImportError, match=re.escape("pip install 'tip_adapter_mm[demo]'")):
        prepare_digits(str(tmp_path / 'digits'))
    assert not osp.exists(tmp_path / 'digits')
    monkeypatch.setitem(sys.modules, 'matplotlib.backends.backend_agg', None)
    with pytest.raises(ImportError, match=re.escape("pip install 'tip_adapter_mm[plots]'")):
        dataset_figure([], 'average')


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(wheel, venv python, venv bin, environment, cwd outside the checkout): the project's wheel, built from a
    copy of the source tree, installed without dependencies into a fresh venv that sees this environment's
    packages (torch, mmpretrain, ...) through a .pth file."""
    base = tmp_path_factory.mktemp('packaging')
    src, dist, venv, cwd = (base / name for name in ('src', 'dist', 'venv', 'cwd'))
    cwd.mkdir()
    copy_source_tree(src)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps', '--no-build-isolation',
                    '--no-cache-dir', '-w', str(dist), str(src)], check=True, timeout=300)
    wheel, = dist.glob('tip_adapter_mm-*.whl')
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True, timeout=120)
    python = str(venv / 'bin' / 'python')
    # installed before the venv sees this environment: pip then neither skips the wheel as "already installed"
    # nor touches this environment's own tip_adapter_mm
    subprocess.run([sys.executable, '-m', 'pip', '--python', python, 'install', '--quiet', '--no-deps',
                    '--no-index', '--ignore-installed', str(wheel)], check=True, timeout=300)
    site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()
    here = dict.fromkeys(sysconfig.get_paths()[k] for k in ('purelib', 'platlib'))
    with open(osp.join(site, 'project_env.pth'), 'w') as f:
        f.write('\n'.join(here) + '\n')  # (.pth files inside these folders are not run: no editable finder)
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}
    env['PATH'] = str(venv / 'bin') + os.pathsep + env.get('PATH', '')
    return wheel, python, venv / 'bin', env, cwd


def _check(cmd, out, err, returncode):
    assert returncode == 0, f'{cmd} exited {returncode}:\n{out[-3000:]}\n{err[-3000:]}'


def _run(cmd, env, cwd, timeout=300):
    out = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=timeout)
    _check(cmd, out.stdout, out.stderr, out.returncode)
    return out


def _run_all(cmds, env, cwd, timeout=300):
    """Run ``cmds`` side by side (each mostly imports torch and mmpretrain); their stdout, in order."""
    procs = [subprocess.Popen([str(c) for c in cmd], env=env, cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for cmd in cmds]
    outs = []
    try:
        for cmd, proc in zip(cmds, procs):
            out, err = proc.communicate(timeout=timeout)
            _check(cmd, out, err, proc.returncode)
            outs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outs


@pytest.mark.slow
def test_wheel_ships_configs_tools_and_commands(installed):
    wheel = installed[0]
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points, = [n for n in names if n.endswith('.dist-info/entry_points.txt')]
        scripts = z.read(entry_points).decode()
    missing = [n for n in repo_files('configs') if f'tip_adapter_mm/.mim/configs/{n}' not in names]
    assert not missing, f'the wheel lacks configs {missing}'
    for tool in ('train.py', 'test.py', 'dist_train.sh', 'demo.py'):
        assert f'tip_adapter_mm/.mim/tools/{tool}' in names
    assert not any(n.startswith('configs/') or n.startswith('tools/') or n.startswith('tests/') for n in names)
    for command in COMMANDS:
        assert re.search(rf'^{command} = tip_adapter_mm\.', scripts, re.M), f'{command} not in {scripts}'


@pytest.mark.slow
def test_installed_wheel_commands_and_mim(installed, demo_assets, tmp_path):
    """From outside the checkout: the wheel's copy is imported, every command answers --help, and a shipped
    config trains through tip-adapter-train and through `mim train tip_adapter_mm` with the same result."""
    _, python, bin_dir, env, cwd = installed
    probe = 'import sysconfig, tip_adapter_mm, mim; print(tip_adapter_mm.__file__, sysconfig.get_paths()["purelib"])'
    outs = _run_all([[python, '-c', probe]] + [[bin_dir / command, '--help'] for command in COMMANDS], env, cwd)
    package, site = outs[0].split()
    assert package == osp.join(site, 'tip_adapter_mm', '__init__.py') and site.startswith(str(bin_dir.parent))
    for command, out in zip(COMMANDS, outs[1:]):
        assert out.startswith('usage:'), f'{command} --help: {out[:300]}'

    options = demo_options(demo_assets)
    # no --work-dir: the default, work_dirs/<config name>, is named after the shipped file
    _run([bin_dir / 'tip-adapter-train', 'tip_adapter_mm::tip_digits_16shot.py', '--cfg-options', *options],
         env, cwd)
    # mim finds the shipped config by its name and runs the shipped tools/train.py
    mim = _run([python, '-m', 'mim', 'train', 'tip_adapter_mm', 'tip_digits_16shot.py', '--work-dir',
                tmp_path / 'mim', '--cfg-options', *options], env, cwd)
    assert f'{site}/tip_adapter_mm/.mim/tools/train.py ' in mim.stdout, mim.stdout
    assert re.search(r'\S*/tip_adapter_mm/\.mim/configs/tip_digits_16shot\.py', mim.stdout), mim.stdout
    results = {}
    for name, work_dir in (('cli', cwd / 'work_dirs' / 'tip_digits_16shot'), ('mim', tmp_path / 'mim')):
        with open(work_dir / 'results.json') as f:
            results[name] = json.load(f)
    assert results['cli']['test_top1'] > 50  # 10 digits, 16 shots: far above chance
    assert results['mim']['test_top1'] == results['cli']['test_top1']
    assert results['mim']['alpha'] == results['cli']['alpha'] and results['mim']['beta'] == results['cli']['beta']
