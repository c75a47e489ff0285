"""The results.json files under a sweep's work dir: collecting them, the runs without one, and the rows they
belong to (labels, de-duplication, row order)."""
import json
import math
import os
import os.path as osp
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import List, Optional, Tuple

RESULTS = 'results.json'
RUN_DIR = re.compile(r'^shot(\d+)_seed(-?\d+)$')
#: rows come in this order; other methods follow alphabetically
METHOD_ORDER = ('Zero-shot CLIP', 'Tip-Adapter', 'Tip-Adapter-F', 'Meta-Adapter')


@dataclass
class Result:
    """The part of one results.json the reports use."""
    path: str
    method: str
    dataset: str
    backbone: str
    shots: int
    seed: Optional[int]
    top1: float
    config: str
    mtime: float
    label: str = ''  # the row name; the method, or 'method [config]' where two configs collide


def config_stem(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


def load_json(path):
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _is_zero_shot(method: str, shots) -> bool:
    return not shots or method.lower().replace(' ', '-').startswith('zero-shot')


def collect_results(work_dir: str) -> Tuple[List[Result], List[str]]:
    """Every usable results.json under ``work_dir``, and a note for each one that is not usable."""
    results, problems = [], []
    for folder, dirs, files in os.walk(work_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        if RESULTS not in files:
            continue
        path = osp.join(folder, RESULTS)
        data = load_json(path)
        top1 = data.get('test_top1')
        if not data:
            problems.append(f'{path}: unreadable')
            continue
        if not isinstance(top1, (int, float)) or math.isnan(top1):
            problems.append(f'{path}: no test_top1')
            continue
        method = str(data.get('method') or 'unknown')
        shots = data.get('num_shots')
        shots = 0 if _is_zero_shot(method, shots) else int(shots)
        seed = data.get('seed')
        results.append(Result(path=path, method=method, dataset=str(data.get('dataset') or 'unknown'),
                              backbone=str(data.get('backbone') or 'unknown'), shots=shots,
                              seed=int(seed) if isinstance(seed, (int, float)) else seed, top1=float(top1),
                              config=config_stem(str(data.get('config') or '')), mtime=osp.getmtime(path)))
    return results, problems


def find_incomplete(work_dir: str) -> List[str]:
    """Sweep run folders (``shot<K>_seed<S>``) under ``work_dir`` that hold no results.json."""
    missing = []
    for folder, dirs, files in os.walk(work_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        if RUN_DIR.match(osp.basename(folder)) and RESULTS not in files:
            missing.append(folder)
    return missing


def run_group(path: str, work_dir: str) -> str:
    """The experiment a results.json belongs to, from its folder under the work dir.

    ``<cfg>/shot<K>_seed<S>/results.json`` (the sweep layout) -> ``<cfg>``; another folder -> its path without a
    trailing ``_seed<S>`` (``tip-f_image_seed1`` -> ``tip-f_image``).
    """
    folder = osp.relpath(osp.dirname(osp.abspath(path)), osp.abspath(work_dir))
    if RUN_DIR.match(osp.basename(folder)):
        folder = osp.dirname(folder)
    else:
        folder = re.sub(r'[_-]?seed-?\d+$', '', folder)
    return folder if folder not in ('', '.') else ''


def label_and_dedupe(results: List[Result], work_dir: str = '') -> Tuple[List[Result], List[str]]:
    """Name the rows and keep one result per (backbone, row, dataset, shots, seed).

    A method's rows are split by experiment ('method [experiment]', see :func:`run_group`; the config name when
    the folder says nothing) when two experiments hold the same method, dataset, shots and seed: say
    Tip-Adapter-F trained from the feature bank in one sweep and from images in another. Otherwise all results
    of a method share its row. What still collides (the same run found twice) counts once: the newest file.
    """
    groups = {id(r): run_group(r.path, work_dir) or r.config if work_dir else r.config for r in results}
    groups_per_key = defaultdict(set)
    for r in results:
        groups_per_key[(r.backbone, r.method, r.dataset, r.shots, r.seed)].add(groups[id(r)])
    split = {(key[0], key[1]) for key, names in groups_per_key.items() if len(names) > 1}
    for r in results:
        r.label = f'{r.method} [{groups[id(r)]}]' if (r.backbone, r.method) in split else r.method
    kept, notes = {}, []
    for r in sorted(results, key=lambda r: r.mtime):
        key = (r.backbone, r.label, r.dataset, r.shots, r.seed)
        if key in kept:
            notes.append(f'{kept[key].path}: the same row, dataset, shots and seed as the newer {r.path}; ignored')
        kept[key] = r
    return list(kept.values()), notes


def method_key(label: str):
    """The sort key of a row label: :data:`METHOD_ORDER` first, then alphabetically."""
    for i, name in enumerate(METHOD_ORDER):
        if label == name or label.startswith(name + ' ['):
            return (i, label)
    return (len(METHOD_ORDER), label)
