"""FewShotImageFolder on small replicas of the ImageNet folder layout."""

import pytest
from mmengine.registry import init_default_scope

from folders import dassl_fewshot, write_image_folder
from tip_adapter_mm.datasets import FewShotImageFolder

init_default_scope('mmpretrain')
IMAGENET_DIRS = dict(train='train', val=None, test='val')


@pytest.fixture(scope='module')
def tiny_imagenet(tmp_path_factory):
    counts = {f'n{i:08d}': 9 + i % 4 for i in range(6)}
    return write_image_folder(tmp_path_factory.mktemp('imagenet'),
                              {'train': counts, 'val': {c: 3 for c in counts}})


def _build(root, split, **kw):
    kw.setdefault('num_shots', 4)
    kw.setdefault('split_dirs', IMAGENET_DIRS)
    return FewShotImageFolder(data_root=root, split=split, **kw)


@pytest.mark.parametrize('seed', [1, 2, 3])
def test_train_split_matches_dassl_sampling(tiny_imagenet, seed):
    ds = _build(tiny_imagenet, 'train', seed=seed)
    every = _build(tiny_imagenet, 'train', num_shots=None).split_items()
    assert ds.split_items() == dassl_fewshot(every, 4, seed)
    assert ds.metainfo['classes'] == tuple(sorted(f'n{i:08d}' for i in range(6)))  # folder names by default
    assert _build(tiny_imagenet, 'train', seed=seed).split_items() == ds.split_items()  # deterministic


def test_held_out_validation_is_disjoint_from_cache(tiny_imagenet):
    train = set(_build(tiny_imagenet, 'train', seed=1).split_items())
    val = _build(tiny_imagenet, 'val', seed=1).split_items()
    assert len(val) == 6 * 4 and not train & set(val)  # min(K, 4) per class
    assert all(p.startswith('train/') for p, _ in val)
    assert len(_build(tiny_imagenet, 'val', num_shots=2, seed=1)) == 6 * 2
    assert len(_build(tiny_imagenet, 'val', seed=1, val_shots=3)) == 6 * 3
    assert val != _build(tiny_imagenet, 'val', seed=2).split_items()


def test_test_split_is_the_val_folder(tiny_imagenet):
    test = _build(tiny_imagenet, 'test')
    assert len(test) == 18 and all(p.startswith('val/') for p, _ in test.split_items())
    assert test.get_data_info(0)['img_path'].startswith(tiny_imagenet)


def test_prompt_names_and_templates_in_metainfo(tiny_imagenet):
    ds = _build(tiny_imagenet, 'train', classnames=['a', 'b', 'c', 'd', 'e', 'f'],
                templates=['itap of a {}.', 'a {} in a video game.'])
    assert ds.metainfo['classes'] == ('a', 'b', 'c', 'd', 'e', 'f')
    assert ds.metainfo['templates'] == ('itap of a {}.', 'a {} in a video game.')
    with pytest.raises(ValueError, match=r'has 6 classes but 5 class names'):
        _build(tiny_imagenet, 'train', classnames=['a', 'b', 'c', 'd', 'e'])
    with pytest.raises(ValueError, match='must contain'):
        _build(tiny_imagenet, 'train', templates=['no placeholder'])


def test_imagenet_layout_with_builtin_names(tmp_path):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    wnids = [f'n{i:08d}' for i in range(1000)]
    root = write_image_folder(tmp_path, {'train': {w: 2 for w in wnids}, 'val': {w: 1 for w in wnids}}, size=4)
    ds = _build(root, 'train', num_shots=1, classnames='imagenet', templates='imagenet')
    assert ds.metainfo['classes'] == tuple(IMAGENET_CLASSNAMES) and len(ds) == 1000
    assert len(ds.metainfo['templates']) == 7 and ds.metainfo['templates'][0] == 'itap of a {}.'
    assert len(_build(root, 'val', num_shots=1, classnames='imagenet')) == 1000
    assert len(_build(root, 'test', num_shots=1, classnames='imagenet')) == 1000


def test_missing_root_and_split_are_clear_errors(tiny_imagenet, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data root '.*nowhere' does not exist.*<split>/<class>"):
        _build(str(tmp_path / 'nowhere'), 'train')
    with pytest.raises(FileNotFoundError, match=r"split folder '.*missing'.*test split"):
        _build(tiny_imagenet, 'test', split_dirs=dict(train='train', val=None, test='missing'))


def test_class_with_too_few_images(tmp_path):
    root = write_image_folder(tmp_path, {'train': {'cat': 5, 'dog': 2}, 'val': {'cat': 1, 'dog': 1}})
    with pytest.raises(ValueError, match=r"class 'dog' \(label 1\) has 2 usable images in .*fewer than the 4"):
        _build(root, 'train', classnames=['cat', 'dog'])
    ds = _build(root, 'train', allow_replacement=True)  # as the official code: random.choices
    items = ds.split_items()
    assert len(items) == 8 and {p for p, lab in items if lab == 1} <= {'train/dog/dog_0000.JPEG',
                                                                         'train/dog/dog_0001.JPEG'}
    assert items == dassl_fewshot(_build(root, 'train', num_shots=None).split_items(), 4, 1)


def test_split_folders_must_have_the_same_classes(tmp_path):
    root = write_image_folder(tmp_path, {'train': {'cat': 2, 'dog': 2}, 'val': {'cat': 1, 'cow': 1}})
    with pytest.raises(ValueError, match=r"missing \['dog'\], unexpected \['cow'\]"):
        _build(root, 'test', num_shots=1)
