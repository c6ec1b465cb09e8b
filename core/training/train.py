"""TinyForgeAI's trainer module, kept for its users: ``run_training`` and the ``train.py`` script.

``python core/training/train.py`` and ``python -m core.training.train`` (also under
``torchrun`` and ``accelerate launch``) take the flags of ``foremforge train`` and behave as it
does; TinyForgeAI's ``--data``, ``--out``, ``--dry-run`` and ``--use-lora`` are among them.
``run_training`` lives in :mod:`core.training.run`, the command in :mod:`core.cli.train`.
"""

from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from collections.abc import Sequence  # noqa: E402

from core.run_layout import MODEL_STUB_FILE  # noqa: E402
from core.training.run import run_training  # noqa: E402

STUB_FILENAME = MODEL_STUB_FILE  # TinyForgeAI's name of the dry run's artifact

__all__ = ["STUB_FILENAME", "main", "run_training"]


def main(argv: Sequence[str] | None = None) -> int:
    """The script: ``foremforge train`` under the name ``train.py``."""
    # Training's one import from the command line above it, allowed by name in pyproject.toml's
    # layers contract: this script is TinyForgeAI's entry point, kept at this path for its users.
    from core.cli.train import script_main

    return script_main(argv)


if __name__ == "__main__":
    sys.exit(main())
