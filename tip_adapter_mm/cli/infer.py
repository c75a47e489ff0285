"""``tip-adapter-infer`` / ``python -m tip_adapter_mm.cli.infer`` / ``tools/infer.py``: classify image files with
a trained adapter and print (and optionally write) the top-k classes of each.

A thin command line over :func:`tip_adapter_mm.apis.predict_files` (mmpretrain's ImageClassificationInferencer
on the run's config and checkpoint).
"""
import argparse
import csv
import io
import json
import os.path as osp
import re
import sys
from typing import List, Optional, Sequence

#: --out extension -> format
OUTPUT_FORMATS = {'.json': 'json', '.csv': 'csv'}

EPILOG = """\
inputs:
  an image file, a folder (searched recursively for .jpg .jpeg .png .bmp .webp .tif .tiff files, in any case;
  any other file found there is reported as skipped) or a .txt file listing image paths, one per line
  (relative paths are relative to the list file's folder; blank lines and lines starting with # are ignored).

exit status:
  0  every input was classified
  1  some inputs failed (missing, unreadable, corrupt or not an image): each is named on stderr and in --out,
     and counted; the other files are still classified and written
  2  usage error (bad arguments, --out with another extension than .json or .csv, an existing --out without
     --force, a missing or unsafe config or checkpoint): nothing is classified or written

The checkpoint is read with torch.load(weights_only=True): nothing in it is executed. The class names come
from the checkpoint, so no dataset is needed; the config is the run's (its work dir holds a copy).
"""


def _device(value: str) -> str:
    if not re.fullmatch(r'cpu|cuda(:\d+)?', value):
        raise argparse.ArgumentTypeError(f"'{value}' is not cpu, cuda or cuda:N")
    return value


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"'{value}' is not a positive integer")
    return number


def build_parser() -> argparse.ArgumentParser:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Classify images with a trained Tip-Adapter / Tip-Adapter-F / '
        'Meta-Adapter checkpoint (mmpretrain\'s ImageClassificationInferencer).', epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help="the run's config (e.g. the copy in its work dir), or an adapter file "
                        'written by tools/export_adapter.py (.safetensors; then no CHECKPOINT is given)')
    parser.add_argument('checkpoint', help='the checkpoint the run saved (final.pth or epoch_N.pth)')
    parser.add_argument('inputs', nargs='*', metavar='INPUT', help='image file, folder or .txt list of images')
    parser.add_argument('--out', help='write the predictions (and the failures) to this .json or .csv file '
                        '(atomically)')
    parser.add_argument('--force', action='store_true', help='overwrite an existing --out file')
    parser.add_argument('--topk', type=_positive, default=5, help='classes shown per image (default: 5)')
    parser.add_argument('--batch-size', type=_positive, default=32, help='images per forward (default: 32)')
    parser.add_argument('--device', type=_device, default=None,
                        help='cpu, cuda or cuda:N (default: cuda when available, else cpu)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (e.g. model.backbone.pretrained=PATH)')
    return parser


def check_out(out: Optional[str], force: bool) -> Optional[str]:
    """The format of ``--out`` ('json' or 'csv'), checked before anything runs.

    Args:
        out (str, optional): the --out path.
        force (bool): an existing file may be overwritten.

    Returns:
        str | None: 'json', 'csv', or None without ``out``.

    Raises:
        ValueError: another extension, a folder, or an existing file without ``force``.
    """
    if out is None:
        return None
    fmt = OUTPUT_FORMATS.get(osp.splitext(out)[1].lower())
    if fmt is None:
        raise ValueError(f"--out '{out}': the extension must be .json or .csv (the output format)")
    if osp.isdir(out):
        raise ValueError(f"--out '{out}' is a folder")
    if osp.exists(out) and not force:
        raise ValueError(f"--out '{out}' exists: pass --force to overwrite it")
    return fmt


