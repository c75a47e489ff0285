"""The persistent feature store (tip_adapter_mm.features): keys, resume, concurrency, corruption, atomicity.

No CLIP here: a fake encoder turns (image bytes, view, seed) into a deterministic vector and counts its calls.
The multi-process tests run workers that import the store without the package's mmengine-registering
``__init__`` (and check that the store never imports mmengine).
"""
import hashlib
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tip_adapter_mm.features import (FeatureStore, FeatureStoreWarning, ItemId, backbone_identity, encode_missing,
                                     view_seed)
from tip_adapter_mm.features import keys as keys_mod

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DIM = 8
PIPELINE = [dict(type='LoadImageFromFile'),
            dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.5, 1.0), backend='pillow'),
            dict(type='RandomFlip', prob=0.5, direction='horizontal'),
            dict(type='PackInputs')]


# -- fakes ---------------------------------------------------------------------------------------------------

def read_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


def fake_feature(data: bytes, view: int, seed) -> np.ndarray:
    digest = hashlib.sha256(data + f'|{view}|{seed}'.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], 'big')).standard_normal(DIM).astype(np.float32)


class Interrupted(Exception):
    pass


class FakeEncoder:
    """encode_fn: reads each entry's file and hashes it into a vector; counts calls and rows."""

    def __init__(self, fail_after=None, kill_after=None, sleep=0.0, on_call=None):
        self.fail_after, self.kill_after, self.sleep, self.on_call = fail_after, kill_after, sleep, on_call
        self.calls = self.rows = 0

    def __call__(self, entries):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise Interrupted(f'stopped after {self.calls} batches')
        if self.kill_after is not None and self.calls >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.on_call is not None:
            self.on_call(entries)
        self.calls += 1
        self.rows += len(entries)
        if self.sleep:
            time.sleep(self.sleep)
        return torch.from_numpy(np.stack([fake_feature(read_bytes(e.item.path), e.view, e.seed)
                                          for e in entries]))


def expected(ns, items):
    """What encoding every view of every item directly gives: [V, N, D]."""
    return torch.from_numpy(np.stack([np.stack([fake_feature(read_bytes(it.path), v, ns.view_seed(it, v))
                                                for it in items]) for v in range(ns.views)]))


def make_images(root, n, seed=0, prefix='c'):
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        name = f'{prefix}{i % 3}/{i:04d}.png'
        os.makedirs(osp.join(root, osp.dirname(name)), exist_ok=True)
        with open(osp.join(root, name), 'wb') as f:
            f.write(rng.bytes(int(rng.integers(40, 200))))
        names.append(name)
    return names


def rewrite(path, data, keep_mtime=False, bump_mtime=False):
    st = os.stat(path)
    with open(path, 'wb') as f:
        f.write(data)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    if bump_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def setup(tmp_path):
    """(store, data root, image names, weights file)."""
    data = str(tmp_path / 'data')
    names = make_images(data, 12)
    weights = str(tmp_path / 'tiny_clip.pt')
    with open(weights, 'wb') as f:
        f.write(b'weights-v1')
    return FeatureStore(str(tmp_path / 'features'), lock_timeout=60), data, names, weights


def backbone(weights, **kw):
    return dict(dict(type='CLIPBackbone', model_name='RN50', pretrained=weights, precision='fp32'), **kw)


def shard_files(ns):
    folder = osp.join(ns.path, 'shards')
    return sorted(os.listdir(folder)) if osp.isdir(folder) else []


# -- keys ----------------------------------------------------------------------------------------------------

