"""The feature store inside runs: every method, shot count, entry point and process count reads what an
earlier run encoded, and gets the result it would get by encoding the images.

Image forward passes are counted by wrapping the backbone's forward (images are [B, 3, H, W]; stored
features pass through as [B, D] and are not counted)."""
import json
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, TIPF_EPOCHS, demo_options, read_results, run_dist
from tip_adapter_mm.engine.features import check_store_cfg, store_args
from tip_adapter_mm.features import FeatureStore
from tip_adapter_mm.launch import main_test, main_train, merge_train_args, parse_train_args

TIP = 'configs/tip_digits_16shot.py'
VIEWS = 10  # BuildCacheHook.augment_epochs of the configs


@contextmanager
def counting_forwards():
    """Counts the images the CLIP image tower encodes in this process inside the block."""
    from tip_adapter_mm.models.clip_backbone import CLIPBackbone
    count = {'images': 0}
    original = CLIPBackbone.forward

    def counting(self, x):
        if x.dim() == 4:
            count['images'] += x.shape[0]
        return original(self, x)

    CLIPBackbone.forward = counting
    try:
        yield count
    finally:
        CLIPBackbone.forward = original


@pytest.fixture
def forwards():
    with counting_forwards() as count:
        yield count


def train(config, work_dir, assets, store, *extra, **overrides):
    main_train([osp.join(ROOT, config), '--work-dir', str(work_dir), *extra, '--cfg-options',
                *demo_options(assets, **{'feature_store.root': str(store), **overrides})])
    return read_results(work_dir)


def split_sizes(assets):
    digits, _ = assets
    return {s: sum(len(files) for _, _, files in os.walk(osp.join(digits, s))) for s in ('val', 'test')}


def train_images(work_dir):
    with open(osp.join(str(work_dir), 'fewshot_split.json')) as f:
        return {path for path, _ in json.load(f)['train']}


def store_features(root):
    """{namespace key: {(item key, view): feature}} of every entry of a store."""
    store = FeatureStore(root)
    out = {}
    for info in store.namespaces():
        ns_path = osp.join(store.root, info['key'], 'shards')
        rows = {}
        for name in sorted(os.listdir(ns_path)):
            if name.endswith('.json'):
                with open(osp.join(ns_path, name)) as f:
                    manifest = json.load(f)
                tensor = load_file(osp.join(ns_path, manifest['file']))['features']
                for row, (key, view) in enumerate(manifest['entries']):
                    assert (key, view) not in rows, 'an entry is stored twice'
                    rows[(key, view)] = tensor[row]
        out[info['key']] = rows
    return out


@pytest.fixture(scope='module')
def first_tip(demo_assets, tmp_path_factory):
    """A Tip-Adapter run into a fresh store: (store, work dir, results, images it encoded)."""
    store = tmp_path_factory.mktemp('store')
    work_dir = tmp_path_factory.mktemp('tip_first')
    with counting_forwards() as count:
        res = train(TIP, work_dir, demo_assets, store)
    return store, work_dir, res, count['images']


@pytest.mark.slow
def test_first_run_encodes_each_image_view_once(first_tip, demo_assets):
    store, _, res, encoded = first_tip
    sizes = split_sizes(demo_assets)
    cache = 10 * 16 * VIEWS
    assert encoded == cache + sizes['val'] + sizes['test']
    assert res['image_forwards'] == {'cache': cache, 'val': sizes['val'], 'test': sizes['test']}
    # the val and test splits share a pipeline: one namespace; the cache views another
    assert sorted(ns['entries'] for ns in FeatureStore(str(store)).namespaces()) == sorted(
        [cache, sizes['val'] + sizes['test']])


@pytest.mark.slow
def test_second_identical_run_encodes_nothing_and_gives_the_same_result(first_tip, demo_assets, tmp_path,
                                                                        forwards):
    store, _, res, _ = first_tip
    again = train(TIP, tmp_path, demo_assets, store)
    assert forwards['images'] == 0
    assert again['image_forwards'] == {'cache': 0, 'val': 0, 'test': 0}
    for key in ('alpha', 'beta', 'val_top1', 'test_top1'):
        assert again[key] == res[key], key


@pytest.mark.slow
def test_results_are_identical_without_the_store(first_tip, demo_assets, tmp_path, forwards):
    store, work_dir, res, encoded = first_tip
    off = train(TIP, tmp_path, demo_assets, store, '--no-feature-store')
    assert forwards['images'] == encoded  # everything encoded again
    for key in ('alpha', 'beta', 'val_top1', 'test_top1'):
        assert off[key] == res[key], key
    a = torch.load(osp.join(str(work_dir), 'epoch_1.pth'), weights_only=True)['state_dict']
    b = torch.load(osp.join(str(tmp_path), 'epoch_1.pth'), weights_only=True)['state_dict']
    assert torch.allclose(a['head.cache_keys'], b['head.cache_keys'], atol=1e-6)


