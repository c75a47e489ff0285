"""train_cfg.precision='official_fp16': the official code's pure-fp16 training (parameters, gradients and AdamW
states in fp16, eps 1e-4, no master weights, no loss scaling), reproduced on the CPU."""
import os.path as osp

import pytest
import torch

from conftest import KEEP_ALL, run_train

pytestmark = pytest.mark.slow


def _state(work_dir, name):
    return torch.load(osp.join(str(work_dir), name), weights_only=True)


def _moved(work_dir, key, last):
    first, end = _state(work_dir, 'epoch_1.pth')['state_dict'], _state(work_dir, f'epoch_{last}.pth')['state_dict']
    return (end[key].float() - first[key].float()).abs().max().item()


@pytest.mark.parametrize('config, key, epochs', [('configs/meta_adapter_digits_16shot.py', 'head.q_proj.weight', 3),
                                                 ('configs/tip_f_digits_16shot.py', 'head.cache_keys', 3)])
def test_official_fp16_trains_in_fp16_with_underflowing_second_moments(demo_assets, tmp_path, config, key, epochs):
    fp32 = run_train(config, tmp_path / 'fp32', demo_assets, max_epochs=epochs, **KEEP_ALL)
    fp16 = run_train(config, tmp_path / 'fp16', demo_assets, max_epochs=epochs,
                     **{'train_cfg.precision': 'official_fp16'}, **KEEP_ALL)
    assert (fp32['train_precision'], fp16['train_precision']) == ('fp32', 'official_fp16')
    ckpt = _state(tmp_path / 'fp16', f'epoch_{epochs}.pth')
    assert ckpt['state_dict'][key].dtype == torch.float16
    second = [s['exp_avg_sq'] for s in ckpt['optimizer']['state'].values() if s['exp_avg_sq'].dim() == 2]
    assert second and all(s.dtype == torch.float16 for s in second)
    underflow = sum(int((s == 0).sum()) for s in second) / sum(s.numel() for s in second)
    ref = [s['exp_avg_sq'] for s in _state(tmp_path / 'fp32', f'epoch_{epochs}.pth')['optimizer']['state'].values()
           if s['exp_avg_sq'].dim() == 2]
    assert all(s.dtype == torch.float32 for s in ref)
    # second moments below fp16's smallest subnormal (6e-8) are 0 in fp16: the fraction depends on the data
    tiny = sum(int((s < 6e-8).sum()) for s in ref) / sum(s.numel() for s in ref)
    assert underflow > 0 and abs(underflow - tiny) < 0.1, (underflow, tiny)
    if key == 'head.q_proj.weight':  # on the demo Meta-Adapter's are nearly all 0: its steps are far larger
        assert underflow > 0.5
        assert _moved(tmp_path / 'fp16', key, epochs) > 3 * _moved(tmp_path / 'fp32', key, epochs)
    # the head is fp32 again for the selection, the search and the test
    assert _state(tmp_path / 'fp16', 'final.pth')['state_dict'][key].dtype == torch.float32
    assert fp16['test_top1'] is not None


def test_unknown_precision_is_refused(demo_assets, tmp_path):
    with pytest.raises(ValueError, match=r"train_cfg.precision must be one of \('fp32', 'official_fp16'\)"):
        run_train('configs/tip_f_digits_16shot.py', tmp_path / 'wd', demo_assets, max_epochs=1,
                  **{'train_cfg.precision': 'fp16'})
    assert not (tmp_path / 'wd').exists()  # refused before anything is written