def test_namespace_key_changes_with_every_input(setup, tmp_path):
    store, _, _, weights = setup
    base = store.namespace(backbone(weights), PIPELINE, views=2, seed=1).key
    other_weights = str(tmp_path / 'other.pt')
    with open(other_weights, 'wb') as f:
        f.write(b'weights-v2')
    variants = {
        'model name': store.namespace(backbone(weights, model_name='ViT-B-16'), PIPELINE, views=2, seed=1),
        'precision': store.namespace(backbone(weights, precision='fp16'), PIPELINE, views=2, seed=1),
        'weights file': store.namespace(backbone(other_weights), PIPELINE, views=2, seed=1),
        'weights tag': store.namespace(backbone('openai'), PIPELINE, views=2, seed=1),
        'other tag': store.namespace(backbone('laion2b_s34b_b79k'), PIPELINE, views=2, seed=1),
        'pipeline value': store.namespace(backbone(weights), [dict(PIPELINE[0]), dict(PIPELINE[1], scale=336)]
                                          + PIPELINE[2:], views=2, seed=1),
        'pipeline order': store.namespace(backbone(weights), [PIPELINE[0], PIPELINE[2], PIPELINE[1], PIPELINE[3]],
                                          views=2, seed=1),
        'pipeline step': store.namespace(backbone(weights), PIPELINE[:2] + PIPELINE[3:], views=2, seed=1),
        'seed': store.namespace(backbone(weights), PIPELINE, views=2, seed=2),
        'no augmentation': store.namespace(backbone(weights), PIPELINE, views=1, seed=None),
        'extra backbone key': store.namespace(backbone(weights, output_layer=-2), PIPELINE, views=2, seed=1),
        'extra': store.namespace(backbone(weights), PIPELINE, views=2, seed=1, extra={'feature': 'pre-proj'}),
    }
    all_keys = [base] + [ns.key for ns in variants.values()]
    assert len(set(all_keys)) == len(all_keys), 'two different inputs share a namespace key'

    # the same weights file rewritten: a new key (its content is hashed, not its name)
    rewrite(weights, b'weights-v3 longer')
    assert store.namespace(backbone(weights), PIPELINE, views=2, seed=1).key != base


def test_same_inputs_share_the_namespace_key(setup, tmp_path):
    store, _, _, weights = setup
    base = store.namespace(backbone(weights), PIPELINE, views=2, seed=1)
    reordered = [dict(reversed(list(t.items()))) for t in PIPELINE]
    listed = [dict(t, crop_ratio_range=[0.5, 1.0]) if 'crop_ratio_range' in t else t for t in PIPELINE]
    renamed = str(tmp_path / 'renamed.pt')
    with open(renamed, 'wb') as f:
        f.write(b'weights-v1')
    same = [
        FeatureStore(store.root).namespace(backbone(weights), PIPELINE, views=2, seed=1),  # another process
        store.namespace(dict(reversed(list(backbone(weights).items()))), reordered, views=2, seed=1),
        store.namespace(dict(model_name='RN50', pretrained=weights), listed, views=2, seed=1),  # fp32 is default
        store.namespace(backbone(weights, freeze=False, cache_dir='/x', text_batch_size=7), PIPELINE, views=2,
                        seed=1),  # keys that do not change a feature
        store.namespace(backbone(renamed), PIPELINE, views=2, seed=1),  # same content, other name
        store.namespace(backbone(weights), PIPELINE, views=10, seed=1),  # the number of views is no key
        store.namespace(backbone(weights), PIPELINE, views=2, seed=np.int64(1)),
    ]
    assert {ns.key for ns in same} == {base.key}
    # the key does not depend on where the store is
    assert FeatureStore(str(tmp_path / 'elsewhere')).namespace(backbone(weights), PIPELINE, views=2,
                                                               seed=1).key == base.key


