"""Tip-Adapter-F: what trains, selection, resume, distributed runs, bad input."""
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from conftest import TIPF_EPOCHS, ROOT, demo_options, read_results, read_scalars, run_dist, run_train
from tip_adapter_mm.launch import build_runner, main_test, main_train, merge_train_args, parse_train_args

pytestmark = pytest.mark.slow  # end-to-end runs on the demo

CONFIG = 'configs/tip_f_digits_16shot.py'
EPOCHS = TIPF_EPOCHS  # the shared tipf_run fixture's


def _state(work_dir, name):
    return torch.load(osp.join(str(work_dir), name), map_location='cpu', weights_only=False)


def test_only_the_keys_train(tipf_run, tip_run, demo_assets):
    work_dir, res = tipf_run
    tip_dir, _ = tip_run
    first, last = _state(work_dir, 'epoch_1.pth'), _state(work_dir, f'epoch_{EPOCHS}.pth')
    cache = _state(tip_dir, 'epoch_1.pth')['state_dict']  # the training-free cache, same seed
    # AdamW holds state for one tensor only: the cache keys (frozen CLIP parameters get no gradient)
    states = list(last['optimizer']['state'].values())
    assert len(states) == 1 and states[0]['exp_avg'].shape == cache['head.cache_keys'].shape
    for state in (first['state_dict'], last['state_dict']):
        assert torch.equal(state['head.clip_weights'], cache['head.clip_weights'])
        assert torch.equal(state['head.cache_labels'], cache['head.cache_labels'])
        assert float(state['head.alpha']) == 10. and float(state['head.beta']) == 10.  # trains with init values
        assert not any('.clip.' in k for k in state)
    assert not torch.allclose(first['state_dict']['head.cache_keys'], cache['head.cache_keys'], atol=1e-4)
    assert not torch.allclose(last['state_dict']['head.cache_keys'], first['state_dict']['head.cache_keys'])
    # the keys start from the cache: after a handful of small AdamW steps they are still close to it
    assert (last['state_dict']['head.cache_keys'] - cache['head.cache_keys']).abs().max() < 0.1
    assert res['trained_in'] == 'FeatureBankDataset' and res['max_epochs'] == EPOCHS


def test_frozen_clip_is_untouched(demo_assets, tmp_path):
    runner = main_train([osp.join(ROOT, CONFIG), '--work-dir', str(tmp_path), '--cfg-options',
                         *demo_options(demo_assets, max_epochs=1)])
    reference = torch.load(demo_assets[1], map_location='cpu', weights_only=False)['state_dict']
    clip = runner.model.backbone.clip.state_dict()
    assert all(torch.equal(clip[k], reference[k]) for k in reference)


def test_selection_on_validation_and_results(tipf_run):
    work_dir, res = tipf_run
    assert res['method'] == 'Tip-Adapter-F' and res['selection_split'] == 'val' and res['seed'] == 1
    assert res['epoch_selection'] == 'best_val' and res['epoch_top1_split'] == 'val'
    history = res['epoch_top1']
    assert len(history) == EPOCHS
    best = max(history)
    assert res['selected_epoch'] == max(i + 1 for i, v in enumerate(history) if v == best)  # ties: later
    final = _state(work_dir, 'final.pth')['state_dict']
    selected = _state(work_dir, f"epoch_{res['selected_epoch']}.pth")['state_dict']
    assert torch.equal(final['head.cache_keys'], selected['head.cache_keys'])
    kept = _state(work_dir, res['selected_checkpoint'])  # the selected epoch's model, without optimizer
    assert res['selected_checkpoint'] == f"best_val_top1_epoch_{res['selected_epoch']}.pth"
    assert torch.equal(kept['state_dict']['head.cache_keys'], selected['head.cache_keys'])
    assert 'optimizer' not in kept
    from tip_adapter_mm.engine.hooks.results_hook import rounded  # results.json: 6 significant digits
    assert rounded([float(final['head.alpha']), float(final['head.beta'])]) == [res['alpha'], res['beta']]
    assert res['timings']['train'] > 0
    # every epoch's validation top-1 and the selected epoch went to the visualizer
    scalars = read_scalars(work_dir)
    per_epoch = {s['step']: s['val/top1'] for s in scalars if 'val/top1' in s and 'selected_epoch' not in s
                 and 'test/top1' not in s}
    assert per_epoch == {i + 1: pytest.approx(v, rel=1e-5) for i, v in enumerate(history)}
    assert scalars[-1]['selected_epoch'] == res['selected_epoch']


