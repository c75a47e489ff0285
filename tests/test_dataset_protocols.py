"""The papers' dataset protocols, on replicas of the real on-disk layouts written by the tests:

- CoOp's few-shot validation list (``val_mode='fewshot'``): drawn after the train sample from the one stream
  that ``random.seed(seed)`` starts (CoOp ``train.py`` + Dassl ``generate_fewshot_dataset``);
- ImageNet in CoOp's layout (``images/train``, ``images/val``, ``classnames.txt``) and in the plain one;
- classes with fewer than K images (``short_classes``: Dassl's 'keep_all', Tip-Adapter's 'replace', 'error'),
  and a cache head that takes the resulting cache.
"""
import json
import os
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from PIL import Image

from folders import coop_fewshot_splits, dassl_fewshot, write_coop_split, write_image_folder
from tip_adapter_mm.datasets import CoOpSplitDataset, FewShotFGVCAircraft, FewShotImageFolder
from tip_adapter_mm.datasets.fewshot import draw_few_shot, sample_few_shot
from tip_adapter_mm.functional import tip_logits
from tip_adapter_mm.models import CacheHead
from tip_adapter_mm.models.cache_head import check_train_split

init_default_scope('mmpretrain')

# (K, seed): K < 4 (val takes K per class) and K >= 4 (val takes 4), classes short in train and in val
COMBOS = [(1, 1), (2, 2), (3, 3), (4, 1), (8, 2), (16, 3)]
TEXTURES = ['banded', 'blotchy', 'braided', 'bubbly', 'bumpy']  # label order
TRAIN_COUNTS = [20, 9, 3, 17, 12]  # 'braided' has 3 (short from K = 4), 'blotchy' 9 and 'bumpy' 12 (K = 16)
VAL_COUNTS = [6, 4, 2, 5, 3]  # 'braided' and 'bumpy' short for 4 validation shots


def _interleaved(split, counts, seed):
    """[(path, label, class name)] with classes interleaved in a shuffled order per round, so that the order
    of first appearance differs from the label order and each class's images are spread over the list."""
    rng = random.Random(seed)
    left = list(counts)
    entries = []
    while any(left):
        labels = [label for label, n in enumerate(left) if n]
        rng.shuffle(labels)
        for label in labels:
            i = counts[label] - left[label]
            left[label] -= 1
            name = TEXTURES[label]
            entries.append((f'{name}/{name}_{split}_{i:04d}.jpg', label, name))
    return entries


@pytest.fixture(scope='module')
def dtd(tmp_path_factory):
    """A CoOp DTD folder: images/<class>/<image> and split_zhou_DescribableTextures.json."""
    folder = str(tmp_path_factory.mktemp('coop') / 'dtd')
    split = dict(train=_interleaved('train', TRAIN_COUNTS, 0), val=_interleaved('val', VAL_COUNTS, 1),
                 test=_interleaved('test', [2] * 5, 2))
    write_coop_split(folder, 'split_zhou_DescribableTextures.json', 'images', split)
    with open(osp.join(folder, 'split_zhou_DescribableTextures.json')) as f:  # as a reader sees it
        split = json.load(f)
    return folder, split


def _items(entries, prefix='images/'):
    return [(prefix + path, label) for path, label, _ in entries]


def _dtd(folder, split='train', **kw):
    kw.setdefault('serialize_data', False)
    return CoOpSplitDataset(data_root=folder, dataset='dtd', split=split, **kw)


# -- 5. fewshot_val is CoOp's sample ----------------------------------------------------------------------
@pytest.mark.parametrize('shots,seed', COMBOS)
def test_fewshot_val_is_coops_sample(dtd, shots, seed):
    folder, split = dtd
    train_ref, val_ref = coop_fewshot_splits(_items(split['train']), _items(split['val']), shots, seed)
    train = _dtd(folder, num_shots=shots, seed=seed).split_items()
    val = _dtd(folder, 'val', num_shots=shots, seed=seed, val_mode='fewshot').split_items()
    assert train == train_ref
    assert val == val_ref
    assert len(val) == sum(min(n, shots, 4) for n in VAL_COUNTS)
    # the old list (a second stream seeded 'val-<seed>') is another one
    assert val != dassl_fewshot(_items(split['val']), min(shots, 4), f'val-{seed}', repeat=False)


