"""The ``foremforge`` command line (``python -m core.cli``, ``python -m core``): one module per
command, registered in :mod:`core.cli.foremforge`."""

from core.cli.foremforge import build_parser, main

__all__ = ["build_parser", "main"]
