"""Meta-Adapter end to end on the demo: base/novel protocol, checkpoints, transfer, distributed runs."""
import json
import os
import os.path as osp
import shutil

import pytest
import torch

from conftest import ROOT, demo_options, read_results, run_dist, run_train
from mmengine.config import Config

from tip_adapter_mm.launch import (build_runner, main_test, merge_test_args, merge_train_args, parse_test_args,
                                   parse_train_args)

pytestmark = pytest.mark.slow  # end-to-end runs on the demo

CONFIG = 'configs/meta_adapter_digits_16shot.py'


def _state(work_dir, name='final.pth'):
    return torch.load(osp.join(str(work_dir), name), map_location='cpu', weights_only=False)['state_dict']


def test_beats_zero_shot_on_novel_classes(meta_run, zeroshot_run):
    _, res, _ = meta_run
    _, zs = zeroshot_run
    assert res['method'] == 'Meta-Adapter' and res['base_classes'] == [0, 1, 2, 3, 4, 5, 6]
    for key in ('test_top1', 'test_base_top1', 'test_novel_top1'):
        assert key in res and key in zs
    assert res['test_novel_top1'] > zs['test_novel_top1'], (res['test_novel_top1'], zs['test_novel_top1'])
    assert res['selection_split'] == 'val' and res['source_dataset'] == res['target_dataset'] == 'digits'


def test_queries_are_base_classes_and_only_the_adapter_trains(meta_run, demo_assets):
    work_dir, res, runner = meta_run
    queries = runner.train_loop.dataloader.dataset
    labels = {int(queries.get_data_info(i)['gt_label']) for i in range(len(queries))}
    assert len(queries) == 7 * 24 and labels == set(range(7))  # the demo's 24 held-out queries per base digit
    split = json.loads((work_dir / 'fewshot_split.json').read_text())
    assert len(split['query']) == 7 * 24 and not {tuple(x) for x in split['query']} & {tuple(x) for x in split['train']}
    paths = {queries.get_data_info(i)['img_path'] for i in range(len(queries))}
    assert paths == {osp.join(demo_assets[0], p) for p, _ in split['query']}
    trainable = [n for n, p in runner.model.named_parameters() if p.requires_grad]
    assert sorted(trainable) == ['head.alpha_proj.bias', 'head.alpha_proj.weight', 'head.k_proj.weight',
                                 'head.q_proj.weight']
    first, final = _state(work_dir, 'epoch_1.pth'), _state(work_dir)
    assert torch.equal(first['head.support'], final['head.support'])  # no FIFO overwrite of the supports
    assert torch.equal(final['head.base_mask'], torch.arange(10) < 7)
    assert final['head.support'].shape == (10, 16, 64)


def test_checkpoint_round_trip(meta_run, demo_assets, tmp_path):
    work_dir, res, _ = meta_run
    metrics = main_test([osp.join(ROOT, CONFIG), osp.join(str(work_dir), 'final.pth'), '--work-dir',
                         str(tmp_path), '--cfg-options', *demo_options(demo_assets)])
    assert res['test_novel_top1'] == pytest.approx(metrics['novel/top1'], rel=1e-5)  # 6 significant digits
    assert res['test_top1'] == pytest.approx(metrics['accuracy/top1'], rel=1e-5)


def test_transfer_to_another_dataset_without_gradient_steps(meta_run, demo_assets, tmp_path):
    """Apply the trained adapter to a 4-class dataset: its own supports, no parameter change."""
    work_dir, _, _ = meta_run
    digits, _ = demo_assets
    target = tmp_path / 'digits4'
    for split in ('train', 'val', 'test'):
        for cls in '0123':
            shutil.copytree(osp.join(digits, split, cls), target / split / cls)
    options = demo_options(demo_assets, **{
        'num_classes': 4, 'dataset_name': 'digits4', 'base_classes': None,
        'test_evaluator.base_classes': None, 'val_evaluator.base_classes': None,
        **{f'{k}.dataset.data_root': str(target) for k in ('train_dataloader', 'val_dataloader',
                                                          'test_dataloader')},
        **{f'{k}.dataset.classnames': '[zero,one,two,three]' for k in ('train_dataloader', 'val_dataloader',
                                                                       'test_dataloader')}})
    wd = tmp_path / 'wd'
    args = parse_test_args([osp.join(ROOT, CONFIG), osp.join(str(work_dir), 'final.pth'), '--work-dir', str(wd),
                            '--cfg-options', *options])
    cfg = merge_test_args(Config.fromfile(args.config), args)
    cfg.load_from = args.checkpoint
    runner = build_runner(cfg)
    metrics = runner.test()
    res = read_results(wd, 'results_test.json')
    assert (res['source_dataset'], res['target_dataset']) == ('digits', 'digits4')
    assert 'novel/top1' not in metrics  # the target has no base/novel split
    # the metric is the accuracy of the applied adapter on the target's own test images
    from tip_adapter_mm.engine.hooks.build_cache_hook import find_cache_hook
    from tip_adapter_mm.functional import topk_accuracy
    feats, labels = find_cache_hook(runner).features(runner, 'test')
    with torch.no_grad():
        assert metrics['accuracy/top1'] == pytest.approx(topk_accuracy(runner.model.head.logits(feats), labels),
                                                         abs=1e-4)  # float32 percentages
    head, trained = runner.model.head, _state(work_dir)
    for key in ('q_proj.weight', 'k_proj.weight', 'alpha_proj.weight', 'alpha_proj.bias'):
        assert torch.equal(head.state_dict()[key], trained['head.' + key]), key  # applied as trained
    assert head.support.shape == (4, 16, 64) and bool(head.cache_ready)  # its own 16-shot supports
    # built from the target's train split: its 4 classes are copies of digits 0-3 at the same paths under
    # the data root, sampled with the same seed, so (views are a function of seed, view and image) the
    # supports equal the source's supports of those digits
    assert torch.allclose(head.support, trained['head.support'][:4], atol=1e-6)