def test_final_checkpoint_evaluates_the_same(tipf_run, demo_assets, tmp_path):
    work_dir, res = tipf_run
    metrics = main_test([osp.join(ROOT, CONFIG), osp.join(str(work_dir), 'final.pth'), '--work-dir',
                         str(tmp_path), '--cfg-options', *demo_options(demo_assets)])
    assert res['test_top1'] == pytest.approx(metrics['accuracy/top1'], rel=1e-5)  # 6 significant digits
    again = read_results(tmp_path, 'results_test.json')
    for key in ('alpha', 'beta', 'val_top1', 'selected_epoch', 'selection_split', 'trained_in'):
        assert again[key] == res[key], key


@pytest.mark.parametrize('rule,label', [('legacy_test', 'test (legacy)'), ('last', 'val')])
def test_other_selection_rules_are_labelled(demo_assets, tmp_path, rule, label):
    res = run_train(CONFIG, tmp_path, demo_assets, max_epochs=3, **{'train_cfg.selection': rule})
    assert res['selection_split'] == label and res['epoch_selection'] == rule
    pths = sorted(f for f in os.listdir(tmp_path) if f.endswith('.pth'))
    if rule == 'last':
        assert res['selected_epoch'] == 3 and 'official_reported_top1' not in res
        assert pths == ['epoch_3.pth', 'final.pth']  # the last epoch is the selected one: no copy
    else:
        assert pths == sorted(['epoch_3.pth', 'final.pth', f"best_test_top1_epoch_{res['selected_epoch']}.pth"])
        assert res['epoch_top1_split'] == 'test'
        # the official rule: the best test epoch, the earlier one on ties (a later epoch replaces only when
        # strictly better), and its test accuracy is what was kept
        history = res['epoch_top1']
        assert res['selected_epoch'] == history.index(max(history)) + 1
        assert res['selected_epoch_top1'] == max(history)
        # and the figure the official code prints (and exp.log publishes): the better of that and the final test
        assert res['official_reported_top1'] == max(max(history), res['test_top1'])


class _KillAfterEpoch(Hook):
    """Simulates a run killed right after epoch ``epoch`` was saved."""

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def test_resume_after_kill_gives_the_uninterrupted_result(tipf_run, demo_assets, tmp_path):
    work_dir, res = tipf_run
    args = parse_train_args([osp.join(ROOT, CONFIG), '--work-dir', str(tmp_path), '--cfg-options',
                             *demo_options(demo_assets, max_epochs=EPOCHS)])
    runner = build_runner(merge_train_args(Config.fromfile(args.config), args))
    runner.register_hook(_KillAfterEpoch(2), priority='LOWEST')  # after the checkpoint hook
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    assert osp.exists(tmp_path / 'epoch_2.pth') and not osp.exists(tmp_path / 'epoch_3.pth')
    assert not osp.exists(tmp_path / 'results.json')
    resumed = run_train(CONFIG, tmp_path, demo_assets, '--resume', max_epochs=EPOCHS)
    for key in ('test_top1', 'val_top1', 'alpha', 'beta', 'selected_epoch', 'epoch_top1'):
        assert resumed[key] == res[key], key
    assert torch.equal(_state(tmp_path, 'final.pth')['state_dict']['head.cache_keys'],
                       _state(work_dir, 'final.pth')['state_dict']['head.cache_keys'])


class _KillAtIter(Hook):
    """Simulates Ctrl-C in the middle of epoch ``epoch`` (after its ``iters``-th step)."""

    def __init__(self, epoch, iters):
        self.epoch, self.iters = epoch, iters

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.epoch + 1 == self.epoch and batch_idx + 1 == self.iters:
            raise KeyboardInterrupt


SHORT_RUN = dict(max_epochs=3, **{'train_dataloader.batch_size': 64})  # 3 steps an epoch
PATHS = {'image': dict(SHORT_RUN, train_from='image'), 'feature_bank': dict(SHORT_RUN, train_from='feature_bank')}
TRAINED_IN = {'image': 'SeededImageDataset', 'feature_bank': 'FeatureBankDataset'}


@pytest.fixture(scope='module')
def short_runs(demo_assets, tmp_path_factory):
    """The uninterrupted 3-epoch runs of both data paths, made when first asked for."""
    made = {}

    def get(path):
        if path not in made:
            work_dir = tmp_path_factory.mktemp(f'tipf_{path}')
            made[path] = work_dir, run_train(CONFIG, work_dir, demo_assets, **PATHS[path])
        return made[path]
    return get


