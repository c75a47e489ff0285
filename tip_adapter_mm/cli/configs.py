"""The configs shipped inside the package and the names the commands accept for them.

A wheel (or an sdist) of the project holds the repository's ``configs/`` and ``tools/`` as
``tip_adapter_mm/.mim/configs`` and ``tip_adapter_mm/.mim/tools``, where OpenMMLab's ``mim`` looks for them
(``mim train tip_adapter_mm tip_digits_16shot.py``); in a checkout they are symbolic links to ``configs/`` and
``tools/``. ``tip-adapter-train``, ``-test``, ``-extract``, ``-infer`` and ``tools/*.py`` take a shipped config
as ``tip_adapter_mm::NAME`` (mmengine's own ``package::`` syntax only serves OpenMMLab's packages).
"""
import os
import os.path as osp
import sys

#: the prefix of a shipped config's name
PREFIX = 'tip_adapter_mm::'


def shipped_config_dir() -> str:
    """The folder of the configs shipped with the package (``<package>/.mim/configs``)."""
    return osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '.mim', 'configs')


def shipped_configs() -> list:
    """The shipped configs' names, relative to :func:`shipped_config_dir`, sorted (``_base_`` files included)."""
    root = shipped_config_dir()
    names = []
    for folder, _, files in os.walk(root, followlinks=True):
        names += [osp.relpath(osp.join(folder, f), root).replace(os.sep, '/') for f in files if f.endswith('.py')]
    return sorted(names)


def _shipped(name: str):
    """The shipped config ``name`` (``.py`` optional), or None."""
    name = name.replace('\\', '/').lstrip('/')
    root = shipped_config_dir()
    for candidate in (name, name + '.py'):
        path = osp.normpath(osp.join(root, candidate))
        if path.startswith(osp.normpath(root) + os.sep) and osp.isfile(path):
            return path
    return None


def resolve_config(path: str) -> str:
    """The config file that a command's CONFIG argument names.

    * an existing file: itself;
    * ``tip_adapter_mm::NAME``: the shipped config NAME (``tip_adapter_mm::tip_digits_16shot.py``; the ``.py``
      may be left out);
    * a relative path that does not exist but names a shipped config (``tip_digits_16shot.py``, or
      ``configs/tip_digits_16shot.py`` as the README writes it, run outside a checkout): that config, as
      ``mim train`` does; a line on stderr says so;
    * anything else: ``path`` unchanged (the caller's "not found" error names it).

    Args:
        path (str): the CONFIG argument.

    Returns:
        str: the config file to read.

    Raises:
        FileNotFoundError: a ``tip_adapter_mm::`` name that is not shipped.
    """
    if path.startswith(PREFIX):
        name = path[len(PREFIX):]
        found = _shipped(name)
        if found is None:
            tops = [n for n in shipped_configs() if '/' not in n]
            raise FileNotFoundError(
                f"config '{path}': '{name}' is not among the {len(tops)} configs shipped with tip_adapter_mm in "
                f"{shipped_config_dir()} (e.g. {', '.join(tops[:3]) or 'none: the package holds no configs'})")
        return found
    if osp.exists(path) or osp.isabs(path):
        return path
    name = osp.normpath(path).replace(os.sep, '/')
    found = _shipped(name[len('configs/'):] if name.startswith('configs/') else name)
    if found is not None:
        print(f"config '{path}' does not exist here: using the one shipped with tip_adapter_mm, {found}",
              file=sys.stderr)
        return found
    return path