def test_weights_file_is_hashed_once(setup, monkeypatch):
    store, _, _, weights = setup
    calls = []
    real = keys_mod.hash_file_contents
    monkeypatch.setattr(keys_mod, 'hash_file_contents', lambda path: calls.append(path) or real(path))
    # a file changed within the last seconds may change again within the same timestamp tick: not cached
    rewrite(weights, b'weights-v1')
    store.namespace(backbone(weights), PIPELINE)
    store.namespace(backbone(weights), PIPELINE)
    assert len(calls) == 2
    monkeypatch.setattr(keys_mod, 'RACY_WINDOW_NS', 0)  # as if the file were older
    calls.clear()
    key = store.namespace(backbone(weights), PIPELINE).key
    for _ in range(3):
        assert store.namespace(backbone(weights), PIPELINE).key == key
    assert FeatureStore(store.root).namespace(backbone(weights), PIPELINE).key == key  # hashes.json
    assert len(calls) == 1
    assert osp.exists(osp.join(store.root, 'hashes.json'))
    # same size, mtime put back: the ctime still tells, and the file is hashed again
    time.sleep(0.05)  # past the filesystem's timestamp tick (the racy window this test switched off)
    rewrite(weights, b'weights-v2', keep_mtime=True)
    assert FeatureStore(store.root).namespace(backbone(weights), PIPELINE).key != key
    assert len(calls) == 2


def test_item_and_view_keys(tmp_path):
    data = str(tmp_path / 'data')
    os.makedirs(osp.join(data, 'a'))
    for name in ('a/1.png', 'a/2.png'):
        with open(osp.join(data, name), 'wb') as f:
            f.write(b'same bytes')
    one = ItemId.from_file(data, 'a/1.png')
    assert one == ItemId.from_file(data, 'a/1.png') == ItemId.from_file(data, osp.join(data, 'a', '1.png'))
    assert one != ItemId.from_file(data, 'a/2.png')  # stat mode: the path is part of the key
    content = ItemId.from_file(data, 'a/1.png', mode='content')
    assert content == ItemId.from_file(data, 'a/2.png', mode='content') == ItemId.from_bytes(b'same bytes')
    assert content != one

    rewrite(osp.join(data, 'a/1.png'), b'SAME BYTES', keep_mtime=True)  # same size and mtime
    assert ItemId.from_file(data, 'a/1.png', mode='content') != content  # content mode sees every edit
    assert ItemId.from_file(data, 'a/1.png') == one  # stat mode is a quick check (size + mtime), documented
    rewrite(osp.join(data, 'a/1.png'), b'SAME BYTES', bump_mtime=True)
    assert ItemId.from_file(data, 'a/1.png') != one and one.changed()
    rewrite(osp.join(data, 'a/1.png'), b'other length')
    assert ItemId.from_file(data, 'a/1.png') != one

    with pytest.raises(ValueError, match='not inside'):
        ItemId.from_file(data, '../outside.png')
    with pytest.raises(FileNotFoundError):
        ItemId.from_file(data, 'a/none.png')
    with pytest.raises(ValueError, match='mode'):
        ItemId.from_file(data, 'a/1.png', mode='mtime')

    # view seeds: a function of (seed, view, image) only
    item = ItemId.from_file(data, 'a/2.png')
    seeds = {view_seed(s, v, item) for s in (1, 2) for v in range(4)}
    assert len(seeds) == 8
    assert view_seed(1, 3, item) == view_seed(1, 3, ItemId.from_file(data, 'a/2.png'))
    assert view_seed(1, 0, item) != view_seed(1, 0, ItemId.from_file(data, 'a/1.png'))
    assert view_seed(None, 0, item) is None


def test_bad_inputs_are_refused(setup):
    store, _, _, weights = setup
    with pytest.raises(ValueError, match='model_name'):
        store.namespace(dict(pretrained=weights), PIPELINE)
    with pytest.raises(ValueError, match='random'):
        store.namespace(dict(model_name='RN50', pretrained=None), PIPELINE)
    with pytest.raises(FileNotFoundError):
        store.namespace(backbone('/no/such/weights.pt'), PIPELINE)
    with pytest.raises(TypeError):
        store.namespace(backbone(weights), dict(type='Resize'))
    with pytest.raises(TypeError, match='stable text'):
        store.namespace(backbone(weights), [dict(type='Resize', fn=object())])
    with pytest.raises(ValueError, match='deterministic'):
        store.namespace(backbone(weights), PIPELINE, views=2)
    assert backbone_identity(backbone('openai')) == {'model_name': 'RN50', 'weights': {'tag': 'openai'},
                                                     'precision': 'fp32'}


