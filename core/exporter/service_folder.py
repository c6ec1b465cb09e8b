"""The service folder: assembled beside its target from the template, swapped in whole, announced.

A leaf module (core's events, errors, staging and run layout only): both the dry-run builder
(:mod:`core.exporter.service_build`) and the real export (:mod:`core.exporter.onnx_export`) use it,
so neither imports the other for it.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from core.events import ArtifactWritten, EventCallback, Finished, Log
from core.exporter.errors import ExportError, OutputExistsError
from core.run_layout import (
    EXPORT_REPORT_FILE,
    GGUF_DIR,
    MODEL_CONFIG_DIR,
    MODEL_METADATA_FILE,
    ONNX_DIR,
    PROMPT_FILE,
    TOKENIZER_FILE,
    ExportReport,
    ModelMetadata,
)
from core.staging import (
    OutputFolderError,
    check_replaceable,
    locked_output,
    staging_folder,
    swap_in,
    write_owned_list,
)

logger = logging.getLogger(__name__)

R = TypeVar("R", ExportReport, ModelMetadata)

__all__ = ["SERVICE_MARKER", "SERVICE_TEMPLATE", "announce_service_folder", "copy_service_template",
           "staged_output_dir"]

SERVICE_TEMPLATE = Path(__file__).with_name("service_template")
SERVICE_MARKER = MODEL_METADATA_FILE  # what makes a folder a TinyForge service (to replace)
# What an export writes at the top of a service folder, for folders exported before each one
# recorded its own list of files (``core.staging.OWNED_LIST``): anything else there is the user's.
_SERVICE_ENTRIES = frozenset(
    {p.name for p in SERVICE_TEMPLATE.iterdir()}
    | {SERVICE_MARKER, EXPORT_REPORT_FILE, ONNX_DIR, GGUF_DIR, TOKENIZER_FILE, MODEL_CONFIG_DIR, PROMPT_FILE}
)


def copy_service_template(destination: Path) -> None:
    """The service template's files (no bytecode) into ``destination``; ``run.sh`` executable."""
    for item in SERVICE_TEMPLATE.iterdir():
        if item.name == "__pycache__" or item.name.endswith(".pyc"):
            continue
        if item.is_dir():
            shutil.copytree(item, destination / item.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(item, destination / item.name)
    run_script = destination / "run.sh"
    if run_script.exists():
        run_script.chmod(0o755)


@contextmanager
def staged_output_dir(output_dir: str | os.PathLike[str], overwrite: bool) -> Iterator[Path]:
    """Yield a temp folder beside ``output_dir``; on success it replaces ``output_dir`` whole.

    An existing ``output_dir`` without ``overwrite`` is refused before anything is written, and
    with ``overwrite`` too unless it is a TinyForge service (its ``model_metadata.json`` is
    there) holding only files an export wrote, or empty. The folder is locked for the whole build (a second export into it is
    refused), leftovers of dead builds beside it are removed, and on any error the temp folder
    is removed and the existing folder is left exactly as it was.
    """
    target = Path(output_dir).expanduser().absolute()
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise OutputExistsError(f"Output folder already exists: {target} (use --overwrite to replace it)")
    try:
        check_replaceable(target, [SERVICE_MARKER], "service folder", _SERVICE_ENTRIES)
        with locked_output(target):
            check_replaceable(target, [SERVICE_MARKER], "service folder", _SERVICE_ENTRIES)  # as it is now, locked
            if (target.exists() or target.is_symlink()) and not overwrite:
                raise OutputExistsError(f"Output folder already exists: {target} (use --overwrite to replace it)")
            with staging_folder(target) as folder:
                yield folder
                write_owned_list(folder)
                # Again at the last moment: a user may have put files there while we exported.
                check_replaceable(target, [SERVICE_MARKER], "service folder", _SERVICE_ENTRIES)
                swap_in(folder, target)
    except OutputFolderError as exc:
        raise ExportError(str(exc)) from exc


def announce_service_folder(target: Path, report: R, emit: EventCallback, note: str = "") -> R:
    """Report every file of a finished service folder, its warnings, and the end of the export
    (the ``Finished`` event carries the report as the file holds it)."""
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        emit(ArtifactWritten(str(path)))
    for warning in report.warnings if isinstance(report, ExportReport) else []:
        emit(Log(warning, "warning"))
    emit(Log(f"Service folder ready: {target}" + (f" ({note})" if note else "")))
    emit(Finished("completed", report.to_json()))
    return report