@pytest.mark.parametrize('shots,seed', [(2, 1), (8, 3)])
def test_fewshot_val_of_fgvc_aircraft_is_coops_sample(tmp_path, shots, seed):
    variants = ['A300B4', 'Cessna 172', 'F-16A/B']
    folder = tmp_path / 'fgvc_aircraft'
    os.makedirs(folder / 'images')
    (folder / 'variants.txt').write_text(''.join(f'{v}\n' for v in variants))
    lists, n = {}, 0
    for key, counts in dict(train=[10, 6, 3], val=[5, 2, 4], test=[1, 1, 1]).items():
        lines = []
        for label, count in enumerate(counts):
            for _ in range(count):
                n += 1
                lines.append((f'{1000000 + n:07d}', label))
        lines = lines[1::2] + lines[::2]  # classes interleaved, each one's images out of id order
        (folder / f'images_variant_{key}.txt').write_text(''.join(f'{i} {variants[lab]}\n' for i, lab in lines))
        for image_id, _ in lines:
            Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(folder / 'images' / f'{image_id}.jpg')
        lists[key] = [(f'images/{i}.jpg', lab) for i, lab in lines]
    train_ref, val_ref = coop_fewshot_splits(lists['train'], lists['val'], shots, seed)
    assert FewShotFGVCAircraft(data_root=str(folder), num_shots=shots, seed=seed).split_items() == train_ref
    val = FewShotFGVCAircraft(data_root=str(folder), split='val', num_shots=shots, seed=seed, val_mode='fewshot')
    assert val.split_items() == val_ref


def test_fewshot_val_after_a_given_train_list_and_global_random_untouched(dtd, tmp_path):
    folder, split = dtd
    train_ref, val_ref = coop_fewshot_splits(_items(split['train']), _items(split['val']), 4, 2)
    path = tmp_path / 'train_only.json'
    path.write_text(json.dumps(dict(num_shots=4, train=train_ref[::-1])))  # a file without a val list
    random.seed(123)
    state = random.getstate()
    assert _dtd(folder, num_shots=4, seed=2, split_file=str(path)).split_items() == train_ref[::-1]
    # the val list continues the stream after the seed's own train sample, as CoOp
    assert _dtd(folder, 'val', num_shots=4, seed=2, val_mode='fewshot', split_file=str(path)).split_items() == \
        val_ref
    assert random.getstate() == state  # a private generator: the global stream is not consumed


def test_fewshot_val_of_an_image_folder_follows_the_same_flow(tmp_path):
    root = write_image_folder(tmp_path, {'train': {'a': 7, 'b': 5, 'c': 6}, 'val': {'a': 5, 'b': 3, 'c': 4}})
    every = FewShotImageFolder(data_root=root, num_shots=None)
    val_all = FewShotImageFolder(data_root=root, split='val', val_mode='full')
    train_ref, val_ref = coop_fewshot_splits(every.split_items(), val_all.split_items(), 5, 4)
    assert FewShotImageFolder(data_root=root, num_shots=5, seed=4).split_items() == train_ref
    assert FewShotImageFolder(data_root=root, split='val', num_shots=5, seed=4, val_mode='fewshot',
                              short_classes='keep_all').split_items() == val_ref


# -- 7. ImageNet in CoOp's layout ------------------------------------------------------------------------
WNIDS = ['n01440764', 'n01443537', 'n01484850', 'n01491361', 'n01494475']
IMAGENET_NAMES = {'n01440764': 'tench', 'n01443537': 'goldfish', 'n01484850': 'great white shark',
                  'n01491361': 'tiger shark', 'n01494475': 'hammerhead shark'}
IMAGENET_DIRS = dict(train='train', val=None, test='val')  # configs/_base_/datasets/imagenet_fewshot.py


@pytest.fixture(scope='module')
def imagenet_layouts(tmp_path_factory):
    """(plain root, CoOp root): the same images as train/ + val/ and as images/train/ + images/val/ +
    classnames.txt (written in another order than the sorted wnids: CoOp looks names up by wnid)."""
    counts = {w: 6 + 2 * i for i, w in enumerate(WNIDS)}
    val = {w: 3 for w in WNIDS}
    plain = write_image_folder(tmp_path_factory.mktemp('plain'), {'train': counts, 'val': val})
    coop = write_image_folder(tmp_path_factory.mktemp('coop') / 'imagenet', {'images/train': counts, 'images/val': val})
    with open(osp.join(coop, 'classnames.txt'), 'w') as f:
        f.write(''.join(f'{w} {IMAGENET_NAMES[w]}\n' for w in reversed(WNIDS)))
    return plain, coop


