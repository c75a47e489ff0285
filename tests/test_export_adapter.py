"""Portable, safe adapter files (issue 12): ``tools/export_adapter.py`` writes the head of a trained run to
safetensors with a JSON header, and ``load_adapter`` rebuilds mmpretrain's inferencer from it without
unpickling anything; its predictions are those of the checkpoint it came from."""
import glob
import json
import os
import os.path as osp
import struct
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, run_checkpoint, run_config

RUNS = ('tip_run', 'meta_run')
#: the head tensors each method's file holds
HEAD_KEYS = {
    'tip_run': {'head.clip_weights', 'head.cache_keys', 'head.cache_labels', 'head.alpha', 'head.beta',
                'head.cache_ready'},
    'meta_run': {'head.clip_weights', 'head.support', 'head.cache_ready', 'head.base_mask', 'head.q_proj.weight',
                 'head.k_proj.weight', 'head.alpha_proj.weight', 'head.alpha_proj.bias'},
}
HEADER_KEYS = {'format', 'format_version', 'method', 'model', 'test_pipeline', 'classes', 'templates', 'feat_dim',
               'num_classes', 'run_identity', 'tensors', 'hp_selection'}


def _test_images(assets):
    digits, _ = assets
    paths = sorted(glob.glob(osp.join(digits, 'test', '*', '*.png')))
    assert paths
    return paths


def _scores(inferencer, paths):
    """The model's logits (mode='tensor') and pred_score (mode='predict') on the inferencer's preprocessed
    batch of ``paths``, and the batch itself."""
    data = next(iter(inferencer.preprocess(paths, batch_size=len(paths))))
    model = inferencer.model
    with torch.no_grad():
        batch = model.data_preprocessor(data, False)
        logits = model(batch['inputs'], mode='tensor')
        preds = model(batch['inputs'], batch['data_samples'], mode='predict')
    return batch['inputs'], logits, torch.stack([p.pred_score for p in preds])


def _export(run, request, tmp_path, name='adapter.safetensors'):
    from tip_adapter_mm.cli.export_adapter import main
    work_dir = request.getfixturevalue(run)[0]
    out = str(tmp_path / name)
    assert main([run_checkpoint(work_dir), out]) == 0
    return work_dir, out


def _no_leftovers(folder):
    return [n for n in os.listdir(str(folder)) if n.endswith('.tmp')]


@pytest.mark.slow
@pytest.mark.parametrize('run', RUNS)
def test_exported_adapter_predicts_as_checkpoint(run, demo_assets, request, tmp_path):
    """export -> load_adapter gives bit-identical logits and scores to build_inferencer(config, checkpoint)."""
    from tip_adapter_mm.apis.export import load_adapter
    from tip_adapter_mm.apis.inference import build_inferencer

    work_dir, out = _export(run, request, tmp_path)
    paths = _test_images(demo_assets)
    reference = build_inferencer(run_config(work_dir), run_checkpoint(work_dir), device='cpu')
    loaded = load_adapter(out)
    assert tuple(loaded.classes) == tuple(reference.classes)
    assert len(loaded.classes) == 10
    ref_inputs, ref_logits, ref_scores = _scores(reference, paths)
    inputs, logits, scores = _scores(loaded, paths)
    assert torch.equal(inputs, ref_inputs)  # the header's test pipeline preprocesses as the run's config
    assert logits.shape == (len(paths), 10)
    assert torch.equal(logits, ref_logits), (logits - ref_logits).abs().max()
    assert torch.equal(scores, ref_scores)
    # and through the inferencer's own call
    first = loaded(paths[:4])
    expected = reference(paths[:4])
    for a, b in zip(first, expected):
        assert a['pred_label'] == b['pred_label'] and a['pred_class'] == b['pred_class']
        assert (abs(a['pred_scores'] - b['pred_scores'])).max() == 0
    # every head tensor went through the file unchanged
    ref_state = reference.model.state_dict()
    loaded_state = loaded.model.state_dict()
    assert set(loaded_state) == set(ref_state) == HEAD_KEYS[run]
    for key in ref_state:
        assert loaded_state[key].dtype == ref_state[key].dtype and torch.equal(loaded_state[key], ref_state[key])


