"""Meta-Adapter's official data protocol (``data_protocol='meta_adapter_official'``) against a plain
re-implementation of the official readers (ArsenalCheng/Meta-Adapter ``datasets/*.py``), on replicas of the
CoOp and ImageNet layouts written here; and the project's held-out queries (``query_shots``)."""
import json
import os
import os.path as osp
import random
from collections import defaultdict

import pytest

from folders import dassl_draw, write_coop_split, write_image_folder
from tip_adapter_mm.datasets import CoOpSplitDataset, FewShotImageFolder
from tip_adapter_mm.datasets.dataset_settings import COOP_DATASETS
from tip_adapter_mm.protocol import check_data_protocol
from tip_adapter_mm.settings import check_values

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

NAMES = ['alpha_one', 'beta', 'gamma', 'delta', 'epsilon', 'zeta']  # label order
BASE = ['delta', 'alpha_one', 'zeta', 'beta']  # the published lists are names in another order
NOVEL = ['gamma', 'epsilon']
# images per class and split; 'zeta' (label 5) and 'gamma' (label 2) are short in some splits
COUNTS = {'train': [9, 7, 8, 6, 9, 3], 'val': [6, 5, 2, 6, 5, 6], 'test': [7, 6, 3, 5, 8, 6]}


def _entries(split):
    """Interleaved entries (label 3 first), so that first appearance differs from label order."""
    order = [3, 0, 5, 1, 2, 4]
    out = []
    for i in range(max(COUNTS[split])):
        for label in order:
            if i < COUNTS[split][label]:
                out.append((f'{NAMES[label]}/{split}_{i}.jpg', label, NAMES[label]))
    return out


@pytest.fixture(scope='module')
def coop_root(tmp_path_factory):
    """A CoOp $DATA root with the same replica under the folders of four presets."""
    root = tmp_path_factory.mktemp('coop')
    entries = {split: _entries(split) for split in COUNTS}
    for name in ('caltech101', 'oxford_pets', 'eurosat', 'ucf101'):
        s = COOP_DATASETS[name]
        write_coop_split(osp.join(root, s['folder']), s['split_file'], s['image_dir'], entries)
    return str(root), entries


def official_coop_reader(entries, dataset, num_shots, seed):
    """The official reader's ``__init__`` (e.g. ``datasets/caltech101.py``; ``oxford_pets.py``, ``eurosat.py``,
    ``ucf101.py`` with their deviations), after ``random.seed(seed)`` in ``main.py``. Items are
    (impath, label, classname) as ``read_split`` gives them; returns the official (train, full, val)."""
    random.seed(seed)
    train, val, test = entries['train'], entries['val'], entries['test']
    few_shot_base = [item for item in train if item[2] in BASE]
    if dataset in ('oxford_pets', 'eurosat'):  # generate_fewshot_dataset(train, ...): the filter is unused
        few_shot_base = dassl_draw(train, num_shots, True)
    else:
        few_shot_base = dassl_draw(few_shot_base, num_shots, True)
    few_shot_full = dassl_draw(val, 16 if dataset == 'ucf101' else num_shots, True)
    test_novel = [item for item in test if item[2] in NOVEL]
    test_novel = dassl_draw(test if dataset == 'oxford_pets' else test_novel, num_shots, True)
    return few_shot_base, few_shot_full, test_novel


def _coop(root, dataset, split, num_shots, seed, **kw):
    return CoOpSplitDataset(data_root=root, dataset=dataset, split=split, num_shots=num_shots, seed=seed,
                            protocol='meta_adapter_official', base_classes=BASE, serialize_data=False, **kw)


@pytest.mark.parametrize('dataset', ['caltech101', 'oxford_pets', 'eurosat', 'ucf101'])
@pytest.mark.parametrize('num_shots,seed', [(4, 1), (2, 3), (16, 1)])
def test_official_lists_match_the_official_reader(coop_root, dataset, num_shots, seed):
    root, entries = coop_root
    prefix = COOP_DATASETS[dataset]['image_dir'] + '/'
    expected = official_coop_reader(entries, dataset, num_shots, seed)
    for split, official in zip(('query', 'train', 'test'), expected):
        got = _coop(root, dataset, split, num_shots, seed).split_items()
        assert got == [(prefix + p, label) for p, label, _ in official], (split, dataset)
    # the roles: the cache is sampled from the validation split, the evaluated set from the test split
    assert all('/val_' in p for p, _ in _coop(root, dataset, 'train', num_shots, seed).split_items())
    test = _coop(root, dataset, 'test', num_shots, seed).split_items()
    assert {label for _, label in test} == ({0, 1, 2, 3, 4, 5} if dataset == 'oxford_pets' else {2, 4})
    assert _coop(root, dataset, 'val', num_shots, seed).split_items() == []


