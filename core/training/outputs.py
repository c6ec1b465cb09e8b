"""An early check of a training output folder, before the dataset scan or any model loads.

A run into ``--out`` that is a file, or under a file or a read-only folder, would otherwise fail
only when it writes (after a long scan or training) and with a raw ``OSError``. This says why at
once, in one line, and creates nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from core.training.errors import TrainingError

log = logging.getLogger(__name__)

__all__ = ["check_output_dir"]


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a ``Path`` when a run can create or write it; raise ``TrainingError``.

    The folder itself need not exist: its nearest existing ancestor must be a folder this
    process can write into. Nothing is created here.
    """
    out = Path(path).expanduser()
    try:
        if out.exists() and not out.is_dir():
            raise TrainingError(f"output folder {out} exists and is not a folder; choose a folder for --out")
        probe = out
        while not probe.exists():
            if probe.is_symlink():  # exists() is False for a dangling link and for a link loop
                raise TrainingError(f"cannot use the output folder {out}: {probe} is a broken symbolic link or a link loop")
            parent = probe.parent
            if parent == probe:
                break
            probe = parent
        if probe.exists() and not probe.is_dir():
            raise TrainingError(f"cannot create the output folder {out}: {probe} is a file, not a folder")
        # access() honours read-only file systems too; it is a hint, the write itself still checks.
        if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
            raise TrainingError(f"cannot write to the output folder {out}: {probe} is read-only for this user")
    except OSError as exc:  # a link loop, a name too long, a folder we may not even look into
        raise TrainingError(f"cannot use the output folder {out}: {exc.strerror or exc}") from None
    return out