def test_two_processes_match_one(meta_run, demo_assets, tmp_path):
    work_dir, res, _ = meta_run
    proc = run_dist('dist_train.sh', [CONFIG, '--work-dir', str(tmp_path), '--cfg-options',
                                      *demo_options(demo_assets, **{'train_dataloader.batch_size': 32})], 2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dist = read_results(tmp_path)
    assert dist['world_size'] == 2 and dist['selected_epoch'] == res['selected_epoch']
    for key in ('test_top1', 'test_base_top1', 'test_novel_top1', 'val_top1'):
        assert abs(dist[key] - res[key]) < 1e-9, key
    one, two = _state(work_dir), _state(tmp_path)
    for key in ('head.q_proj.weight', 'head.k_proj.weight', 'head.alpha_proj.weight', 'head.alpha_proj.bias'):
        assert torch.allclose(one[key], two[key], atol=1e-6), key


def test_rank_classes_tool(demo_assets, tmp_path):
    import json
    import subprocess
    import sys
    out = tmp_path / 'split.json'
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools/rank_classes.py'),
                           osp.join(ROOT, 'configs/tip_digits_16shot.py'), '--out', str(out), '--work-dir',
                           str(tmp_path / 'wd'), '--cfg-options', *demo_options(demo_assets)],
                          cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    split = json.load(open(out))
    assert len(split['base']) == 7 and len(split['novel']) == 3
    assert sorted(split['base'] + split['novel']) == list(range(10))
    acc = split['accuracy']
    assert min(acc[c] for c in split['base']) >= max(acc[c] for c in split['novel'])


@pytest.mark.parametrize('options', [{'train_from': 'image'}, {'model.head.loss_classes': 'all'}])
def test_image_queries_and_all_class_loss(meta_run, demo_assets, tmp_path, options):
    """Both variants train on the base classes only, and train another adapter than the default run (whose
    softmax runs over the base classes, the demo's setting; 'all' is the official one)."""
    res = run_train(CONFIG, tmp_path, demo_assets, **options)
    assert res['trained_in'] == ('SeededImageDataset' if 'train_from' in options else 'FeatureBankDataset')
    default = _state(meta_run[0])
    state = _state(tmp_path)
    assert not torch.equal(state['head.q_proj.weight'], default['head.q_proj.weight'])
    history = res['epoch_top1']  # the best validation epoch is kept, the later one on ties
    assert res['selected_epoch'] == max(i for i, v in enumerate(history) if v == max(history)) + 1


def test_the_demo_schedule_trains_the_adapter(meta_run, demo_assets, tmp_path):
    """The demo's meta-training moves the adapter and changes the validation accuracy from epoch to epoch; the
    untrained row of the demo (learning rate 0) keeps the initial weights exactly, which are those of a freshly
    built model (same seed, same initialisation)."""
    work_dir, res, _ = meta_run
    assert res['trained_param_change'] > 0.05 and len(set(res['epoch_top1'])) > 1, res['epoch_top1']
    untrained = run_train(CONFIG, tmp_path, demo_assets, **{'optim_wrapper.optimizer.lr': 0.0, 'max_epochs': 1})
    assert untrained['trained_param_change'] == 0.0
    args = parse_train_args([osp.join(ROOT, CONFIG), '--work-dir', str(tmp_path / 'fresh'), '--cfg-options',
                             *demo_options(demo_assets)])
    fresh = build_runner(merge_train_args(Config.fromfile(args.config), args)).model.head.state_dict()
    state = _state(tmp_path)
    for key in ('q_proj.weight', 'k_proj.weight', 'alpha_proj.weight', 'alpha_proj.bias'):
        assert torch.equal(state['head.' + key], fresh[key]), key
        assert not torch.equal(_state(work_dir)['head.' + key], fresh[key]), key
