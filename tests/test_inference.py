"""Classifying new images with a trained adapter: mmpretrain's own APIs (``ImageClassificationInferencer``,
``get_model``) on the project's configs and checkpoints, and ``tools/infer.py`` over them. The accuracy of every
path on the demo's test images is the ``test_top1`` of the run that saved the checkpoint."""
import csv
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, demo_options, run_checkpoint, run_config

RUNS = ('tip_run', 'meta_run')


def _dataset_meta(checkpoint: str) -> dict:
    from tip_adapter_mm.utils.checkpoint import safe_load
    return safe_load(checkpoint, mmap=True)['meta']['dataset_meta']


def _test_images(assets):
    """The demo's test images and their labels (the class index of their folder)."""
    digits, _ = assets
    paths = sorted(glob.glob(osp.join(digits, 'test', '*', '*.png')))
    folders = [osp.basename(osp.dirname(p)) for p in paths]
    return paths, folders


def _top1(config, checkpoint, scores, labels) -> float:
    """The top-1 accuracy of ``scores`` as the run computed its test_top1: with the config's test evaluator."""
    from mmengine.config import Config
    from mmpretrain.registry import METRICS
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    metric = METRICS.build(cfg.test_evaluator)
    metric.dataset_meta = _dataset_meta(checkpoint)
    metric.process(None, [dict(pred_score=torch.as_tensor(s), gt_label=int(y)) for s, y in zip(scores, labels)])
    return metric.evaluate(len(labels))['accuracy/top1']


def _labels(folders, checkpoint):
    class_folders = list(_dataset_meta(checkpoint)['class_folders'])
    return [class_folders.index(folder) for folder in folders]


@pytest.mark.slow
@pytest.mark.parametrize('run', RUNS)
def test_mmpretrain_apis_reproduce_test_top1(run, demo_assets, request):
    """ImageClassificationInferencer(model=CONFIG, pretrained=CHECKPOINT), get_model(CONFIG, CHECKPOINT) and the
    project's predict_files give the run's test_top1 on the demo's test images, with the checkpoint's classes."""
    from mmpretrain.apis import ImageClassificationInferencer, get_model

    from tip_adapter_mm.apis import predict_files

    work_dir, results = request.getfixturevalue(run)[:2]
    config, checkpoint = run_config(work_dir), run_checkpoint(work_dir)
    paths, folders = _test_images(demo_assets)
    assert len(paths) == results['test_size']
    labels = _labels(folders, checkpoint)
    classes = tuple(_dataset_meta(checkpoint)['classes'])
    assert len(classes) == 10

    inferencer = ImageClassificationInferencer(model=config, pretrained=checkpoint, device='cpu')
    assert tuple(inferencer.classes) == classes
    preds = inferencer(paths, batch_size=64)
    # results.json holds 6 significant digits
    assert results['test_top1'] == pytest.approx(_top1(config, checkpoint, [p['pred_scores'] for p in preds], labels),
                                                 rel=1e-5)
    assert all(p['pred_class'] == classes[p['pred_label']] for p in preds)

    # get_model + the inferencer on that model: what mmpretrain's inference_model builds (see the report: in
    # mmpretrain 1.2.0 inference_model itself only accepts model-zoo models)
    model = get_model(config, pretrained=checkpoint, device='cpu')
    assert tuple(model._dataset_meta['classes']) == classes
    from_model = ImageClassificationInferencer(model)(paths, batch_size=64)
    assert [p['pred_label'] for p in from_model] == [p['pred_label'] for p in preds]

    results_files, failures = predict_files(config, checkpoint, paths, topk=3, batch_size=64, device='cpu')
    assert failures == []
    assert [r['file'] for r in results_files] == paths
    assert [r['pred_label'] for r in results_files] == [p['pred_label'] for p in preds]
    scores = np.stack([p['pred_scores'] for p in preds])
    for result, row in zip(results_files, scores):
        assert [t['label'] for t in result['topk']] == list(np.argsort(-row, kind='stable')[:3])
        assert result['pred_score'] == pytest.approx(float(row.max()), abs=1e-6)


def _write_bad_folder(assets, folder):
    """The demo's test images (in their class folders) plus a corrupt .png and a non-image .txt."""
    digits, _ = assets
    shutil.copytree(osp.join(digits, 'test'), folder)
    with open(osp.join(folder, '3', 'corrupt.png'), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + b'not really a png' * 4)
    with open(osp.join(folder, 'notes.txt'), 'w') as f:
        f.write('not an image\n')
    return osp.join(folder, '3', 'corrupt.png'), osp.join(folder, 'notes.txt')