@pytest.mark.slow
def test_every_method_and_test_py_read_the_stored_features(first_tip, demo_assets, tmp_path, forwards):
    store, work_dir, res, _ = first_tip
    tipf = train('configs/tip_f_digits_16shot.py', tmp_path / 'tipf', demo_assets, store, max_epochs=TIPF_EPOCHS)
    # Meta-Adapter with the supports as queries (the official recipe): nothing to encode either
    meta = train('configs/meta_adapter_digits_16shot.py', tmp_path / 'meta', demo_assets, store, query_shots=None)
    zero = train('configs/zeroshot_digits.py', tmp_path / 'zero', demo_assets, store)
    assert forwards['images'] == 0
    for record in (tipf, meta, zero):
        assert sum(record['image_forwards'].values()) == 0
    metrics = main_test([osp.join(ROOT, TIP), osp.join(str(work_dir), 'epoch_1.pth'), '--work-dir',
                         str(tmp_path / 'test'), '--cfg-options',
                         *demo_options(demo_assets, **{'feature_store.root': str(store)})])
    assert forwards['images'] == 0
    assert res['test_top1'] == pytest.approx(metrics['accuracy/top1'], rel=1e-5)  # 6 significant digits
    # the demo's held-out queries are other images: their views are encoded once, then read (in a copy of the
    # store: the module's other tests compare with the original)
    copy = tmp_path / 'store'
    shutil.copytree(str(store), str(copy))
    held_out = train('configs/meta_adapter_digits_16shot.py', tmp_path / 'meta_q', demo_assets, copy)
    assert forwards['images'] == VIEWS * 7 * 24 and held_out['image_forwards']['queries'] == VIEWS * 7 * 24
    again = train('configs/meta_adapter_digits_16shot.py', tmp_path / 'meta_q2', demo_assets, copy)
    assert forwards['images'] == VIEWS * 7 * 24 and sum(again['image_forwards'].values()) == 0
    assert again['test_top1'] == held_out['test_top1']


@pytest.mark.slow
def test_fewer_shots_reuse_the_views_of_the_images_already_encoded(first_tip, demo_assets, tmp_path, forwards):
    store, work_dir, _, _ = first_tip
    shutil.copytree(str(store), str(tmp_path / 'store'))  # the module's other tests compare with the original
    eight = train(TIP, tmp_path, demo_assets, tmp_path / 'store', num_shots=8)
    new_images = train_images(tmp_path) - train_images(work_dir)
    assert len(train_images(tmp_path)) == 80 and len(new_images) < 80
    assert forwards['images'] == VIEWS * len(new_images)
    assert eight['image_forwards'] == {'cache': VIEWS * len(new_images), 'val': 0, 'test': 0}


@pytest.mark.slow
def test_two_processes_write_one_store_equal_to_one_process(first_tip, demo_assets, tmp_path):
    store, _, _, _ = first_tip
    options = demo_options(demo_assets, **{'feature_store.root': str(tmp_path / 'store')})
    proc = run_dist('dist_extract_features.sh', [TIP, '2', '--cfg-options', *options], 2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    single, dist = store_features(str(store)), store_features(str(tmp_path / 'store'))
    assert set(dist) == set(single)
    for key in single:
        assert set(dist[key]) == set(single[key])
        for entry, feature in single[key].items():
            assert torch.allclose(dist[key][entry], feature, atol=1e-6), entry


def _extract(store, assets, *extra):
    return subprocess.Popen([sys.executable, osp.join(ROOT, 'tools/extract_features.py'), osp.join(ROOT, TIP),
                             '--splits', 'train', '--batch-size', '16', *extra, '--cfg-options',
                             *demo_options(assets, **{'feature_store.root': str(store)})],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS='1'))


def _shards(store):
    """The complete shards of a store: those with an index entry (a shard written just before a kill, whose
    entry was not, is garbage and encoded again)."""
    return [name for root, _, names in os.walk(str(store)) for name in names
            if osp.basename(root) == 'shards' and name.endswith('.json') and not name.startswith('.')]


@pytest.fixture(scope='module')
def reference_store(demo_assets, tmp_path_factory):
    """The cache views, extracted by one uninterrupted process in batches of 16."""
    store = tmp_path_factory.mktemp('reference')
    proc = _extract(store, demo_assets)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return store_features(str(store))