def _imagenet(root, split, **kw):
    kw.setdefault('split_dirs', IMAGENET_DIRS)
    kw.setdefault('serialize_data', False)
    return FewShotImageFolder(data_root=root, split=split, **kw)


def _strip(items, prefix='images/'):
    assert all(path.startswith(prefix) for path, _ in items)
    return [(path[len(prefix):], label) for path, label in items]


@pytest.mark.parametrize('shots,seed', [(2, 1), (5, 2), (8, 3)])
def test_imagenet_coop_layout_gives_the_same_lists(imagenet_layouts, shots, seed):
    plain, coop = imagenet_layouts
    for split in ('train', 'val', 'test'):
        a = _imagenet(plain, split, num_shots=shots, seed=seed, short_classes='keep_all')
        b = _imagenet(coop, split, num_shots=shots, seed=seed, short_classes='keep_all')
        assert _strip(b.split_items()) == a.split_items()
        assert osp.isfile(b.get_data_info(0)['img_path'])
    test = _imagenet(coop, 'test').split_items()
    assert test[0][0].startswith('images/val/') and len(test) == 3 * len(WNIDS)


def test_imagenet_coop_layout_class_names(imagenet_layouts, tmp_path):
    plain, coop = imagenet_layouts
    assert _imagenet(plain, 'train', num_shots=1).metainfo['classes'] == tuple(WNIDS)  # folder names
    names = _imagenet(coop, 'train', num_shots=1)
    assert names.metainfo['classes'] == tuple(IMAGENET_NAMES[w] for w in WNIDS)  # classnames.txt, by wnid
    assert names.metainfo['class_folders'] == tuple(WNIDS)
    given = ['a', 'b', 'c', 'd', 'e']
    assert _imagenet(coop, 'train', num_shots=1, classnames=given).metainfo['classes'] == tuple(given)
    # a classnames.txt that misses a class folder is an error naming the file
    bad = tmp_path / 'imagenet'
    write_image_folder(bad, {'images/train': {w: 1 for w in WNIDS}})
    (bad / 'classnames.txt').write_text(''.join(f'{w} x\n' for w in WNIDS[1:]))
    with pytest.raises(ValueError, match=r"classnames.txt' names no class for the folders \['n01440764'\]"):
        _imagenet(str(bad), 'train', num_shots=1)


def test_imagenet_without_either_layout_is_a_clear_error(tmp_path):
    os.makedirs(tmp_path / 'imagenet' / 'something_else')
    root = str(tmp_path / 'imagenet')
    with pytest.raises(FileNotFoundError) as info:
        _imagenet(root, 'train', num_shots=1)
    text = str(info.value)
    assert f"'{osp.join(root, 'train')}'" in text and f"'{osp.join(root, 'images', 'train')}'" in text
    assert f"data root '{root}'" in text
    assert '<data_root>/train/<class>/<image>' in text
    assert '<data_root>/images/train/<wnid>/<image> with <data_root>/classnames.txt' in text


# -- 8. classes with fewer than K images -----------------------------------------------------------------
def test_sampler_policies_match_dassl():
    labels = [0, 1, 0, 2, 1, 0, 2, 0, 1, 0]  # class 0: 5 items, 1: 3, 2: 2
    items = [(f'i{i}', label) for i, label in enumerate(labels)]
    for seed in (1, 2, 3):
        keep = sample_few_shot(labels, 3, seed, 'keep_all')
        assert [items[i] for i in keep] == dassl_fewshot(items, 3, seed, repeat=False)
        replace = sample_few_shot(labels, 3, seed, 'replace')
        assert [items[i] for i in replace] == dassl_fewshot(items, 3, seed, repeat=True)
    drawn = draw_few_shot(random.Random(1), labels, 4, 'keep_all')
    assert drawn.short == {1: 3, 2: 2}
    with pytest.raises(ValueError, match=r"class 'c' \(label 2\) has 2 usable images in the dataset, fewer than "
                                         r"the 3 required; set short_classes='keep_all'"):
        sample_few_shot(labels, 3, 1, 'error', classnames=['a', 'b', 'c'])
    with pytest.raises(ValueError, match='short_classes must be one of'):
        sample_few_shot(labels, 3, 1, 'repeat')


