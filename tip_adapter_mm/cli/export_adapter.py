"""``python -m tip_adapter_mm.cli.export_adapter`` / ``tools/export_adapter.py``: write the adapter state of a
trained run to a portable, safe ``.safetensors`` file (tensors plus a JSON header, no pickle).

A thin command line over :func:`tip_adapter_mm.apis.export.export_adapter`; the file is loaded back with
:func:`tip_adapter_mm.apis.export.load_adapter`.
"""
import argparse
import sys

EPILOG = """\
The checkpoint is read with torch.load(weights_only=True): nothing in it is executed. The output holds the
head's tensors (text weights, cache, alpha/beta or the Meta-Adapter's projections) and, in its safetensors
metadata, a JSON header with the model config, the test pipeline, the class names and templates, the feature
size and the run identity. The frozen CLIP weights are not included: the loader takes them from the header's
model.backbone.pretrained (or from the pretrained argument of load_adapter).

exit status:
  0  the file was written
  2  usage error (OUT not ending in .safetensors, an existing OUT without --force, a missing, unreadable or
     unsafe checkpoint, a checkpoint that is not a finished adapter run): nothing is written
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Export the adapter of a trained Tip-Adapter / Tip-Adapter-F / Meta-Adapter run to a '
        'safetensors file.', epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint', help='the checkpoint the run saved (final.pth or epoch_N.pth)')
    parser.add_argument('out', help='the output file (must end with .safetensors; written atomically)')
    parser.add_argument('--config', help="the run's config (default: the config stored in the checkpoint)")
    parser.add_argument('--force', action='store_true', help='overwrite an existing output file')
    return parser


def main(argv=None) -> int:
    """Run the command line.

    Args:
        argv (list[str], optional): the arguments (default: ``sys.argv[1:]``).

    Returns:
        int: the exit status (0: written, 2: error, nothing written).
    """
    args = build_parser().parse_args(argv)
    from ..apis.export import export_adapter
    from ..utils.checkpoint import CheckpointError
    from .configs import resolve_config
    try:
        args.config = resolve_config(args.config) if args.config is not None else None
        header = export_adapter(args.checkpoint, args.out, config=args.config, force=args.force)
    except (OSError, CheckpointError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f"{header['method'] or 'adapter'} ({len(header['tensors'])} tensors, {header['num_classes']} classes, "
          f"feature size {header['feat_dim']}) written to {args.out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