@pytest.mark.parametrize('path, kill', [('image', _KillAfterEpoch(2)), ('image', _KillAtIter(2, 2)),
                                        ('feature_bank', _KillAtIter(2, 2))],
                         ids=['image-between_epochs', 'image-mid_epoch', 'feature_bank-mid_epoch'])
def test_resume_is_exact_on_both_data_paths(short_runs, demo_assets, tmp_path, path, kill):
    """Augmentations are seeded per (seed, epoch, item), views of the bank likewise: a run interrupted between
    or within epochs and resumed draws the same data as the uninterrupted one."""
    work_dir, res = short_runs(path)
    args = parse_train_args([osp.join(ROOT, CONFIG), '--work-dir', str(tmp_path), '--cfg-options',
                             *demo_options(demo_assets, **PATHS[path])])
    runner = build_runner(merge_train_args(Config.fromfile(args.config), args))
    runner.register_hook(kill, priority='LOWEST')
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    assert not osp.exists(tmp_path / 'results.json')
    resumed = run_train(CONFIG, tmp_path, demo_assets, '--resume', **PATHS[path])
    assert resumed['trained_in'] == TRAINED_IN[path]
    for key in ('test_top1', 'val_top1', 'alpha', 'beta', 'selected_epoch', 'epoch_top1'):
        assert resumed[key] == res[key], key
    assert torch.equal(_state(tmp_path, 'final.pth')['state_dict']['head.cache_keys'],
                       _state(work_dir, 'final.pth')['state_dict']['head.cache_keys'])


def test_default_checkpoints_are_the_last_the_selected_and_final(short_runs):
    """By default a run keeps what resume needs and nothing twice: the last epoch (model + optimizer), the
    selected epoch's model, final.pth; the selection state in a checkpoint is a few numbers."""
    work_dir, res = short_runs('feature_bank')
    selected = f"best_val_top1_epoch_{res['selected_epoch']}.pth"
    assert sorted(f for f in os.listdir(work_dir) if f.endswith('.pth')) == sorted(
        ['epoch_3.pth', 'final.pth', selected])
    last = _state(work_dir, 'epoch_3.pth')
    assert set(last['meta']['epoch_selection']) == {'rule', 'history', 'best_epoch', 'best_top1'}
    assert last['meta']['epoch_selection']['best_epoch'] == res['selected_epoch']
    assert 'optimizer' in last and 'optimizer' not in _state(work_dir, selected)
    final = _state(work_dir, 'final.pth')['state_dict']['head.cache_keys']
    assert torch.equal(_state(work_dir, selected)['state_dict']['head.cache_keys'], final)


def test_resume_without_the_selected_checkpoint_says_which_file(short_runs, demo_assets, tmp_path):
    import shutil
    work_dir, res = short_runs('feature_bank')
    shutil.copy(work_dir / 'epoch_3.pth', tmp_path / 'epoch_3.pth')  # the last epoch, without the selected one
    with pytest.raises(FileNotFoundError, match=r"selected epoch's checkpoint .*best_val_top1_epoch_\d\.pth"):
        run_train(CONFIG, tmp_path, demo_assets, '--resume', str(tmp_path / 'epoch_3.pth'),
                  **PATHS['feature_bank'])