def write_atomic(path: str, text: str, force: bool = False):
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader never sees a half-written file, and an interrupted write leaves the old file (if any) intact.

    Args:
        path (str): the file.
        text (str): its content.
        force (bool): replace an existing file. Defaults to False (``FileExistsError``).
    """
    from ..utils.io import atomic_write_path
    with atomic_write_path(path, durable=True) as tmp:  # removed again if the check below fails
        with open(tmp, 'w', encoding='utf-8', newline='') as f:
            f.write(text)
        if osp.exists(path) and not force:
            raise FileExistsError(f"'{path}' appeared while classifying: pass --force to overwrite it")


def to_json(results: List[dict], failures: List[dict], meta: dict) -> str:
    """The --out JSON: ``meta`` plus counts, ``predictions`` and ``failures``."""
    return json.dumps(dict(meta, num_inputs=len(results) + len(failures), num_predicted=len(results),
                           num_failed=len(failures), predictions=results, failures=failures), indent=2) + '\n'


def to_csv(results: List[dict], failures: List[dict], topk: int) -> str:
    """The --out CSV: one row per file (``status`` ok or failed), the top-k classes of each, the error of each
    failure."""
    columns = ['file', 'status']
    for k in range(1, topk + 1):
        columns += [f'top{k}_label', f'top{k}_class', f'top{k}_score']
    columns.append('error')
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for result in results:
        row = dict(file=result['file'], status='ok', error='')
        for k, top in enumerate(result['topk'], 1):
            row.update({f'top{k}_label': top['label'], f'top{k}_class': top['class'],
                        f'top{k}_score': repr(top['score'])})
        writer.writerow(row)
    for failure in failures:
        writer.writerow(dict(file=failure['file'], status='failed', error=failure['error']))
    return buffer.getvalue()


def format_table(results: Sequence[dict]) -> str:
    """A plain-text table: the file, then ``class score`` for each of its top-k classes."""
    if not results:
        return ''
    topk = max(len(r['topk']) for r in results)
    rows = [['file'] + [f'top-{k}' for k in range(1, topk + 1)]]
    rows += [[r['file']] + [f"{t['class']} {t['score']:.4f}" for t in r['topk']] for r in results]
    widths = [max(len(row[i]) if i < len(row) else 0 for row in rows) for i in range(topk + 1)]
    return '\n'.join('  '.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows) + '\n'


def main(argv=None) -> int:
    """Run the command line.

    Args:
        argv (list[str], optional): the arguments (default: ``sys.argv[1:]``).

    Returns:
        int: the exit status (0: all classified, 1: some inputs failed, 2: usage error).
    """
    from .configs import resolve_config
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config.endswith('.safetensors'):  # ADAPTER INPUT [INPUT ...]: the adapter file holds the model
        args.inputs, args.checkpoint, args.config = [args.checkpoint] + args.inputs, args.config, None
    if not args.inputs:
        parser.error('no INPUT given (CONFIG CHECKPOINT INPUT [INPUT ...], or ADAPTER.safetensors INPUT ...)')
    try:
        fmt = check_out(args.out, args.force)
        args.config = resolve_config(args.config) if args.config is not None else None
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    for name, path in (('config', args.config), ('checkpoint', args.checkpoint)):
        if path is not None and not osp.isfile(path):
            parser.error(f"{name} '{path}' does not exist or is not a file")
    if args.device and args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            parser.error(f'--device {args.device}: CUDA is not available')

    from ..apis.inference import build_inferencer, predict_files
    from ..utils.checkpoint import CheckpointError
    try:
        inferencer = build_inferencer(args.config, args.checkpoint, device=args.device,
                                      cfg_options=args.cfg_options)
    except (OSError, CheckpointError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    results, failures = predict_files(None, None, args.inputs, topk=args.topk, batch_size=args.batch_size,
                                      inferencer=inferencer)

    sys.stdout.write(format_table(results))
    total = len(results) + len(failures)
    print(f'classified {len(results)} of {total} input file(s); {len(failures)} failed')
    if failures:
        print(f'{len(failures)} input(s) failed:', file=sys.stderr)
        for failure in failures:
            print(f"  {failure['file']}: {failure['error']}", file=sys.stderr)
    if args.out:
        classes = list(inferencer.classes or ())
        topk = min(args.topk, len(classes)) if classes else args.topk
        if fmt == 'json':
            text = to_json(results, failures, dict(config=args.config, checkpoint=args.checkpoint,
                                                   classes=classes, topk=topk))
        else:
            text = to_csv(results, failures, topk)
        try:
            write_atomic(args.out, text, force=args.force)
        except FileExistsError as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
        print(f'predictions written to {args.out}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
