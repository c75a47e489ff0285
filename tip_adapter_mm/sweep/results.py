"""The results.json files under a sweep's work dir: collecting them, the runs without one, and the rows they
belong to (labels, de-duplication, row order)."""
import json
import math
import os
import os.path as osp
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ..settings import is_zero_shot

RESULTS = 'results.json'
RUN_DIR = re.compile(r'^shot(\d+)_seed(-?\d+)$')
#: rows come in this order; other methods follow alphabetically
METHOD_ORDER = ('Zero-shot CLIP', 'Tip-Adapter', 'Tip-Adapter-F', 'Meta-Adapter')
#: what a results.json must hold to count as a finished run (see :func:`check_record`)
REQUIRED_FIELDS = ('method', 'num_shots', 'seed', 'test_top1')


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
    record: Optional[dict] = field(default=None, repr=False, compare=False)  # the whole results.json


def backbone_label(data: dict) -> str:
    """The report's backbone of a results.json: its ``backbone`` (the model name), with the pretrained tag in
    parentheses unless that is ``openai`` (the papers' weights) or a local checkpoint file:
    ``ViT-B-16 (laion2b_s34b_b88k)``, ``RN50``, ``tiny-clip``."""
    name = str(data.get('backbone') or 'unknown')
    tag = data.get('pretrained')
    if not isinstance(tag, str) or not tag or tag == 'openai':
        return name
    from ..features.keys import is_local_weights
    return name if is_local_weights(tag) else f'{name} ({tag})'


def config_stem(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


def load_json(path):
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _non_finite(value, where: str = '') -> Optional[str]:
    """The first non-finite number (NaN, Infinity) in a JSON value, as ``key.key[i]``; None when there is none."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or 'value'
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite(item, f'{where}[{key}]' if isinstance(key, int) else
                            f'{where}.{key}' if where else str(key))
        if found:
            return found
    return None


def check_record(data) -> Optional[str]:
    """Why a parsed results.json is not a finished run's record, or None when it is.

    A record is a JSON object with :data:`REQUIRED_FIELDS` set (not null): ``method`` a non-empty string,
    ``num_shots`` a non-negative integer, ``seed`` an integer, ``test_top1`` a number in [0, 100]; and no number
    in it is NaN or infinite.
    """
    if not isinstance(data, dict):
        return f'not a JSON object but {type(data).__name__}'
    missing = [key for key in REQUIRED_FIELDS if data.get(key) is None]
    if missing:
        return f'missing {", ".join(missing)}'
    where = _non_finite(data)
    if where:
        return f'non-finite number in {where}'
    if not isinstance(data['method'], str) or not data['method'].strip():
        return f'method is not a name: {data["method"]!r}'
    for key in ('num_shots', 'seed'):
        if not _number(data[key]) or data[key] != int(data[key]):
            return f'{key} is not an integer: {data[key]!r}'
    if data['num_shots'] < 0:
        return f'num_shots is negative: {data["num_shots"]!r}'
    top1 = data['test_top1']
    if not _number(top1) or not 0 <= top1 <= 100:
        return f'test_top1 is not an accuracy in [0, 100]: {top1!r}'
    return None


def read_results(path: str) -> Tuple[Optional[dict], Optional[str]]:
    """(record, None) for a valid results.json at ``path``, else (None, why not): missing, unreadable, not
    JSON, or failing :func:`check_record`."""
    try:
        with open(path, 'rb') as f:
            text = f.read()
    except FileNotFoundError:
        return None, f'no {RESULTS}'
    except OSError as e:
        return None, f'unreadable ({e.strerror or e})'
    if not text.strip():
        return None, 'empty file'
    try:
        data = json.loads(text)
    except ValueError as e:  # also UnicodeDecodeError
        return None, f'not JSON ({e})'
    problem = check_record(data)
    return (None, problem) if problem else (data, None)


def collect_results(work_dir: str) -> Tuple[List[Result], List[str]]:
    """Every valid results.json under ``work_dir`` (:func:`read_results`), and a note for each one that is not."""
    results, problems = [], []
    for folder, dirs, files in os.walk(work_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        if RESULTS not in files:
            continue
        path = osp.join(folder, RESULTS)
        data, problem = read_results(path)
        if problem:
            problems.append(f'{path}: {problem}')
            continue
        top1 = data['test_top1']
        method = str(data.get('method') or 'unknown')
        shots = data.get('num_shots')
        shots = 0 if shots is None or is_zero_shot(data) else int(shots)
        seed = data.get('seed')
        results.append(Result(path=path, method=method, dataset=str(data.get('dataset') or 'unknown'),
                              backbone=backbone_label(data), shots=shots,
                              seed=int(seed) if isinstance(seed, (int, float)) else seed, top1=float(top1),
                              config=config_stem(str(data.get('config') or '')), mtime=osp.getmtime(path),
                              record=data))
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
