"""The hp_selection modes: what alpha, beta and the epoch are chosen on."""
import pytest

from conftest import run_train

pytestmark = pytest.mark.slow  # end-to-end runs on the demo


def test_full_val_is_the_default_of_the_demo(tip_run):
    _, res = tip_run
    assert res['hp_selection'] == 'full_val' and res['selection_split'] == 'val' and res['val_size'] == 200


def test_fewshot_val_uses_min_k_4_per_class(demo_assets, tmp_path):
    res = run_train('configs/tip_digits_16shot.py', tmp_path, demo_assets, hp_selection='fewshot_val')
    assert res['val_size'] == 10 * 4 and res['selection_split'] == 'val'


def test_none_keeps_the_configured_values(demo_assets, tmp_path):
    res = run_train('configs/tip_digits_16shot.py', tmp_path, demo_assets, hp_selection='none')
    assert (res['alpha'], res['beta'], res['selection_split']) == (10., 10., 'none')
    tipf = run_train('configs/tip_f_digits_16shot.py', tmp_path / 'f', demo_assets, hp_selection='none',
                     max_epochs=3)
    assert tipf['selected_epoch'] == 3 and tipf['selection_split'] == 'none'
    assert (tipf['alpha'], tipf['beta']) == (10., 10.)


@pytest.mark.parametrize('config', ['configs/tip_digits_16shot.py', 'configs/tip_f_digits_16shot.py'])
def test_legacy_test_is_labelled(demo_assets, tmp_path, config):
    res = run_train(config, tmp_path, demo_assets, hp_selection='legacy_test', max_epochs=2)
    assert res['selection_split'] == 'test (legacy)' and res['hp_selection'] == 'legacy_test'
    assert res['val_size'] == res['test_size']  # tuned on the test images
    if 'tip_f' in config:
        assert res['epoch_top1_split'] == 'test'


def test_unknown_mode_is_an_error(demo_assets, tmp_path):
    with pytest.raises(ValueError, match=r"hp_selection must be one of .*got 'test'"):
        run_train('configs/tip_digits_16shot.py', tmp_path, demo_assets, hp_selection='test')


def test_split_file_of_a_run_reproduces_it(tip_run, demo_assets, tmp_path):
    import json
    import os.path as osp
    work_dir, res = tip_run
    split_file = osp.join(str(work_dir), 'fewshot_split.json')
    again = run_train('configs/tip_digits_16shot.py', tmp_path / 'same', demo_assets,
                      fewshot_split_file=split_file)
    for key in ('alpha', 'beta', 'val_top1', 'test_top1'):
        assert again[key] == res[key], key
    # the file wins over the sampling seed: the lists stay those of the file
    run_train('configs/tip_digits_16shot.py', tmp_path / 'other', demo_assets, fewshot_seed=2,
              fewshot_split_file=split_file)
    original, read_back = (json.load(open(osp.join(str(d), 'fewshot_split.json')))
                           for d in (work_dir, tmp_path / 'other'))
    assert read_back['train'] == original['train'] and read_back['val'] == original['val']
    fresh = run_train('configs/tip_digits_16shot.py', tmp_path / 'seed2', demo_assets, fewshot_seed=2)
    assert json.load(open(osp.join(str(tmp_path / 'seed2'), 'fewshot_split.json')))['train'] != original['train']
    assert fresh['seed'] == 2