# -- encoding once -------------------------------------------------------------------------------------------

def test_second_identical_call_encodes_nothing(setup):
    store, data, names, weights = setup
    ns = store.namespace(backbone(weights), PIPELINE[:1])
    items = store.items(data, names)
    enc = FakeEncoder()
    first = encode_missing(ns, items, enc, batch_size=5)
    assert (first.encoded, first.batches, enc.calls) == (12, 3, 3)
    assert first.features.shape == (1, 12, DIM) and torch.equal(first.features, expected(ns, items))

    again = FeatureStore(store.root).namespace(backbone(weights), PIPELINE[:1])  # a later run
    enc2 = FakeEncoder()
    second = again.encode_missing(store.items(data, names), enc2, batch_size=5)
    assert (second.encoded, second.batches, enc2.calls) == (0, 0, 0)
    assert torch.equal(second.features, first.features)
    feats, missing = again.lookup(items[::-1])
    assert missing == [] and torch.equal(feats, first.features.flip(1))
    assert len(again) == 12 and sum(s['count'] for s in again.shards()) == 12


def test_views_are_a_function_of_the_image(setup):
    """An 8-shot run reuses the views a 16-shot run encoded; more views encode only the new ones."""
    store, data, _, weights = setup
    names = make_images(data, 16, seed=1, prefix='shot')
    items16 = store.items(data, names)
    ns = store.namespace(backbone(weights), PIPELINE, views=4, seed=7)
    full = ns.encode_missing(items16, FakeEncoder(), batch_size=8)
    assert full.encoded == 64 and torch.equal(full.features, expected(ns, items16))

    subset = [items16[i] for i in (13, 2, 7, 0, 9, 5, 11, 3)]  # another sample, another order
    enc = FakeEncoder()
    eight = ns.encode_missing(subset, enc, batch_size=8)
    assert enc.calls == 0
    assert torch.equal(eight.features, full.features[:, [13, 2, 7, 0, 9, 5, 11, 3]])

    more = store.namespace(backbone(weights), PIPELINE, views=6, seed=7)
    views = []
    enc = FakeEncoder(on_call=lambda entries: views.extend(e.view for e in entries))
    six = more.encode_missing(items16, enc, batch_size=8)
    assert enc.rows == 2 * 16 and sorted(set(views)) == [4, 5]  # the new views only
    assert torch.equal(six.features[:4], full.features) and torch.equal(six.features, expected(more, items16))


def test_changed_image_pipeline_or_weights_is_encoded_again(setup):
    store, data, names, weights = setup
    ns = store.namespace(backbone(weights), PIPELINE[:1])
    ns.encode_missing(store.items(data, names), FakeEncoder(), batch_size=4)

    rewrite(osp.join(data, names[3]), b'a new image, another size')
    items = store.items(data, names)
    enc = FakeEncoder()
    result = ns.encode_missing(items, enc, batch_size=4)
    assert enc.rows == 1
    assert torch.equal(result.features, expected(ns, items))  # the new content, never the stale one

    enc = FakeEncoder()
    store.namespace(backbone(weights), PIPELINE[:1] + [dict(type='Resize', scale=32)]).encode_missing(items, enc)
    assert enc.rows == 12
    rewrite(weights, b'weights-v2 fine-tuned')
    enc = FakeEncoder()
    store.namespace(backbone(weights), PIPELINE[:1]).encode_missing(items, enc)
    assert enc.rows == 12


def test_content_mode_items(setup):
    store, data, names, weights = setup
    ns = store.namespace(backbone(weights), PIPELINE[:1])
    items = store.items(data, names, mode='content')
    assert all(it.key.startswith('sha256:') for it in items)
    assert ns.encode_missing(items, FakeEncoder()).encoded == 12
    path = osp.join(data, names[0])
    rewrite(path, bytes(reversed(read_bytes(path))), keep_mtime=True)  # same size and mtime, other bytes
    items = store.items(data, names, mode='content')
    result = ns.encode_missing(items, FakeEncoder())
    assert result.encoded == 1 and torch.equal(result.features, expected(ns, items))


