"""Built-in class-name and prompt-template lists, referred to by name in configs."""
from typing import List, Sequence, Union


def _imagenet_classnames():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    return list(IMAGENET_CLASSNAMES)


def _imagenet_templates():
    # the 7-template ensemble of CLIP's notebook, used by Tip-Adapter for ImageNet
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES
    return [t('{}') for t in SIMPLE_IMAGENET_TEMPLATES]


def _digits_classnames():
    from ..demo import DIGIT_CLASSNAMES
    return list(DIGIT_CLASSNAMES)


def _digits_templates():
    from ..demo import DIGIT_TEMPLATES
    return list(DIGIT_TEMPLATES)


CLASSNAMES = dict(imagenet=_imagenet_classnames, digits=_digits_classnames)
TEMPLATES = dict(imagenet=_imagenet_templates, digits=_digits_templates)


def _resolve(value, table, what) -> List[str]:
    if isinstance(value, str):
        if value not in table:
            raise KeyError(f"unknown built-in {what} list '{value}'; known: {sorted(table)}, "
                           'or give the list itself')
        return table[value]()
    return [str(v) for v in value]


def resolve_classnames(value: Union[str, Sequence[str]]) -> List[str]:
    """A list of class names, or the name of a built-in list ('imagenet', 'digits')."""
    return _resolve(value, CLASSNAMES, 'class-name')


def resolve_templates(value: Union[str, Sequence[str]]) -> List[str]:
    """A list of prompt templates with a '{}' placeholder, or a built-in list name."""
    templates = _resolve(value, TEMPLATES, 'template')
    bad = [t for t in templates if '{}' not in t]
    if bad or not templates:
        raise ValueError(f"prompt templates must contain '{{}}' for the class name, got {bad or templates}")
    return templates
