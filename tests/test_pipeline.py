"""End to end on the embedded demo: accuracy, checkpoints, cache construction, distributed runs."""
import json
import os.path as osp

import pytest
import torch

from conftest import ROOT, demo_options, read_results, read_scalars, run_dist
from tip_adapter_mm.functional import cache_keys_from_views, l2_normalize

pytestmark = pytest.mark.slow  # end-to-end runs on the demo


def _checkpoint_state(work_dir):
    return torch.load(osp.join(str(work_dir), 'epoch_1.pth'), map_location='cpu', weights_only=False)['state_dict']


def test_tip_adapter_beats_zero_shot_on_demo(tip_run, zeroshot_run):
    _, tip = tip_run
    _, zs = zeroshot_run
    assert tip['selection_split'] == 'val' and zs['selection_split'] == 'none'
    assert zs['alpha'] == 0.0 and zs.get('cache_size') in (None, 0)
    # the tiny CLIP is imperfect on purpose, and the 16-shot cache fixes part of it
    assert 40. < zs['test_top1'] < 90.
    assert tip['test_top1'] >= zs['test_top1'] + 5., (tip['test_top1'], zs['test_top1'])


def test_results_are_rounded_and_logged_to_the_visualizer(tip_run):
    """results.json: every number to 6 significant digits; the visualizer (scalars.json here, TensorBoard when
    configured) gets the run's test and validation top-1, alpha and beta, also for a training-free run."""
    work_dir, res = tip_run

    def numbers(value):
        if isinstance(value, dict):
            return [x for v in value.values() for x in numbers(v)]
        if isinstance(value, list):
            return [x for v in value for x in numbers(v)]
        return [value] if isinstance(value, float) else []
    assert all(float(f'{x:.6g}') == x for x in numbers(res))
    last = read_scalars(work_dir)[-1]
    for key, name in (('test/top1', 'test_top1'), ('test/top5', 'test_top5'), ('val/top1', 'val_top1'),
                      ('alpha', 'alpha'), ('beta', 'beta')):
        assert last[key] == pytest.approx(res[name], rel=1e-5), key


def test_results_json_fields(tip_run):
    work_dir, res = tip_run
    for key in ('method', 'dataset', 'num_shots', 'seed', 'backbone', 'pretrained', 'alpha', 'beta',
                'selection_split', 'val_top1', 'test_top1', 'test_top5', 'timings'):
        assert key in res, key
    assert (res['method'], res['dataset'], res['num_shots'], res['seed']) == ('Tip-Adapter', 'digits', 16, 1)
    assert res['backbone'] == 'tiny-clip' and res['pretrained'].endswith('tiny_clip.pt')
    # the software that produced it: library versions and this checkout's commit
    import subprocess

    import mmengine
    import mmpretrain
    import torch
    assert (res['versions']['torch'], res['versions']['mmengine'], res['versions']['mmpretrain']) == (
        torch.__version__, mmengine.__version__, mmpretrain.__version__)
    assert res['versions']['open_clip'] and res['versions']['tip_adapter_mm']
    head = subprocess.run(['git', '-C', ROOT, 'rev-parse', 'HEAD'], capture_output=True, text=True)
    assert res['git_commit'] == (head.stdout.strip() if head.returncode == 0 else None)
    timings = res['timings']
    for stage in ('text_classifier', 'cache', 'val_features', 'search', 'test', 'total'):
        assert stage in timings, stage
    # the stages are measured (encoding 1,600 views takes time) and the total covers them
    assert timings['cache'] > 0. and timings['test'] > 0.
    assert timings['total'] >= timings['cache'] + timings['val_features'] + timings['search'] + timings['test']
    # alpha and beta are values of the official grids (search scale [7, 3], 200 x 20 steps)
    from tip_adapter_mm.functional import tip_search_grids
    betas, alphas = tip_search_grids(res['search_scale'], res['search_step'])
    from tip_adapter_mm.engine.hooks.results_hook import rounded  # results.json: 6 significant digits
    assert res['beta'] in rounded(betas) and res['alpha'] in rounded(alphas)
    # the sampled image list is in the work dir, K per class
    split = json.load(open(osp.join(str(work_dir), 'fewshot_split.json')))
    labels = [label for _, label in split['train']]
    assert len(labels) == 160 and all(labels.count(c) == 16 for c in range(10))


def test_checkpoint_then_test_py_gives_same_accuracy(tip_run, demo_assets, tmp_path):
    from tip_adapter_mm.launch import main_test
    work_dir, res = tip_run
    ckpt = osp.join(str(work_dir), 'epoch_1.pth')
    state = _checkpoint_state(work_dir)
    # adapter state only: no frozen CLIP weights, but everything the head needs
    assert not any('.clip.' in k for k in state)
    assert {'head.clip_weights', 'head.cache_keys', 'head.cache_labels', 'head.alpha', 'head.beta'} <= set(state)
    metrics = main_test([osp.join(ROOT, 'configs/tip_digits_16shot.py'), ckpt, '--work-dir', str(tmp_path),
                         '--cfg-options', *demo_options(demo_assets)])
    assert res['test_top1'] == pytest.approx(metrics['accuracy/top1'], rel=1e-5)  # 6 significant digits
    again = read_results(tmp_path, 'results_test.json')
    assert (again['alpha'], again['beta'], again['val_top1']) == (res['alpha'], res['beta'], res['val_top1'])
    assert again['checkpoint'] == ckpt