def test_image_changed_while_encoding_is_not_stored(setup):
    store, data, names, weights = setup
    ns = store.namespace(backbone(weights), PIPELINE[:1])
    items = store.items(data, names)

    def edit(entries):
        if any(e.item.key == items[5].key for e in entries):
            rewrite(items[5].path, b'edited during extraction!')
    with pytest.raises(RuntimeError, match='changed while'):
        ns.encode_missing(items, FakeEncoder(on_call=edit), batch_size=4)
    assert len(ns) == 4  # the first batch only
    result = ns.encode_missing(store.items(data, names), FakeEncoder(), batch_size=4)
    assert result.encoded == 8 and torch.equal(result.features, expected(ns, store.items(data, names)))


# -- resume ----------------------------------------------------------------------------------------------------

def test_interrupted_extraction_resumes(setup, tmp_path):
    store, data, names, weights = setup
    items = store.items(data, names)
    reference = FeatureStore(str(tmp_path / 'reference')).namespace(backbone(weights), PIPELINE, views=3, seed=0)
    uninterrupted = reference.encode_missing(items, FakeEncoder(), batch_size=5).features

    ns = store.namespace(backbone(weights), PIPELINE, views=3, seed=0)
    with pytest.raises(Interrupted):
        ns.encode_missing(items, FakeEncoder(fail_after=3), batch_size=5)
    assert len(ns) == 15 and len(ns.missing(items)) == 36 - 15
    assert os.listdir(osp.join(ns.path, 'claims')) == []  # the interrupted batch's claim is released
    enc = FakeEncoder()
    resumed = ns.encode_missing(items, enc, batch_size=5)
    assert resumed.encoded == enc.rows == 36 - 15
    assert resumed.features.numpy().tobytes() == uninterrupted.numpy().tobytes()


WORKER = r'''
import sys, types
pkg = types.ModuleType('tip_adapter_mm')
pkg.__path__ = [sys.argv[1] + '/tip_adapter_mm']
sys.modules['tip_adapter_mm'] = pkg  # the store alone, without the package's registering __init__
import importlib.util
spec = importlib.util.spec_from_file_location('feature_store_test', sys.argv[1] + '/tests/test_feature_store.py')
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.worker_main(sys.argv[2:])
'''


def worker_main(argv):
    """A process of the multi-process tests: encode every view of the images, save the result."""
    import safetensors.torch
    root, data, weights, out, go, mode, arg = argv
    from tip_adapter_mm.features import FeatureStore as Store
    assert 'mmengine' not in sys.modules, 'the feature store imports mmengine'
    store = Store(root, lock_timeout=60)
    ns = store.namespace(backbone(weights), PIPELINE, views=2, seed=3)
    items = store.items(data, [f'w/{n}' for n in sorted(os.listdir(osp.join(data, 'w')))])
    open(out + '.ready', 'w').close()
    while not osp.exists(go):  # all workers start encoding together
        time.sleep(0.002)
    if mode == 'kill-encode':
        encoder = FakeEncoder(kill_after=int(arg))
    elif mode == 'kill-write':
        encoder = FakeEncoder()
        real_fsync, count = os.fsync, [0]

        def fsync(fd):  # die inside the n-th write of a file (a shard or index entry half written)
            import stat
            if stat.S_ISREG(os.fstat(fd).st_mode):
                count[0] += 1
                if count[0] == int(arg):
                    os.kill(os.getpid(), signal.SIGKILL)
            real_fsync(fd)
        os.fsync = fsync
    else:
        encoder = FakeEncoder(sleep=float(arg))
    result = ns.encode_missing(items, encoder, batch_size=4)
    safetensors.torch.save_file({'features': result.features}, out)
    with open(out + '.json', 'w') as f:
        json.dump({'encoded': result.encoded, 'rows': encoder.rows}, f)


