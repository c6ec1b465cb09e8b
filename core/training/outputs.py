"""A training output folder: the early check, the lock, the staging folder and the swap.

:func:`check_output_dir` runs before the dataset scan or any model loads: a run into ``--out``
that is a file, or under a file or a read-only folder, would otherwise fail only when it writes
(after a long scan or training) and with a raw ``OSError``. It says why at once, in one line,
and creates nothing.

The rest applies :mod:`core.staging` to a real training's output ``OUT/``: it is replaced only
when it is a TinyForge training output holding nothing else (:func:`check_replaceable_output`);
rank 0 holds its lock for the whole run (:func:`lock_output`); the run builds in a staging
folder beside it (:func:`staging_tag` names the one every ``torchrun`` rank shares) that
:func:`publish` swaps in whole; :func:`remove_stale_staging` clears what a killed child left.
Every refusal is a one-line :class:`~core.training.errors.TrainingError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from core.run_layout import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    EVALUATION_FILE,
    EVALUATIONS_DIR,
    MODEL_DIR,
    MODEL_MANIFEST_FILE,
    MODEL_STUB_FILE,
    TRAINING_REPORT_FILE,
    VARIANTS_FILE,
)
from core.staging import OutputFolderError, check_replaceable, discard, locked_output, swap_in
from core.training.errors import TrainingError

log = logging.getLogger(__name__)

__all__ = [
    "absent_or_empty",
    "check_output_dir",
    "check_replaceable_output",
    "lock_output",
    "publish",
    "remove_stale_staging",
    "staging_tag",
]

# What a training output holds (core.run_layout names them); model/ is the merged model.
_OUR_ENTRIES = (MODEL_DIR, ADAPTER_DIR, CHECKPOINTS_DIR, TRAINING_REPORT_FILE, MODEL_MANIFEST_FILE, EVALUATION_FILE,
                VARIANTS_FILE)
# An existing output is replaced only when one of these says it is ours ...
_MARKERS = (TRAINING_REPORT_FILE, MODEL_MANIFEST_FILE, MODEL_STUB_FILE)
# ... and it holds nothing else (a file a user put there is never deleted by a retrain).
_KNOWN_ENTRIES = (*_OUR_ENTRIES, MODEL_STUB_FILE, EVALUATIONS_DIR)


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


def check_replaceable_output(output: Path) -> None:
    """Raise ``TrainingError`` unless ``output`` is absent, empty, or a training output holding
    only our entries (see :func:`core.staging.check_replaceable`)."""
    try:
        check_replaceable(output, _MARKERS, "training output", allowed=_KNOWN_ENTRIES)
    except OutputFolderError as error:
        raise TrainingError(str(error)) from error


def absent_or_empty(folder: Path) -> bool:
    """True when ``folder`` does not exist or is an empty folder (where a failed report may go)."""
    try:
        return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))
    except OSError:
        return False


def lock_output(output: Path, rank: int) -> Callable[[], None]:
    """Rank 0 holds the output folder's lock for the whole run and clears dead leftovers beside it;
    returns what releases it."""
    if rank != 0:
        return lambda: None
    held = contextlib.ExitStack()
    try:
        held.enter_context(locked_output(output))
    except OutputFolderError as error:
        raise TrainingError(str(error)) from error
    return held.close


def staging_tag(world_size: int) -> str | None:
    """The staging folder's tag under torchrun, so every rank builds in the same one."""
    if world_size > 1:
        run_id = os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("MASTER_PORT", "dist")
        return f"dist{run_id}"
    return None


def publish(staging: Path, output: Path, completed: bool) -> list[Path]:
    """Swap the finished ``staging`` folder in as ``output``, whole; return what it holds.

    A completed run replaces the previous output (so no stale ``adapter/`` or ``checkpoints/``
    survives). A cancelled one does too, unless the previous output holds a completed model:
    that model, its adapter and report stay exactly as they were, and only ``checkpoints/``
    (with the cancelled run's report inside) is swapped in beside them for ``resume``.
    Any failure leaves the previous output as it was.
    """
    check_replaceable_output(output)  # again: a user may have put files there while we trained
    if completed:
        discard(staging / CHECKPOINTS_DIR)  # nothing left to resume
    if completed or not (output / MODEL_MANIFEST_FILE).is_file():
        swap_in(staging, output)
        return sorted(output.iterdir())
    checkpoints = staging / CHECKPOINTS_DIR
    if not checkpoints.is_dir():
        return []  # the rest of the staging folder goes when the run's staging block ends
    os.replace(staging / TRAINING_REPORT_FILE, checkpoints / TRAINING_REPORT_FILE)
    swap_in(checkpoints, output / CHECKPOINTS_DIR)
    return [output / CHECKPOINTS_DIR]


def remove_stale_staging(output: Path) -> None:
    """A killed child cannot clean up: remove the temp output folders of dead processes (its own
    among them, and its lock file), never those of a live run."""
    from core.staging import OutputInUseError, remove_leftovers

    output = output.expanduser().resolve()
    try:
        with locked_output(output):  # free now that the child is dead; releasing removes the file
            pass
    except OutputInUseError:  # another run took the folder meanwhile: its files are its own
        remove_leftovers(output)