def test_dataset_defaults_and_logging(dtd, tmp_path, monkeypatch):
    folder, split = dtd
    logged = []
    monkeypatch.setattr('tip_adapter_mm.datasets.few_shot_dataset.print_log',
                        lambda msg, logger=None, **kw: logged.append((msg, logger)))
    # CoOp datasets keep every image of a short class (Dassl's repeat=False, as CoOp calls it)
    ds = _dtd(folder, num_shots=16, seed=1)
    assert ds.short_classes == 'keep_all'
    assert ds.split_items() == dassl_fewshot(_items(split['train']), 16, 1, repeat=False)
    assert ds.metainfo['short_classes'] == {1: 9, 2: 3, 4: 12}
    assert len(logged) == 1 and logged[0][1] == 'current'
    assert "3 classes of the train split" in logged[0][0] and "'braided' (3)" in logged[0][0]
    assert 'kept all their images' in logged[0][0]
    # Tip-Adapter's random.choices, by name or by the deprecated alias
    ref = dassl_fewshot(_items(split['train']), 16, 1, repeat=True)
    assert _dtd(folder, num_shots=16, short_classes='replace').split_items() == ref
    assert _dtd(folder, num_shots=16, allow_replacement=True).split_items() == ref
    assert 'with replacement' in logged[-1][0]
    with pytest.raises(ValueError, match=r"class 'braided' \(label 2\) has 3 usable images"):
        _dtd(folder, num_shots=16, short_classes='error')
    with pytest.raises(ValueError, match='contradicts'):
        _dtd(folder, num_shots=16, short_classes='keep_all', allow_replacement=True)
    with pytest.raises(ValueError, match='short_classes must be one of'):
        _dtd(folder, num_shots=16, short_classes='all')
    assert _dtd(folder, num_shots=2).metainfo['short_classes'] == {}
    # a generic image folder has no reference: a short class is an error unless a policy is chosen
    root = write_image_folder(tmp_path, {'train': {'cat': 5, 'dog': 2}, 'val': {'cat': 1, 'dog': 1}})
    with pytest.raises(ValueError, match=r"class 'dog' \(label 1\) has 2 usable images"):
        FewShotImageFolder(data_root=root, num_shots=4)
    kept = FewShotImageFolder(data_root=root, num_shots=4, short_classes='keep_all')
    assert [label for _, label in kept.split_items()] == [0] * 4 + [1] * 2
    # FGVC-Aircraft, a CoOp dataset too
    assert FewShotFGVCAircraft.DEFAULT_SHORT_CLASSES == 'keep_all'


