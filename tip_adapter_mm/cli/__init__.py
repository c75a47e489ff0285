"""Command-line entry points (``tip-adapter-train``, ``tip-adapter-test``, ...), also runnable as
``python -m tip_adapter_mm.cli.<name>``; the repository's ``tools/*.py`` call the same functions."""
