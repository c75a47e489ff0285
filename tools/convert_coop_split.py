"""Convert a CoOp few-shot split pickle into the project's portable split file.

CoOp (Dassl) caches its few-shot samples as ``<dataset>/split_fewshot/shot_K-seed_S.pkl``: a pickle of
``{'train': [Datum, ...], 'val': [Datum, ...]}`` where each ``Datum`` (``dassl.data.datasets.base_dataset``)
has ``impath`` (an absolute path on the machine that wrote it), ``label`` and ``classname``. This tool writes
the same lists as JSON::

    {"num_shots": K, "seed": S, "train": [[relpath, label], ...], "val": [[relpath, label], ...]}

with the image paths relative to the dataset's ``data_root``, which any
:class:`~tip_adapter_mm.datasets.FewShotDataset` accepts as ``split_file=`` (the lists are then used instead of
sampling, so a run uses exactly CoOp's images).

The image paths are made relative to ``--data-root`` when they lie under it; otherwise to ``--src-root``
(the dataset folder on the machine that wrote the pickle) when given; otherwise the tool finds the longest
tail of the first path that exists under ``--data-root`` (e.g. ``images/Abyssinian_1.jpg``) and strips the
same leading part from every path.

**Unpickling can execute code**: convert only pickles you trust. Only Dassl's ``Datum`` (mapped to a local
stand-in, so Dassl need not be installed) and plain containers are allowed by the unpickler.

Usage::

    python tools/convert_coop_split.py ~/coop_data/oxford_pets/split_fewshot/shot_16-seed_1.pkl \\
        data/oxford_pets/coop_shot_16-seed_1.json --data-root data/oxford_pets
"""
import argparse
import os
import os.path as osp
import pickle
import re
import sys
from collections import Counter

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from tip_adapter_mm.utils import atomic_json_dump  # noqa: E402

SAFE_GLOBALS = {('collections', 'OrderedDict'), ('builtins', 'object'), ('builtins', 'list'), ('builtins', 'dict'),
                ('builtins', 'tuple'), ('builtins', 'set'), ('copyreg', '_reconstructor')}


class Datum:
    """Stand-in for Dassl's ``Datum`` (pickled state: ``_impath``, ``_label``, ``_domain``, ``_classname``).

    Args:
        impath (str): image path.
        label (int): class label.
        domain (int): domain label.
        classname (str): class name.
    """

    def __init__(self, impath='', label=0, domain=0, classname=''):
        self._impath, self._label, self._domain, self._classname = impath, label, domain, classname

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else state[1] or {})

    def _get(self, name):
        return self.__dict__.get('_' + name, self.__dict__.get(name))

    impath = property(lambda self: self._get('impath'))
    label = property(lambda self: self._get('label'))
    classname = property(lambda self: self._get('classname'))


class CoOpUnpickler(pickle.Unpickler):
    """Maps any ``<module>.Datum`` (Dassl's, or a trimmed copy's) to :class:`Datum`; refuses other classes."""

    def find_class(self, module, name):
        if name == 'Datum':
            return Datum
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load '{module}.{name}' from a CoOp split pickle (only Datum "
                                     'objects and plain containers are expected)')


def load_coop_pickle(path):
    """``{'train': [Datum, ...], 'val': [Datum, ...]}`` of a CoOp ``split_fewshot`` pickle."""
    with open(path, 'rb') as f:
        data = CoOpUnpickler(f).load()
    if not isinstance(data, dict) or 'train' not in data:
        raise ValueError(f"'{path}' is not a CoOp few-shot split (a dict with 'train' and 'val' lists of Datum)")
    return data


def _parts(path):
    return [p for p in re.split(r'[\\/]+', path) if p not in ('', '.')]


def make_relative(impaths, data_root, src_root=None):
    """Paths of ``impaths`` relative to ``data_root`` (see the module docstring for the rules)."""
    root = osp.abspath(data_root)
    if src_root is not None:
        # as written (it may be another machine's, e.g. 'D:\\data\\pets'), or made absolute here
        src = next((c for c in (_parts(src_root), _parts(osp.abspath(src_root)))
                    if impaths and _parts(impaths[0])[:len(c)] == c), _parts(src_root))
        out = []
        for p in impaths:
            parts = _parts(p)
            if parts[:len(src)] != src:
                raise ValueError(f"image path '{p}' is not under --src-root '{src_root}'")
            out.append('/'.join(parts[len(src):]))
        return out
    if all(osp.isabs(p) and osp.abspath(p).startswith(root + os.sep) for p in impaths):
        return [osp.relpath(osp.abspath(p), root).replace(os.sep, '/') for p in impaths]
    if not impaths:
        return []
    first = _parts(impaths[0])
    keep = next((k for k in range(len(first), 0, -1) if osp.exists(osp.join(root, *first[-k:]))), None)
    if keep is None:
        raise ValueError(f"cannot place the pickle's image paths (e.g. '{impaths[0]}') under --data-root "
                         f"'{data_root}': no tail of the path exists there; give --src-root, the dataset folder "
                         'the pickle was written under')
    prefix = first[:len(first) - keep]
    out = []
    for p in impaths:
        parts = _parts(p)
        if parts[:len(prefix)] != prefix:
            raise ValueError(f"image path '{p}' does not start with '{'/'.join(prefix)}' like the first path; "
                             'give --src-root')
        out.append('/'.join(parts[len(prefix):]))
    return out


def convert(src, dst, data_root, src_root=None, num_shots=None, seed=None):
    """Convert ``src`` (a CoOp pickle) into the split file ``dst``; returns the written dict."""
    print(f"WARNING: unpickling '{src}' can execute code: convert only CoOp split files you trust",
          file=sys.stderr)
    data = load_coop_pickle(src)
    match = re.search(r'shot_(\d+)-seed_(\d+)', osp.basename(src))
    if num_shots is None:
        counts = set(Counter(int(d.label) for d in data['train']).values())
        num_shots = int(match.group(1)) if match else (counts.pop() if len(counts) == 1 else None)
    if seed is None and match:
        seed = int(match.group(2))
    out = dict(num_shots=num_shots, seed=seed)
    for key in ('train', 'val'):
        items = data.get(key)
        if items is None:
            continue
        rel = make_relative([str(d.impath) for d in items], data_root, src_root)
        out[key] = [[p, int(d.label)] for p, d in zip(rel, items)]
    missing = [p for key in ('train', 'val') for p, _ in out.get(key, ())
               if not osp.exists(osp.join(data_root, p))]
    if missing:
        print(f"WARNING: {len(missing)} image(s) of the split are not under '{data_root}', e.g. '{missing[0]}'",
              file=sys.stderr)
    atomic_json_dump(out, dst, indent=None)
    print(f"wrote '{dst}': {len(out['train'])} train and {len(out.get('val', []))} val items "
          f'(num_shots={num_shots}, seed={seed}); use it with split_file=')
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help="CoOp's split_fewshot/shot_K-seed_S.pkl")
    parser.add_argument('dst', help='the split file to write (JSON)')
    parser.add_argument('--data-root', required=True, help='the dataset folder of this project, e.g. data/oxford_pets')
    parser.add_argument('--src-root', help='the dataset folder the pickle was written under (default: found)')
    parser.add_argument('--num-shots', type=int, help='default: from the file name shot_K-seed_S.pkl')
    parser.add_argument('--seed', type=int, help='default: from the file name shot_K-seed_S.pkl')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    return convert(args.src, args.dst, args.data_root, args.src_root, args.num_shots, args.seed)


if __name__ == '__main__':
    main()