def start_workers(tmp_path, store, data, weights, specs):
    go = str(tmp_path / 'go')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    procs = []
    for n, (mode, arg) in enumerate(specs):
        out = str(tmp_path / f'out{n}.safetensors')
        procs.append((subprocess.Popen([sys.executable, '-c', WORKER, ROOT, store.root, data, weights, out, go,
                                        mode, str(arg)], env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True), out))
    deadline = time.monotonic() + 240
    while not all(osp.exists(out + '.ready') or proc.poll() is not None for proc, out in procs):
        assert time.monotonic() < deadline, 'workers did not start'
        time.sleep(0.01)
    open(go, 'w').close()
    results = []
    for proc, out in procs:
        log, _ = proc.communicate(timeout=240)
        results.append((proc.returncode, out, log))
    return results


def worker_setup(tmp_path, n=20):
    data = str(tmp_path / 'data')
    make_images(data, 0)
    rng = np.random.default_rng(5)
    os.makedirs(osp.join(data, 'w'))
    for i in range(n):
        with open(osp.join(data, 'w', f'{i:03d}.png'), 'wb') as f:
            f.write(rng.bytes(int(rng.integers(40, 200))))
    weights = str(tmp_path / 'tiny_clip.pt')
    with open(weights, 'wb') as f:
        f.write(b'weights-v1')
    store = FeatureStore(str(tmp_path / 'features'), lock_timeout=60)
    ns = store.namespace(backbone(weights), PIPELINE, views=2, seed=3)
    items = store.items(data, [f'w/{i:03d}.png' for i in range(n)])
    return store, data, weights, ns, items


def test_killed_process_resumes(tmp_path):
    """A worker SIGKILLed after 3 stored batches leaves a stale claim; the next run takes over."""
    store, data, weights, ns, items = worker_setup(tmp_path)
    [(rc, _, log)] = start_workers(tmp_path, store, data, weights, [('kill-encode', 3)])
    assert rc == -signal.SIGKILL, log
    assert len(ns) == 12 and len(os.listdir(osp.join(ns.path, 'claims'))) == 2  # its claim (json + lock)
    enc = FakeEncoder()
    result = ns.encode_missing(items, enc, batch_size=4)
    assert result.encoded == enc.rows == 40 - 12
    assert torch.equal(result.features, expected(ns, items))
    assert os.listdir(osp.join(ns.path, 'claims')) == []


def test_process_killed_while_writing_leaves_no_partial_file(tmp_path):
    """Killed inside the write of a shard (holding the lock): a temporary is left, never read, then removed."""
    store, data, weights, ns, items = worker_setup(tmp_path)
    # regular-file fsyncs: namespace.json, shard 1, index entry 1, shard 2 <- killed there
    [(rc, _, log)] = start_workers(tmp_path, store, data, weights, [('kill-write', 4)])
    assert rc == -signal.SIGKILL, log
    files = shard_files(ns)
    assert len([f for f in files if f.endswith('.tmp')]) == 1
    assert len([f for f in files if f.endswith('.safetensors')]) == 1 and len(ns) == 4
    enc = FakeEncoder()
    result = ns.encode_missing(items, enc, batch_size=4)  # the lock died with the worker: no wait
    assert enc.rows == 40 - 4 and torch.equal(result.features, expected(ns, items))
    assert not [f for f in shard_files(ns) if f.endswith('.tmp')]


def test_concurrent_processes_encode_each_item_once(tmp_path):
    import safetensors.torch
    store, data, weights, ns, items = worker_setup(tmp_path)
    results = start_workers(tmp_path, store, data, weights, [('concurrent', 0.05), ('concurrent', 0.05)])
    want = expected(ns, items)
    encoded = []
    for rc, out, log in results:
        assert rc == 0, log
        assert torch.equal(safetensors.torch.load_file(out)['features'], want)
        with open(out + '.json') as f:
            encoded.append(json.load(f)['encoded'])
    assert sum(encoded) == 40 and min(encoded) > 0, encoded  # the work was split, nothing encoded twice
    assert len(ns) == 40 and sum(s['count'] for s in ns.shards()) == 40  # each entry stored once
    assert os.listdir(osp.join(ns.path, 'claims')) == []
    enc = FakeEncoder()
    assert torch.equal(ns.encode_missing(items, enc).features, want) and enc.calls == 0


