"""Published few-shot results of Tip-Adapter (CLIP RN50), used as reference series by the sweep reports.

Source: the official repository's ``exp.log`` (gaopengcuhk/Tip-Adapter; its README: "numerical results in
Figure 4 and 5" of the ECCV'22 paper, arXiv 2207.09519), as transcribed in /work/shared/notes/tip_adapter.md
§8.1. Backbone: CLIP RN50. Test top-1 accuracy in %, for 1/2/4/8/16 shots (one run, one seed each), and the
zero-shot CLIP accuracy per dataset (CoOp's single hand-crafted prompt and preprocessing, which is why EuroSAT
is at 37.52). The 11-dataset means are not stored: :func:`dataset_mean` computes them from the rows (the note
computed its mean row the same way).

Dataset keys follow this project's names (the note's ``fgvc`` is ``fgvc_aircraft``). The paper's Table 2
differs slightly on ImageNet (Tip-Adapter 16-shot 62.03, Tip-Adapter-F 1-shot 61.32); these are the exp.log
values.
"""
from typing import Dict, Optional

#: what the reports call these numbers
LABEL = 'published (RN50, exp.log)'
#: the backbone the numbers were measured with; the reports show them only next to results of this backbone
BACKBONE = 'RN50'
SOURCE = ('gaopengcuhk/Tip-Adapter exp.log (README: numerical results of Figures 4 and 5), '
          'via /work/shared/notes/tip_adapter.md section 8.1')

#: the 11 datasets of the paper's few-shot benchmark, in the order the reports use
PAPER_DATASETS = ('imagenet', 'caltech101', 'oxford_pets', 'stanford_cars', 'oxford_flowers', 'food101',
                  'fgvc_aircraft', 'sun397', 'dtd', 'eurosat', 'ucf101')

SHOTS = (1, 2, 4, 8, 16)

# exp.log lists 16/8/4/2/1 shots; the tables below keep that order and _by_shots() maps them to shot counts.
_ZERO_SHOT = {
    'imagenet': 60.32, 'sun397': 58.52, 'oxford_pets': 85.83, 'eurosat': 37.52, 'caltech101': 85.92,
    'dtd': 42.20, 'fgvc_aircraft': 17.10, 'food101': 77.32, 'oxford_flowers': 66.02, 'ucf101': 61.35,
    'stanford_cars': 55.74,
}
_TIP_ADAPTER_16_TO_1 = {
    'imagenet': (62.01, 61.45, 60.98, 60.96, 60.70),
    'sun397': (66.85, 65.62, 64.15, 62.70, 61.30),
    'oxford_pets': (88.14, 87.03, 86.45, 87.03, 86.10),
    'eurosat': (70.54, 67.95, 65.32, 61.68, 54.38),
    'caltech101': (90.18, 89.83, 89.39, 88.44, 87.18),
    'dtd': (60.93, 58.63, 53.96, 49.47, 46.22),
    'fgvc_aircraft': (29.76, 25.59, 22.41, 21.21, 19.05),
    'food101': (77.83, 77.76, 77.54, 77.52, 77.42),
    'oxford_flowers': (89.89, 87.98, 83.80, 79.13, 73.12),
    'ucf101': (70.58, 68.68, 66.46, 64.74, 62.60),
    'stanford_cars': (66.77, 62.93, 61.45, 57.93, 57.54),
}
_TIP_ADAPTER_F_16_TO_1 = {
    'imagenet': (65.51, 64.00, 62.52, 61.69, 61.13),
    'sun397': (71.47, 68.87, 66.21, 63.64, 62.50),
    'oxford_pets': (89.70, 88.09, 87.54, 87.03, 87.00),
    'eurosat': (84.54, 77.93, 74.12, 66.15, 59.53),
    'caltech101': (92.86, 91.44, 90.56, 89.74, 89.33),
    'dtd': (66.55, 62.71, 57.39, 53.72, 49.65),
    'fgvc_aircraft': (35.55, 30.21, 25.80, 23.19, 20.22),
    'food101': (79.43, 78.64, 78.24, 77.81, 77.51),
    'oxford_flowers': (94.80, 91.51, 88.83, 82.30, 79.98),
    'ucf101': (78.03, 74.25, 70.55, 66.43, 64.87),
    'stanford_cars': (75.74, 69.25, 64.57, 61.50, 58.86),
}


def _by_shots(table):
    return {ds: dict(zip((16, 8, 4, 2, 1), row)) for ds, row in table.items()}


#: PUBLISHED[method][dataset][shots] = test top-1 (%). Zero-shot CLIP is stored under shots 0 (it uses none).
PUBLISHED: Dict[str, Dict[str, Dict[int, float]]] = {
    'Zero-shot CLIP': {ds: {0: acc} for ds, acc in _ZERO_SHOT.items()},
    'Tip-Adapter': _by_shots(_TIP_ADAPTER_16_TO_1),
    'Tip-Adapter-F': _by_shots(_TIP_ADAPTER_F_16_TO_1),
}


def published(method: str, dataset: str, backbone: Optional[str] = BACKBONE) -> Optional[Dict[int, float]]:
    """{shots: published top-1} for a method on a dataset, or None where nothing was published.

    Only RN50 numbers exist; any other ``backbone`` gives None. ``dataset='average'`` gives the 11-dataset mean.
    """
    if backbone != BACKBONE or method not in PUBLISHED:
        return None
    if dataset == 'average':
        return dataset_mean(method)
    series = PUBLISHED[method].get(dataset)
    return dict(series) if series else None


def dataset_mean(method: str) -> Optional[Dict[int, float]]:
    """{shots: mean over the 11 paper datasets} of a published method (unrounded)."""
    table = PUBLISHED.get(method)
    if not table:
        return None
    shots = sorted(set.intersection(*(set(table[ds]) for ds in PAPER_DATASETS)))
    return {k: sum(table[ds][k] for ds in PAPER_DATASETS) / len(PAPER_DATASETS) for k in shots}