def test_test_py_options_as_in_mmpretrain(tip_run, demo_assets, tmp_path):
    """--show-dir draws the test images (the loop reads features: the hook draws the files), --out-item metrics
    dumps the metrics, --out dumps the predictions, --tta is refused with the reason."""
    import json
    import pickle

    from tip_adapter_mm.launch import main_test
    work_dir, res = tip_run
    ckpt = osp.join(str(work_dir), 'epoch_1.pth')
    show = tmp_path / 'show'
    args = [osp.join(ROOT, 'configs/tip_digits_16shot.py'), ckpt, '--work-dir', str(tmp_path / 'a')]
    metrics = main_test(args + ['--show-dir', str(show), '--interval', '100', '--out', str(tmp_path / 'm.json'),
                                '--out-item', 'metrics', '--cfg-options', *demo_options(demo_assets)])
    drawn = sorted(p.name for p in show.rglob('*.png'))
    assert len(drawn) == -(-res['test_size'] // 100) and all(name.endswith('_0.png') for name in drawn)
    assert json.loads((tmp_path / 'm.json').read_text())['accuracy/top1'] == metrics['accuracy/top1']
    main_test([*args[:-1], str(tmp_path / 'b'), '--out', str(tmp_path / 'p.pkl'), '--cfg-options',
               *demo_options(demo_assets)])
    with open(tmp_path / 'p.pkl', 'rb') as f:  # the test's own file
        preds = pickle.load(f)
    assert len(preds) == res['test_size']
    top1 = 100. * sum(int(p['pred_label'].item()) == int(p['gt_label'].item()) for p in preds) / len(preds)
    assert top1 == pytest.approx(metrics['accuracy/top1'])
    with pytest.raises(ValueError, match='--tta is not supported'):
        main_test(args + ['--tta', '--cfg-options', *demo_options(demo_assets)])


def test_cache_is_normalised_mean_of_views_in_split_order(tip_run, demo_assets):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS, MODELS

    from tip_adapter_mm.engine import extract_features
    work_dir, _ = tip_run
    state = _checkpoint_state(work_dir)
    keys, labels = state['head.cache_keys'], state['head.cache_labels']
    assert torch.allclose(keys.norm(dim=1), torch.ones(len(keys)), atol=1e-5)
    split = json.load(open(osp.join(str(work_dir), 'fewshot_split.json')))
    assert labels.tolist() == [label for _, label in split['train']]

    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(ROOT, 'configs/tip_digits_16shot.py'))
    cfg.merge_from_dict(dict(o.split('=', 1) for o in demo_options(demo_assets)))
    model = MODELS.build(cfg.model)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert [p for p, _ in dataset.split_items()] == [p for p, _ in split['train']]
    views, view_labels, _ = extract_features(model, dataset, num_views=10, seed=1, batch_size=64)
    assert torch.equal(view_labels, labels)
    assert torch.allclose(cache_keys_from_views(views), keys, atol=1e-5)
    # raw features are averaged before normalising, not the normalised ones
    assert not torch.allclose(l2_normalize(l2_normalize(views).mean(0)), keys, atol=1e-7)
    # the 10 views really differ from each other
    for v in range(1, 10):
        assert (views[v] - views[0]).abs().max() > 1e-3


def test_views_differ_and_do_not_depend_on_workers(demo_assets):
    """mmengine's worker seeding would replay one augmentation per pass; ours seeds per (view, image)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS, MODELS

    from tip_adapter_mm.engine import extract_features
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(ROOT, 'configs/tip_digits_16shot.py'))
    cfg.merge_from_dict(dict(o.split('=', 1) for o in demo_options(demo_assets, num_shots=2)))
    cfg.train_dataloader.dataset.num_shots = 2
    model = MODELS.build(cfg.model)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    a, _, _ = extract_features(model, dataset, num_views=3, seed=5, batch_size=7, num_workers=0)
    b, _, _ = extract_features(model, dataset, num_views=3, seed=5, batch_size=4, num_workers=2)
    assert torch.allclose(a, b, atol=1e-6)
    assert (a[1] - a[0]).abs().amax(dim=1).min() > 1e-4  # every image's views differ
    c, _, _ = extract_features(model, dataset, num_views=3, seed=6, batch_size=7)
    assert not torch.allclose(a, c)


def test_dist_train_two_processes_matches_one(tip_run, demo_assets, tmp_path):
    work_dir, res = tip_run
    proc = run_dist('dist_train.sh', ['configs/tip_digits_16shot.py', '--work-dir', str(tmp_path),
                                      '--cfg-options', *demo_options(demo_assets)], 2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dist = read_results(tmp_path)
    assert dist['world_size'] == 2
    assert (dist['alpha'], dist['beta']) == (res['alpha'], res['beta'])
    assert dist['val_top1'] == res['val_top1']
    assert abs(dist['test_top1'] - res['test_top1']) < 1e-9
    one, two = _checkpoint_state(work_dir), _checkpoint_state(tmp_path)
    assert torch.equal(one['head.cache_labels'], two['head.cache_labels'])
    assert torch.allclose(one['head.cache_keys'], two['head.cache_keys'], atol=1e-6)
    assert torch.allclose(one['head.clip_weights'], two['head.clip_weights'], atol=1e-6)
    # the sampled list is written once, identical
    assert open(osp.join(str(work_dir), 'fewshot_split.json')).read() == \
        open(osp.join(str(tmp_path), 'fewshot_split.json')).read()


def test_dist_test_two_processes(tip_run, demo_assets, tmp_path):
    work_dir, res = tip_run
    proc = run_dist('dist_test.sh', ['configs/tip_digits_16shot.py', osp.join(str(work_dir), 'epoch_1.pth'),
                                     '2', '--work-dir', str(tmp_path), '--cfg-options',
                                     *demo_options(demo_assets)], 2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert abs(read_results(tmp_path, 'results_test.json')['test_top1'] - res['test_top1']) < 1e-9
