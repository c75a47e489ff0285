"""Optional dependencies, installed through the package's extras (``pip install 'tip_adapter_mm[demo]'``)."""
import importlib


def import_extra(module: str, extra: str, purpose: str):
    """Import ``module``, which only the extra ``extra`` installs.

    Args:
        module (str): the module to import (e.g. ``'sklearn.datasets'``).
        extra (str): the extra of tip_adapter_mm that installs it (``'demo'``, ``'plots'``).
        purpose (str): what needs it, for the message (e.g. ``"writing the embedded demo's digits"``).

    Returns:
        module: the imported module.

    Raises:
        ImportError: ``module`` is not installed; the message names the extra to install.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{purpose} needs the module '{module.split('.')[0]}', which is not installed ({e}); install "
                          f"it with: pip install 'tip_adapter_mm[{extra}]'") from e