def _cache(labels, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    keys = torch.nn.functional.normalize(torch.randn(len(labels), d, generator=g), dim=-1)
    return keys, torch.tensor(labels)


def test_cache_head_takes_a_cache_with_short_classes(dtd):
    folder, _ = dtd
    ds = _dtd(folder, num_shots=16, seed=3)
    labels = [label for _, label in ds.split_items()]
    c, k, d = len(TEXTURES), 16, 8
    assert len(labels) == 16 + 9 + 3 + 16 + 12 < c * k
    check_train_split(labels, c, k, split_shots=16, classnames=TEXTURES)  # the hook's check passes
    keys, cache_labels = _cache(labels, d)
    weights = torch.nn.functional.normalize(torch.randn(c, d), dim=-1)
    head = CacheHead(num_classes=c, feat_dim=d, num_shots=k, alpha=2., beta=3.)
    assert head.cache_size == c * k
    head.set_cache(weights, keys, cache_labels)
    assert head.cache_size == len(labels) and bool(head.cache_ready)
    queries = torch.nn.functional.normalize(torch.randn(7, d), dim=-1)
    one_hot = torch.nn.functional.one_hot(cache_labels, c).float()
    expected = 100. * queries @ weights.t() + 2. * torch.exp(-3. * (1. - queries @ keys.t())) @ one_hot
    assert torch.allclose(head.logits(queries), expected, atol=1e-4)
    assert torch.allclose(tip_logits(queries, weights, keys, cache_labels, 2., 3.), expected, atol=1e-4)
    # a checkpoint of that cache loads into a head built from the config (C x K allocated)
    fresh = CacheHead(num_classes=c, feat_dim=d, num_shots=k)
    fresh.load_state_dict(head.state_dict())
    assert fresh.cache_size == len(labels) and torch.equal(fresh.logits(queries), head.logits(queries))


def test_cache_head_trainable_keys_resize_in_place(monkeypatch):
    c, k, d = 3, 4, 8
    labels = [0, 0, 0, 0, 1, 2, 2]
    keys, cache_labels = _cache(labels, d)
    head = CacheHead(num_classes=c, feat_dim=d, num_shots=k, train_keys=True)
    param = head.cache_keys
    optimizer = torch.optim.AdamW([param], lr=0.1)  # built before the cache, as by the runner
    head.set_cache(torch.eye(c, d), keys, cache_labels)
    assert head.cache_keys is param and param.shape == (7, d) and param.requires_grad
    head.logits(torch.nn.functional.normalize(torch.randn(5, d), dim=-1)).logsumexp(1).sum().backward()
    optimizer.step()
    assert optimizer.state[param]['exp_avg'].shape == (7, d) and not torch.equal(param.detach(), keys)
    # DDP fixed its buckets at wrapping: resized trainable keys cannot be trained in a multi-process run
    from mmpretrain.structures import DataSample
    feats = (torch.randn(2, d), )
    samples = [DataSample().set_gt_label(label) for label in (0, 2)]
    assert head.loss(feats, samples)['loss'] > 0  # one process
    monkeypatch.setattr('tip_adapter_mm.models.cache_head.get_world_size', lambda: 2)
    other = CacheHead(num_classes=c, feat_dim=d, num_shots=k, train_keys=True)
    other.load_state_dict(head.state_dict())  # loading (e.g. to evaluate) resizes
    assert other.cache_size == 7
    assert torch.isfinite(other.logits(torch.randn(2, d))).all()
    with pytest.raises(ValueError, match=r"cache has 7 entries but the head was built for .* = 12.*fine-tune on "
                                         r"one process.*short_classes='replace'"):
        other.loss(feats, samples)
    full = CacheHead(num_classes=c, feat_dim=d, num_shots=k, train_keys=True)
    full.set_cache(torch.eye(c, d), *_cache([0] * 4 + [1] * 4 + [2] * 4, d))
    assert full.loss(feats, samples)['loss'] > 0  # C x K: nothing changed size


def test_cache_head_checks():
    c, k, d = 3, 2, 8
    head = CacheHead(num_classes=c, feat_dim=d, num_shots=k)
    keys, labels = _cache([0, 0, 2, 2], d)
    with pytest.raises(ValueError, match=r'no entry for the classes \[1\]'):
        head.set_cache(torch.zeros(c, d), keys, labels)
    with pytest.raises(ValueError, match=r'cache_labels of shape \(3,\) does not fit the head, which expects \(N,\)'):
        head.set_cache(torch.zeros(c, d), keys, labels[:3])
    with pytest.raises(ValueError, match='num_shots=0 is zero-shot CLIP'):
        CacheHead(num_classes=c, feat_dim=d, num_shots=0).set_cache(torch.zeros(c, d), keys, labels)
    with pytest.raises(ValueError, match='num_shots=0 is zero-shot CLIP'):
        head.set_cache(torch.zeros(c, d))
    assert not bool(head.cache_ready)
    state = CacheHead(num_classes=c, feat_dim=d, num_shots=3).state_dict()
    state['cache_labels'] = torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match=r'cache_keys of shape \(9, 8\) but the config builds \(6, 8\).*damaged'):
        head.load_state_dict(state)
    state = CacheHead(num_classes=c, feat_dim=16, num_shots=k).state_dict()
    with pytest.raises(ValueError, match=r'clip_weights of shape \(3, 16\) but the config builds \(3, 8\)'):
        head.load_state_dict(state)


def test_check_train_split():
    check_train_split([0, 0, 1, 2, 2], 3, 2)
    check_train_split([0, 0, 1, 1, 2, 2], 3, 2, exact=True, split_shots=2)
    with pytest.raises(ValueError, match=r'the train split has 6 images \(3 in a class\) but the head holds '
                                         r'num_classes x num_shots = 2 x 2 = 4'):
        check_train_split([0, 0, 0, 1, 1, 1], 2, 2)
    with pytest.raises(ValueError, match='set model.head.num_shots and train_dataloader.dataset.num_shots'):
        check_train_split([0, 1], 2, 2, split_shots=1)
    with pytest.raises(ValueError, match=r"class 'b' \(label 1\) has no image in the train split"):
        check_train_split([0, 0, 2], 3, 2, classnames=['a', 'b', 'c'])
    with pytest.raises(ValueError, match=r"class 'c' \(label 2\) has 1 train images, fewer than num_shots=2 .*"
                                         r"exactly 2 per class: set short_classes='replace'"):
        check_train_split([0, 0, 1, 1, 2], 3, 2, exact=True, classnames=['a', 'b', 'c'])