@pytest.mark.slow
@pytest.mark.parametrize('run', RUNS)
def test_adapter_file_is_safetensors_without_pickle(run, request, tmp_path):
    """The file is the safetensors layout and nothing else (8-byte length, JSON, raw tensor bytes), and its
    header parses as JSON with the model config, pipeline, classes and identity."""
    from safetensors import safe_open

    from tip_adapter_mm.utils.checkpoint import safe_load

    work_dir, out = _export(run, request, tmp_path)
    with open(out, 'rb') as f:
        raw = f.read()
    (size, ) = struct.unpack('<Q', raw[:8])
    layout = json.loads(raw[8:8 + size].decode('utf-8'))
    end = max(entry['data_offsets'][1] for key, entry in layout.items() if key != '__metadata__')
    assert len(raw) == 8 + size + end  # no byte outside the tensors and the JSON header
    assert set(layout) - {'__metadata__'} == HEAD_KEYS[run]

    with safe_open(out, framework='pt', device='cpu') as f:
        header = json.loads(f.metadata()['tip_adapter_mm'])
        keys = set(f.keys())
        clip_weights = f.get_tensor('head.clip_weights')
    assert keys == HEAD_KEYS[run]
    assert HEADER_KEYS <= set(header)
    checkpoint = safe_load(run_checkpoint(work_dir), mmap=True)
    meta = checkpoint['meta']
    assert header['format'] == 'tip_adapter_mm.adapter' and header['format_version'] == 1
    assert header['method'] == {'tip_run': 'Tip-Adapter', 'meta_run': 'Meta-Adapter'}[run]
    assert header['run_identity'] == meta['run_identity']
    assert header['feat_dim'] == meta['run_identity']['feat_dim'] == clip_weights.shape[1] == 64
    assert header['classes'] == list(meta['dataset_meta']['classes'])
    assert header['templates'] == list(meta['dataset_meta']['templates'])
    assert header['model']['backbone']['model_name'] == 'tiny-clip'
    assert header['model']['head']['type'] == {'tip_run': 'CacheHead', 'meta_run': 'MetaAdapterHead'}[run]
    assert header['model']['data_preprocessor']['type'] == 'CLIPDataPreprocessor'
    assert [t['type'] for t in header['test_pipeline']][-1] == 'PackInputs'
    assert header['hp_selection'] in ('full_val', 'fewshot_val', 'none', 'legacy_test')
    assert torch.equal(clip_weights, checkpoint['state_dict']['head.clip_weights'])


@pytest.mark.slow
def test_adapter_for_another_backbone_is_refused(tip_run, request, tmp_path):
    """Loading with another CLIP (RN50, embed dim 1024) or other weights is a ValueError naming both; so is a
    file whose tensors do not have the header's feature size."""
    from safetensors.torch import save_file

    from tip_adapter_mm.apis.export import load_adapter, read_adapter

    _, out = _export('tip_run', request, tmp_path)
    with pytest.raises(ValueError) as info:
        load_adapter(out, model_name='RN50')
    message = str(info.value)
    assert "'tiny-clip'" in message and "'RN50'" in message and '64' in message and '1024' in message

    with pytest.raises(ValueError, match=r"tiny_clip\.pt.*other_clip\.pt"):
        load_adapter(out, pretrained=str(tmp_path / 'other_clip.pt'))

    header, tensors = read_adapter(out)
    header['feat_dim'] = 32
    bad = str(tmp_path / 'bad.safetensors')
    save_file(tensors, bad, metadata={'tip_adapter_mm': json.dumps(header)})
    with pytest.raises(ValueError, match=r'feature size 32'):
        load_adapter(bad)


@pytest.mark.slow
def test_export_errors_write_nothing(tip_run, tmp_path, capsys):
    """A bad extension, an existing output without --force and a checkpoint that is not a torch file are
    clear errors (exit status 2) that write nothing; --force overwrites."""
    from tip_adapter_mm.apis.export import export_adapter
    from tip_adapter_mm.cli.export_adapter import main
    from tip_adapter_mm.utils.checkpoint import CheckpointError

    checkpoint = run_checkpoint(tip_run[0])
    out_dir = tmp_path / 'out'
    out_dir.mkdir()

    bad_ext = str(out_dir / 'adapter.pth')
    assert main([checkpoint, bad_ext]) == 2
    assert '.safetensors' in capsys.readouterr().err
    with pytest.raises(ValueError, match=r'\.safetensors'):
        export_adapter(checkpoint, bad_ext)
    assert os.listdir(str(out_dir)) == []

    existing = out_dir / 'adapter.safetensors'
    existing.write_bytes(b'keep me')
    assert main([checkpoint, str(existing)]) == 2
    assert '--force' in capsys.readouterr().err
    with pytest.raises(FileExistsError):
        export_adapter(checkpoint, str(existing))
    assert existing.read_bytes() == b'keep me'

    not_torch = tmp_path / 'not_a_checkpoint.pth'
    not_torch.write_text('this is not a torch file\n')
    target = out_dir / 'new.safetensors'
    assert main([str(not_torch), str(target)]) == 2
    assert 'not_a_checkpoint.pth' in capsys.readouterr().err
    with pytest.raises(CheckpointError, match='not_a_checkpoint.pth'):
        export_adapter(str(not_torch), str(target))
    assert sorted(os.listdir(str(out_dir))) == ['adapter.safetensors']
    assert not _no_leftovers(out_dir)

    assert main([checkpoint, str(existing), '--force']) == 0
    assert existing.read_bytes()[:8] != b'keep me'
    assert sorted(os.listdir(str(out_dir))) == ['adapter.safetensors']