@pytest.mark.slow
def test_killed_extraction_resumes_with_byte_identical_features(reference_store, demo_assets, tmp_path):
    store = tmp_path / 'store'
    proc = _extract(store, demo_assets)
    deadline = time.monotonic() + 300
    while len(_shards(store)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = len(_shards(store))
    assert 3 <= kept < 100  # killed part-way (100 batches of 16 make the 1600 views)
    proc = _extract(store, demo_assets)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert f'{16 * kept} of 1600 image view(s) read from the feature store' in out
    resumed = store_features(str(store))
    assert set(resumed) == set(reference_store)
    for key, rows in reference_store.items():
        assert set(resumed[key]) == set(rows)
        assert all(torch.equal(resumed[key][e], f) for e, f in rows.items())


@pytest.mark.slow
def test_concurrent_extractions_share_the_work_and_match_one_process(reference_store, demo_assets, tmp_path):
    store = tmp_path / 'store'
    procs = [_extract(store, demo_assets) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-2000:] + outs[1][-2000:]
    both = store_features(str(store))  # asserts that no entry is stored twice
    assert set(both) == set(reference_store)
    for key, rows in reference_store.items():
        assert set(both[key]) == set(rows)
        assert all(torch.equal(both[key][e], f) for e, f in rows.items())


@pytest.mark.slow
def test_corrupt_shard_is_encoded_again_with_a_warning(first_tip, demo_assets, tmp_path, forwards):
    store, work_dir, res, _ = first_tip
    copy = tmp_path / 'store'
    shutil.copytree(str(store), str(copy))
    shard = sorted(osp.join(r, n) for r, _, names in os.walk(str(copy)) for n in names
                   if n.endswith('.safetensors'))[0]
    with open(shard, 'r+b') as f:
        f.seek(-8, os.SEEK_END)
        f.write(b'\x00' * 8)
    from tip_adapter_mm.features import FeatureStoreWarning
    with pytest.warns(FeatureStoreWarning, match='corrupt'):
        again = train(TIP, tmp_path / 'wd', demo_assets, copy)
    assert 0 < forwards['images'] <= 128  # one batch of the loaders (64 train views or 128 val/test images)
    for key in ('alpha', 'beta', 'val_top1', 'test_top1'):
        assert again[key] == res[key], key


# -- fast checks of the configuration -----------------------------------------------------------------------

@pytest.mark.parametrize('value, match', [
    ('data/features', 'must be None'), (dict(root='x', modes='stat'), "unknown key\\(s\\) \\['modes'\\]"),
    (dict(mode='hash'), "feature_store.mode must be one of \\('stat', 'content'\\)"),
    (dict(enabled='no'), 'feature_store.enabled must be True or False'), (dict(root=''), 'feature_store.root')])
def test_bad_store_settings_are_named(value, match):
    with pytest.raises(ValueError, match=match):
        check_store_cfg(value)


def test_store_key_covers_pipeline_and_preprocessor(demo_assets, tmp_path):
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(osp.join(ROOT, TIP))
    cfg.merge_from_dict(dict(o.split('=', 1) for o in demo_options(demo_assets)))
    cfg.feature_store.root = str(tmp_path)
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    store = FeatureStore(str(tmp_path))

    def key(dataset_cfg, preprocessor=None):
        args = store_args(cfg if preprocessor is None else Config(dict(cfg.to_dict(), model=dict(
            cfg.model.to_dict(), data_preprocessor=preprocessor))), dataset_cfg)
        from tip_adapter_mm.engine.features import backbone_spec
        return store.namespace(backbone_spec(model), args['pipeline'], seed=0, extra=args['extra']).key

    test_cfg = cfg.test_dataloader.dataset
    base = key(test_cfg)
    assert key(cfg.val_dataloader.dataset) == base  # same pipeline and model: one namespace
    other = dict(test_cfg, pipeline=[dict(t, crop_size=28) if t['type'] == 'CenterCrop' else t
                                     for t in test_cfg.pipeline])
    assert key(other) != base
    assert key(test_cfg, dict(cfg.model.data_preprocessor, to_rgb=False)) != base
    # a None value is the builder's default, not another preprocessor
    assert key(test_cfg, dict(cfg.model.data_preprocessor, batch_augments=None)) == base


def test_no_feature_store_flag_turns_the_store_off():
    from mmengine.config import Config
    args = parse_train_args([osp.join(ROOT, TIP), '--no-feature-store'])
    cfg = merge_train_args(Config.fromfile(args.config), args)
    assert cfg.feature_store.enabled is False and cfg.feature_store.root == 'data/features'


@pytest.mark.slow
def test_content_mode_reads_its_own_entries_and_equals_a_run_without_store(demo_assets, tmp_path):
    """mode='content' keys (and seeds) images by their bytes; the store on or off gives the same result."""
    store = tmp_path / 'store'
    first = train(TIP, tmp_path / 'a', demo_assets, store, **{'feature_store.mode': 'content'})
    with counting_forwards() as count:
        again = train(TIP, tmp_path / 'b', demo_assets, store, **{'feature_store.mode': 'content'})
    assert count['images'] == 0
    off = train(TIP, tmp_path / 'c', demo_assets, store, '--no-feature-store', **{'feature_store.mode': 'content'})
    for key in ('alpha', 'beta', 'val_top1', 'test_top1'):
        assert first[key] == again[key] == off[key], key
    assert 'hashes.json' in os.listdir(str(store))  # each image's sha256 is cached with its stat signature