# -- corruption and atomicity ------------------------------------------------------------------------------------

def test_corrupt_shards_are_detected_and_encoded_again(setup):
    store, data, names, weights = setup
    ns = store.namespace(backbone(weights), PIPELINE[:1])
    items = store.items(data, names)
    want = ns.encode_missing(items, FakeEncoder(), batch_size=2).features
    shards = ns.shards()
    assert len(shards) == 6
    folder = osp.join(ns.path, 'shards')
    flipped, truncated, bad_index, deleted = (osp.join(folder, s['name']) for s in shards[:4])
    with open(flipped + '.safetensors', 'r+b') as f:  # one flipped byte in the data: same size
        f.seek(-3, os.SEEK_END)
        byte = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))
    with open(truncated + '.safetensors', 'r+b') as f:
        f.truncate(os.path.getsize(truncated + '.safetensors') // 2)
    with open(bad_index + '.json', 'w') as f:
        f.write('{"format": 1, "entries": [')
    os.remove(deleted + '.safetensors')

    fresh = FeatureStore(store.root).namespace(backbone(weights), PIPELINE[:1])
    with pytest.warns(FeatureStoreWarning) as record:
        feats, missing = fresh.lookup(items)
    messages = ' | '.join(str(w.message) for w in record)
    for reason in ('checksum mismatch', 'bytes where the index says', 'unreadable index entry', 'missing'):
        assert reason in messages
    assert sorted(i for _, i in missing) == list(range(8))  # shards 0-3 hold items 0-7
    assert torch.isnan(feats[0, :8]).all() and torch.equal(feats[0, 8:], want[0, 8:])
    assert len(shard_files(fresh)) == 2 * 2  # the bad ones are removed
    enc = FakeEncoder()
    result = fresh.encode_missing(items, enc, batch_size=2)
    assert enc.rows == 8 and torch.equal(result.features, want)

    # a shard damaged between two calls of the same namespace object: found by encode_missing itself
    with open(osp.join(folder, fresh.shards()[-1]['name'] + '.safetensors'), 'r+b') as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0x01]))
    enc = FakeEncoder()
    with pytest.warns(FeatureStoreWarning, match='checksum'):
        result = fresh.encode_missing(items, enc, batch_size=2)
    assert enc.rows == 2 and torch.equal(result.features, want)


def test_interrupted_write_leaves_no_partial_file(setup, monkeypatch):
    store, data, names, weights = setup
    ns = store.namespace(backbone(weights), PIPELINE[:1])
    items = store.items(data, names)
    feats = expected(ns, items)
    ns.put(items[:2], feats[:, :2])
    before = shard_files(ns)
    real_fsync = os.fsync

    def interrupted(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, 'fsync', interrupted)
    with pytest.raises(KeyboardInterrupt):
        ns.put(items[2:6], feats[:, 2:6])
    monkeypatch.setattr(os, 'fsync', real_fsync)
    assert shard_files(ns) == before and len(ns) == 2  # no temporary, no shard, no index entry

    # interrupted between the shard and its index entry: the shard is never read, then removed
    calls = [0]

    def second_file_interrupted(fd):
        import stat
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls[0] += 1
            if calls[0] == 2:
                raise KeyboardInterrupt
        real_fsync(fd)
    monkeypatch.setattr(os, 'fsync', second_file_interrupted)
    with pytest.raises(KeyboardInterrupt):
        ns.put(items[2:6], feats[:, 2:6])
    monkeypatch.setattr(os, 'fsync', real_fsync)
    assert len(shard_files(ns)) == len(before) + 1 and ns.missing(items)[:1] == [(0, 2)]
    with open(osp.join(ns.path, 'shards', '.left-by-a-killed-writer.safetensors.abc.tmp'), 'wb') as f:
        f.write(b'partial')
    got, missing = ns.lookup(items)
    assert [i for _, i in missing] == list(range(2, 12)) and torch.equal(got[:, :2], feats[:, :2])
    assert ns.put(items[2:6], feats[:, 2:6]) == 4
    assert len(shard_files(ns)) == len(before) + 2  # orphan shard and temporary removed under the lock
    assert not [f for f in shard_files(ns) if f.startswith('.')]
    assert torch.equal(ns.lookup(items[:6])[0], feats[:, :6])