@pytest.mark.slow
def test_tools_script_and_config_option(meta_run, tmp_path):
    """``python tools/export_adapter.py CHECKPOINT OUT --config CONFIG`` writes the same tensors, and the config
    text stored in the checkpoint parses (without running it) to the config mmengine would read."""
    from mmengine.config import Config

    from tip_adapter_mm.apis.export import parse_config_text, read_adapter
    from tip_adapter_mm.utils.checkpoint import safe_load

    work_dir = meta_run[0]
    checkpoint = run_checkpoint(work_dir)
    out = str(tmp_path / 'meta.safetensors')
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'export_adapter.py'), checkpoint, out,
                           '--config', run_config(work_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'written to' in proc.stdout
    header, tensors = read_adapter(out)
    state = safe_load(checkpoint)
    assert set(tensors) == HEAD_KEYS['meta_run']
    assert all(torch.equal(tensors[k], state['state_dict'][k]) for k in tensors)
    text = state['meta']['cfg']
    assert parse_config_text(text).to_dict() == Config.fromstring(text, '.py').to_dict()
    assert header['model'] == json.loads(json.dumps(Config.fromfile(run_config(work_dir)).model.to_dict()))


def test_config_text_that_runs_code_is_refused():
    """The stored config text is parsed, never executed: anything but literal assignments is refused."""
    from tip_adapter_mm.apis.export import parse_config_text

    text = "model = dict(type='ImageClassifier', head=dict(topk=(1, 5), x=-1.5))\nn = [1, {'a': None}]"
    cfg = parse_config_text(text)
    assert cfg.model.head.topk == (1, 5) and cfg.model.head.x == -1.5 and cfg.n == [1, {'a': None}]
    for text in ("import os\nx = 1", "x = __import__('os').system('true')", "x = dict(**y)", 'x = 1 +'):
        with pytest.raises(ValueError):
            parse_config_text(text)


def test_safetensors_without_header_is_refused(tmp_path):
    """A safetensors file that export_adapter did not write, and a file that is not safetensors, are refused
    with a message naming the file."""
    from safetensors.torch import save_file

    from tip_adapter_mm.apis.export import load_adapter

    plain = str(tmp_path / 'plain.safetensors')
    save_file({'head.clip_weights': torch.zeros(2, 4)}, plain)
    with pytest.raises(ValueError, match='plain.safetensors.*without'):
        load_adapter(plain)
    junk = tmp_path / 'junk.safetensors'
    junk.write_bytes(b'\x80\x02not safetensors')
    with pytest.raises(ValueError, match='junk.safetensors'):
        load_adapter(str(junk))
    with pytest.raises(FileNotFoundError):
        load_adapter(str(tmp_path / 'missing.safetensors'))


@pytest.mark.slow
def test_infer_tool_takes_the_adapter_file_alone(tip_run, demo_assets, request, tmp_path):
    """``tools/infer.py ADAPTER.safetensors INPUT ...`` (no config, no checkpoint) writes the predictions that
    ``tools/infer.py CONFIG CHECKPOINT INPUT ...`` writes."""
    from tip_adapter_mm.cli.infer import main as infer
    work_dir, out = _export('tip_run', request, tmp_path)
    folder = osp.join(demo_assets[0], 'test', '7')
    assert infer([out, folder, '--out', str(tmp_path / 'a.json')]) == 0
    assert infer([run_config(work_dir), run_checkpoint(work_dir), folder, '--out', str(tmp_path / 'b.json')]) == 0
    a, b = (json.loads((tmp_path / name).read_text()) for name in ('a.json', 'b.json'))
    assert a['predictions'] == b['predictions'] and len(a['predictions']) == len(os.listdir(folder))
