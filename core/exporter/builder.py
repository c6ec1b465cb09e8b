"""TinyForgeAI's exporter module, kept for its users: ``build``, ``get_template_dir`` and the
``builder.py`` script.

``python core/exporter/builder.py`` and ``python -m core.exporter.builder`` take the flags of
``foremforge export`` and run it (usage errors worded as they always were, prog ``builder.py``);
TinyForgeAI's ``--model-path``, ``--output-dir``, ``--overwrite`` and ``--export-onnx`` are among
them. The builder lives in :mod:`core.exporter.service_build`, the command in :mod:`core.cli.export`.
"""

from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from collections.abc import Sequence  # noqa: E402

# TinyForgeAI's API of this module (README, "Coming from TinyForgeAI"); the code lives in
# core.exporter.service_build.
from core.exporter.service_build import build, get_template_dir  # noqa: E402

__all__ = ["build", "get_template_dir", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """The script: ``foremforge export`` under the name ``builder.py``."""
    # The exporter's one import from the command line above it, allowed by name in pyproject.toml's
    # layers contract: this script is TinyForgeAI's entry point, kept at this path for its users.
    from core.cli.export import script_main

    return script_main(argv)


if __name__ == "__main__":
    sys.exit(main())