def test_ctrl_c_ends_the_run_with_a_resume_hint(demo_assets, tmp_path):
    """Ctrl-C (SIGINT) in tools/train.py: a short message saying how to resume, exit code 130, no traceback."""
    import signal
    import subprocess
    import sys
    import time
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.Popen([sys.executable, osp.join(ROOT, 'tools', 'train.py'), osp.join(ROOT, CONFIG),
                             '--work-dir', str(tmp_path), '--cfg-options',
                             *demo_options(demo_assets, max_epochs=200)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not osp.exists(tmp_path / 'epoch_1.pth') and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    assert 'Traceback' not in out, out[-3000:]
    assert '--resume' in out and str(tmp_path) in out


def test_two_processes_match_one(tipf_run, demo_assets, tmp_path):
    work_dir, res = tipf_run
    # the same global batch: 160 images, one step per epoch; 2 x 128 per process
    proc = run_dist('dist_train.sh', [CONFIG, '--work-dir', str(tmp_path), '--cfg-options',
                                      *demo_options(demo_assets, max_epochs=EPOCHS,
                                                    **{'train_dataloader.batch_size': 128})], 2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dist = read_results(tmp_path)
    assert dist['world_size'] == 2 and dist['selected_epoch'] == res['selected_epoch']
    assert (dist['alpha'], dist['beta']) == (res['alpha'], res['beta'])
    assert abs(dist['test_top1'] - res['test_top1']) < 1e-9
    assert torch.allclose(_state(tmp_path, 'final.pth')['state_dict']['head.cache_keys'],
                          _state(work_dir, 'final.pth')['state_dict']['head.cache_keys'], atol=1e-5)


def test_zero_epochs_is_a_clear_error(demo_assets, tmp_path):
    work_dir = str(tmp_path / 'wd')
    with pytest.raises(ValueError, match=r'max_epochs must be >= 1 to fine-tune, got 0'):
        main_train([osp.join(ROOT, CONFIG), '--work-dir', work_dir, '--cfg-options',
                    *demo_options(demo_assets, max_epochs=0)])
    assert not osp.exists(work_dir)


def test_batch_larger_than_cache_with_drop_last(demo_assets, tmp_path):
    work_dir = str(tmp_path / 'wd')
    with pytest.raises(ValueError, match=r'batch_size=512 is larger than the 160 training images and '
                                         r'drop_last=True'):
        main_train([osp.join(ROOT, CONFIG), '--work-dir', work_dir, '--cfg-options',
                    *demo_options(demo_assets, **{'train_dataloader.batch_size': 512,
                                                  'train_dataloader.drop_last': True})])
    assert not osp.exists(work_dir)


def test_checkpoint_from_another_backbone(demo_assets, tmp_path):
    ckpt = tmp_path / 'vit_b16_tipf.pth'
    torch.save({'meta': {}, 'state_dict': {'head.clip_weights': torch.zeros(10, 512),
                                           'head.cache_keys': torch.zeros(160, 512)}}, ckpt)
    work_dir = str(tmp_path / 'wd')
    with pytest.raises(ValueError, match=r"'.*vit_b16_tipf.pth' holds head.clip_weights of shape \(10, 512\) "
                                         r'but the config builds \(10, 64\)'):
        main_train([osp.join(ROOT, CONFIG), '--work-dir', work_dir, '--resume', str(ckpt), '--cfg-options',
                    *demo_options(demo_assets)])
    assert not osp.exists(work_dir)


def test_tensorboard_gets_the_epoch_and_run_scalars(demo_assets, tmp_path):
    """With TensorBoard configured (mmengine's TensorboardVisBackend), each epoch's selection top-1 and the
    run's test top-1, alpha and beta are in its event file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    res = run_train(CONFIG, tmp_path, demo_assets, max_epochs=2,
                    **{'visualizer.vis_backends.0.type': 'TensorboardVisBackend'})  # the README's override
    [events] = [str(p.parent) for p in tmp_path.rglob('events.out.tfevents.*')]
    acc = EventAccumulator(events)
    acc.Reload()
    tags = set(acc.Tags()['scalars'])
    assert {'val/top1', 'test/top1', 'alpha', 'beta', 'selected_epoch'} <= tags, tags
    per_epoch = [e.value for e in acc.Scalars('val/top1')][:-1]  # the last: the run's val top-1 after the search
    assert per_epoch == [pytest.approx(v, rel=1e-5) for v in res['epoch_top1']]
    assert acc.Scalars('test/top1')[-1].value == pytest.approx(res['test_top1'], rel=1e-5)


def test_auto_scale_lr_as_in_mmpretrain(demo_assets, tmp_path):
    """--auto-scale-lr scales the configured lr by (world size x batch) / auto_scale_lr.base_batch_size (the
    official batch, 256 for Tip-Adapter-F)."""
    runner = main_train([osp.join(ROOT, CONFIG), '--work-dir', str(tmp_path), '--auto-scale-lr', '--cfg-options',
                         *demo_options(demo_assets, max_epochs=1, **{'train_dataloader.batch_size': 128})])
    assert runner.cfg.auto_scale_lr == dict(base_batch_size=256, enable=True)
    assert [g['initial_lr'] for g in runner.optim_wrapper.optimizer.param_groups] == [pytest.approx(1e-3 * 128 / 256)]


def test_amp_without_gpu_says_why(demo_assets, tmp_path):
    if torch.cuda.is_available():
        pytest.skip('a GPU is present: --amp is supported there')
    with pytest.raises(RuntimeError, match='--amp needs a GPU'):
        main_train([osp.join(ROOT, CONFIG), '--work-dir', str(tmp_path / 'wd'), '--amp', '--cfg-options',
                    *demo_options(demo_assets)])