def test_short_classes_are_sampled_with_replacement_and_logged(coop_root):
    root, _ = coop_root
    ds = _coop(root, 'caltech101', 'test', 4, 1)  # 'gamma' has 3 test images
    labels = [label for _, label in ds.split_items()]
    assert labels.count(2) == 4 and len({p for p, label in ds.split_items() if label == 2}) <= 3
    assert ds.metainfo['short_classes'] == {2: 3}


def test_the_default_protocol_is_unchanged_by_the_new_arguments(coop_root):
    root, _ = coop_root
    plain = CoOpSplitDataset(data_root=root, dataset='caltech101', split='train', num_shots=4, seed=1,
                             serialize_data=False)
    with_args = CoOpSplitDataset(data_root=root, dataset='caltech101', split='train', num_shots=4, seed=1,
                                 base_classes=BASE, query_shots=2, serialize_data=False)
    assert plain.split_items() == with_args.split_items()
    test = CoOpSplitDataset(data_root=root, dataset='caltech101', split='test', num_shots=4, seed=1,
                            serialize_data=False)
    assert len(test) == sum(COUNTS['test'])  # the whole test split


@pytest.fixture(scope='module')
def imagenet_root(tmp_path_factory):
    counts = {'train': [6, 5, 7, 6, 5, 6], 'val': [3, 2, 3, 3, 2, 3]}
    layout = {split: {f'n0{i}': n for i, n in enumerate(c)} for split, c in counts.items()}
    return write_image_folder(tmp_path_factory.mktemp('imagenet'), layout, size=4)


def official_imagenet_reader(root, base_idx, novel_idx, num_shots, seed):
    """The official ``datasets/imagenet.py`` ``ImageNet.__init__`` after ``random.seed(seed)``, with
    torchvision's ``ImageFolder`` listing (class folders sorted, files sorted); items (relative path, label)."""
    random.seed(seed)

    def image_folder(split):
        classes = sorted(os.listdir(osp.join(root, split)))
        return [(f'{split}/{c}/{f}', label) for label, c in enumerate(classes)
                for f in sorted(os.listdir(osp.join(root, split, c)))]

    train, full, val = image_folder('train'), image_folder('train'), image_folder('val')
    split_by_label = defaultdict(list)
    for item in train:
        split_by_label[item[1]].append(item)
    few_shot_base = defaultdict(list)
    for idx in range(6):
        if idx in base_idx:
            few_shot_base[idx] = split_by_label[idx]
    imgs = []
    for label, items in few_shot_base.items():
        imgs = imgs + random.sample(items, num_shots)
    val = [item for item in val if item[1] in novel_idx]
    split_by_label = defaultdict(list)
    for item in full:
        split_by_label[item[1]].append(item)
    imgs_full = []
    for label, items in split_by_label.items():
        imgs_full = imgs_full + random.sample(items, num_shots)
    return imgs, imgs_full, val


@pytest.mark.parametrize('seed', [1, 2])
def test_official_imagenet_lists_match_the_official_reader(imagenet_root, seed):
    base, novel = [4, 0, 2, 5], [1, 3]
    expected = official_imagenet_reader(imagenet_root, base, novel, 3, seed)
    for split, official in zip(('query', 'train', 'test'), expected):
        ds = FewShotImageFolder(data_root=imagenet_root, split=split, num_shots=3, seed=seed,
                                split_dirs=dict(train='train', val=None, test='val'),
                                protocol='meta_adapter_official', base_classes=base, serialize_data=False)
        assert ds.split_items() == official, split
    with pytest.raises(ValueError, match='fewer than the 6'):  # random.sample raises: so does the project
        FewShotImageFolder(data_root=imagenet_root, split='train', num_shots=6, seed=1,
                           split_dirs=dict(train='train', val=None, test='val'),
                           protocol='meta_adapter_official', base_classes=base, serialize_data=False)