def test_put_and_lookup(setup):
    store, data, names, weights = setup
    ns = store.namespace(backbone(weights), PIPELINE, views=2, seed=0)
    items = store.items(data, names)
    assert ns.lookup(items) == (None, [(v, i) for v in range(2) for i in range(12)])
    feats = torch.randn(2, 12, DIM).half()
    assert ns.put(items[:4], feats[:, :4]) == 8
    assert ns.put(items[:4], feats[:, :4]) == 0  # stored once
    assert ns.put(items[4:6], feats[1, 4:6], views=[1, 1]) == 2
    got, missing = ns.lookup(items)
    assert got.dtype == torch.float16 and got.shape == (2, 12, DIM)
    assert torch.equal(got[:, :4], feats[:, :4]) and torch.equal(got[1, 4:6], feats[1, 4:6])
    assert torch.isnan(got[0, 4:]).all() and torch.isnan(got[1, 6:]).all()
    assert missing == [(0, i) for i in range(4, 12)] + [(1, i) for i in range(6, 12)]
    assert ns.missing(items) == missing
    with pytest.raises(ValueError, match='8-d float16'):
        ns.put(items[6:7], torch.zeros(1, DIM + 1).half())
    with pytest.raises(ValueError, match='float16'):
        ns.put(items[6:7], torch.zeros(1, DIM))
    with pytest.raises(ValueError, match='match'):
        ns.put(items[6:8], torch.zeros(3, DIM).half())
    with pytest.raises(TypeError, match='floating'):
        ns.put(items[6:7], torch.zeros(1, DIM, dtype=torch.long))
    entries = ns.entries(items[:2])
    assert [(e.item, e.view) for e in entries] == [(items[0], 0), (items[1], 0), (items[0], 1), (items[1], 1)]
    assert entries[3].seed == view_seed(0, 1, items[1])


def test_size_bytes_clear_and_listing(setup):
    store, data, names, weights = setup
    unrelated = osp.join(store.root, 'notes.txt')
    with open(unrelated, 'w') as f:
        f.write('not the store\'s')
    empty = store.size_bytes()
    items = store.items(data, names)
    one = store.namespace(backbone(weights), PIPELINE[:1])
    two = store.namespace(backbone('openai'), PIPELINE[:1])
    one.encode_missing(items, FakeEncoder())
    after_one = store.size_bytes()
    two.encode_missing(items, FakeEncoder())
    assert empty < after_one < store.size_bytes()
    listed = {n['key']: n for n in store.namespaces()}
    assert set(listed) == {one.key, two.key} and listed[one.key]['entries'] == 12
    assert listed[two.key]['identity']['backbone']['weights'] == {'tag': 'openai'}

    assert store.clear(two) == 1
    assert len(two) == 0 and len(one) == 12 and store.size_bytes() == after_one
    enc = FakeEncoder()
    two.encode_missing(items, enc)  # written again after a clear
    assert enc.rows == 12 and len(two) == 12

    assert store.clear() == 2
    assert len(one) == 0 and len(two) == 0 and store.namespaces() == []
    assert osp.exists(unrelated) and not osp.exists(osp.join(store.root, 'hashes.json'))
    assert store.size_bytes() == os.path.getsize(unrelated)  # lock files are empty
    with pytest.raises(ValueError):
        store.clear('../data')