def _infer(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    return subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'infer.py'), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_infer_tool_reports_bad_files_and_writes_json_and_csv(tip_run, demo_assets, tmp_path):
    """tools/infer.py on a folder with a corrupt image and a text file: both named and counted, exit status 1,
    the other files predicted exactly as by ImageClassificationInferencer, in JSON and CSV."""
    from mmpretrain.apis import ImageClassificationInferencer

    work_dir, results = tip_run
    config, checkpoint = run_config(work_dir), run_checkpoint(work_dir)
    folder = str(tmp_path / 'images')
    corrupt, notes = _write_bad_folder(demo_assets, folder)
    good = sorted(glob.glob(osp.join(folder, '*', '*.png')))
    good.remove(corrupt)
    assert len(good) == results['test_size']

    out_json = tmp_path / 'out' / 'preds.json'
    proc = _infer(config, checkpoint, folder, '--out', out_json, '--topk', 3, '--batch-size', 64, '--device', 'cpu')
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert corrupt in proc.stderr and notes in proc.stderr
    assert f'classified {len(good)} of {len(good) + 2} input file(s); 2 failed' in proc.stdout
    assert 'top-3' in proc.stdout.splitlines()[0] and good[0] in proc.stdout
    with open(out_json) as f:
        record = json.load(f)
    assert (record['num_inputs'], record['num_predicted'], record['num_failed']) == (len(good) + 2, len(good), 2)
    assert sorted(f['file'] for f in record['failures']) == sorted([corrupt, notes])
    assert record['classes'] == list(_dataset_meta(checkpoint)['classes'])
    predictions = record['predictions']
    assert sorted(p['file'] for p in predictions) == good
    assert not [p for p in os.listdir(out_json.parent) if p != 'preds.json']  # no temporary left

    reference = ImageClassificationInferencer(model=config, pretrained=checkpoint, device='cpu')
    expected = dict(zip([p['file'] for p in predictions],
                        reference([p['file'] for p in predictions], batch_size=64)))
    for p in predictions:
        assert p['pred_label'] == expected[p['file']]['pred_label']
        assert p['pred_class'] == expected[p['file']]['pred_class']
        assert p['pred_score'] == pytest.approx(expected[p['file']]['pred_score'], abs=1e-6)
        assert len(p['topk']) == 3 and p['topk'][0]['label'] == p['pred_label']

    out_csv = tmp_path / 'preds.csv'
    proc = _infer(config, checkpoint, folder, '--out', out_csv, '--topk', 2, '--batch-size', 64, '--device', 'cpu')
    assert proc.returncode == 1
    with open(out_csv, newline='') as f:
        rows = list(csv.DictReader(f))
    ok = {r['file']: r for r in rows if r['status'] == 'ok'}
    failed = {r['file']: r['error'] for r in rows if r['status'] == 'failed'}
    assert sorted(ok) == good and sorted(failed) == sorted([corrupt, notes]) and all(failed.values())
    assert 'top2_class' in rows[0] and 'top3_class' not in rows[0]
    for file, row in ok.items():
        assert int(row['top1_label']) == expected[file]['pred_label']
        assert row['top1_class'] == expected[file]['pred_class']
        assert float(row['top1_score']) == pytest.approx(expected[file]['pred_score'], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('run', RUNS)
def test_class_names_come_from_the_checkpoint(run, demo_assets, request, tmp_path):
    """The repository's config with every data_root pointing nowhere: mmpretrain's inferencer and predict_files
    classify with the checkpoint's class names, and read no dataset."""
    from mmengine.config import Config, DictAction
    from mmpretrain.apis import ImageClassificationInferencer

    from tip_adapter_mm.apis import predict_files

    work_dir, results = request.getfixturevalue(run)[:2]
    checkpoint = run_checkpoint(work_dir)
    nowhere = str(tmp_path / 'no_such_data')
    options = dict(o.split('=', 1) for o in demo_options(demo_assets))
    options = {k: DictAction._parse_iterable(v) for k, v in options.items() if k.startswith('model.')}
    options.update({f'{loader}.dataset.data_root': nowhere
                    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')}, data_root=nowhere)
    config = {'tip_run': 'configs/tip_digits_16shot.py', 'meta_run': 'configs/meta_adapter_digits_16shot.py'}[run]
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.merge_from_dict(options)
    classes = tuple(_dataset_meta(checkpoint)['classes'])

    paths, folders = _test_images(demo_assets)
    inferencer = ImageClassificationInferencer(model=cfg, pretrained=checkpoint, device='cpu')
    assert tuple(inferencer.classes) == classes
    preds = inferencer(paths, batch_size=128)
    top1 = _top1(cfg, checkpoint, [p['pred_scores'] for p in preds], _labels(folders, checkpoint))
    assert results['test_top1'] == pytest.approx(top1, rel=1e-5)  # results.json: 6 significant digits

    found, failures = predict_files(osp.join(ROOT, config), checkpoint, paths[::50], batch_size=4, device='cpu',
                                    cfg_options=options, progress=True)
    assert not failures and len(found) == len(paths[::50])
    assert [r['pred_class'] for r in found] == [classes[p['pred_label']] for p in preds[::50]]
    assert not osp.exists(nowhere)


def test_out_is_checked_before_anything_runs(tmp_path, monkeypatch, capsys):
    """--out with another extension, or an existing --out without --force: a usage error (status 2) before the
    model is built, and the existing file is kept; --help documents the exit status."""
    import tip_adapter_mm.apis.inference as inference
    from tip_adapter_mm.cli.infer import main

    def must_not_run(*args, **kwargs):
        raise AssertionError('the model was built')

    monkeypatch.setattr(inference, 'build_inferencer', must_not_run)
    config, checkpoint, image = (tmp_path / name for name in ('cfg.py', 'model.pth', 'a.png'))
    for path in (config, checkpoint, image):
        path.write_bytes(b'x')

    for out in ('preds.txt', 'preds.jsonl', 'preds'):
        with pytest.raises(SystemExit) as exc:
            main([str(config), str(checkpoint), str(image), '--out', str(tmp_path / out)])
        assert exc.value.code == 2
        assert '.json or .csv' in capsys.readouterr().err
        assert not (tmp_path / out).exists()

    existing = tmp_path / 'preds.JSON'
    existing.write_text('keep me')
    with pytest.raises(SystemExit) as exc:
        main([str(config), str(checkpoint), str(image), '--out', str(existing)])
    assert exc.value.code == 2
    assert '--force' in capsys.readouterr().err
    assert existing.read_text() == 'keep me'

    with pytest.raises(AssertionError, match='the model was built'):  # --force passes the check
        main([str(config), str(checkpoint), str(image), '--out', str(existing), '--force'])
    assert existing.read_text() == 'keep me'

    with pytest.raises(SystemExit) as exc:
        main(['--help'])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert 'exit status' in text and '1  some inputs failed' in text


def test_collect_images(tmp_path):
    """Folders (recursive, extensions in any case, other files reported), .txt lists (relative to the list,
    comments), explicit files, missing inputs and empty folders: every input is either a file or a failure."""
    from tip_adapter_mm.apis import collect_images

    root = tmp_path / 'imgs'
    (root / 'sub' / 'deeper').mkdir(parents=True)
    (tmp_path / 'empty').mkdir()
    for name in ('b.png', 'A.JPG', 'sub/c.TIFF', 'sub/deeper/d.webp', 'sub/readme.md', 'e.jpeg'):
        (root / name).write_bytes(b'x')
    listing = tmp_path / 'list.txt'
    listing.write_text('# a comment\n\nimgs/b.png\nimgs/missing.png\n' + str(root / 'e.jpeg') + '\n')
    explicit = tmp_path / 'photo.gif'
    explicit.write_bytes(b'x')

    files, failures = collect_images([str(root), str(listing), str(explicit), str(tmp_path / 'nope.png'),
                                      str(tmp_path / 'empty')])
    assert files == [str(root / name) for name in ('A.JPG', 'b.png', 'e.jpeg', 'sub/c.TIFF', 'sub/deeper/d.webp')] \
        + [str(explicit)]  # the list's entries were found in the folder already: each file once
    assert [f['file'] for f in failures] == [str(root / 'sub' / 'readme.md'), str(tmp_path / 'imgs/missing.png'),
                                             str(tmp_path / 'nope.png'), str(tmp_path / 'empty')]
    assert 'not an image file' in failures[0]['error'] and 'does not exist' in failures[1]['error']


def test_write_atomic(tmp_path):
    """The output file is replaced whole (no temporary left), and an existing one only with force."""
    from tip_adapter_mm.cli.infer import write_atomic

    out = tmp_path / 'new' / 'preds.csv'
    write_atomic(str(out), 'a,b\n')
    assert out.read_text() == 'a,b\n' and os.listdir(out.parent) == ['preds.csv']
    with pytest.raises(FileExistsError):
        write_atomic(str(out), 'other\n')
    assert out.read_text() == 'a,b\n' and os.listdir(out.parent) == ['preds.csv']
    write_atomic(str(out), 'other\n', force=True)
    assert out.read_text() == 'other\n' and oct(out.stat().st_mode & 0o777) != oct(0o600)