def test_held_out_queries(imagenet_root, coop_root):
    """``query_shots``: base-class queries outside the K-shot sample and the held-out validation split."""
    kw = dict(data_root=imagenet_root, num_shots=2, seed=1, split_dirs=dict(train='train', val=None, test='val'),
              base_classes=[0, 1, 2], serialize_data=False)
    cache = set(FewShotImageFolder(split='train', **kw).split_items())
    val = set(FewShotImageFolder(split='val', val_shots=1, **kw).split_items())
    queries = FewShotImageFolder(split='query', query_shots=2, val_shots=1, **kw).split_items()
    assert len(queries) == 6 and {label for _, label in queries} == {0, 1, 2}
    assert not set(queries) & cache and not set(queries) & val
    # by default the queries are the base-class images of the sample
    default = FewShotImageFolder(split='query', **kw).split_items()
    assert set(default) == {item for item in cache if item[1] in (0, 1, 2)}
    with pytest.raises(ValueError, match='needs base_classes'):
        FewShotImageFolder(split='query', **dict(kw, base_classes=None))
    with pytest.raises(ValueError, match='query_shots'):
        FewShotImageFolder(split='query', query_shots=0, **kw)


def test_protocol_settings_are_checked():
    with pytest.raises(ValueError, match="hp_selection must be one of \\('legacy_test', 'none'\\)"):
        check_data_protocol('meta_adapter_official', 'full_val')
    check_data_protocol('meta_adapter_official', 'legacy_test')
    check_data_protocol('default', 'fewshot_val')
    with pytest.raises(ValueError, match='data_protocol must be one of'):
        check_values({'data_protocol': 'official'})
    with pytest.raises(ValueError, match='query_shots must be None or an integer >= 1'):
        check_values({'query_shots': 0})


@pytest.mark.parametrize('name', ['caltech101', 'dtd', 'eurosat', 'fgvc_aircraft', 'imagenet', 'oxford_pets',
                                  'sun397', 'ucf101'])
def test_official_configs(name):
    """Each of the 8 datasets has a config of Meta-Adapter's official protocol, by name."""
    from mmengine.config import Config

    from tip_adapter_mm.settings import check_consistency
    cfg = Config.fromfile(osp.join(ROOT, f'configs/meta_adapter_{name}_16shot_official.py'))
    check_consistency(cfg)
    assert cfg.data_protocol == 'meta_adapter_official' and cfg.hp_selection == 'legacy_test'
    assert cfg.train_cfg.precision == 'official_fp16'
    assert cfg.base_classes == f'meta_adapter/{name}'
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[key].dataset.protocol == 'meta_adapter_official'
    resize = cfg.test_dataloader.dataset.pipeline[1]
    assert resize['interpolation'] == ('bilinear' if name == 'imagenet' else 'bicubic')


@pytest.mark.slow
def test_official_protocol_run_on_the_demo(demo_assets, tmp_path):
    """A run under the official protocol: the cache from validation images, the evaluated set K per novel class
    of test, the epoch on test, all recorded; the default run of the same config is unchanged."""
    from conftest import read_results, run_train
    run_train('configs/meta_adapter_digits_16shot.py', tmp_path, demo_assets, data_protocol='meta_adapter_official',
              hp_selection='legacy_test', max_epochs=2)
    res = read_results(tmp_path)
    assert res['data_protocol'] == 'meta_adapter_official' and res['selection_split'] == 'test (legacy)'
    split = json.loads((tmp_path / 'fewshot_split.json').read_text())
    assert split['protocol'] == 'meta_adapter_official'
    assert all(p.startswith('val/') for p, _ in split['train'])  # the supports: validation images
    assert all(p.startswith('train/') and label < 7 for p, label in split['query'])
    assert sorted({label for _, label in split['test']}) == [7, 8, 9] and len(split['test']) == 48
    assert res.get('test_base_top1') is None and res['test_novel_top1'] == pytest.approx(res['test_top1'])
    with pytest.raises(Exception, match='hp_selection must be one of'):
        run_train('configs/meta_adapter_digits_16shot.py', tmp_path / 'refused', demo_assets,
                  data_protocol='meta_adapter_official')
    assert not (tmp_path / 'refused').exists()
