"""``run.json``: what a run does (:class:`RunOptions`) and what became of it (:class:`RunRecord`).

:func:`read_run` reads one run folder's record, :func:`list_runs` the runs under a folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, field_serializer, model_validator

from core.options import RunOptions
from core.run_layout.names import RUN_FILE
from core.run_layout.results import RunFileError, _read, _Result, _tolerant

logger = logging.getLogger(__name__)


RunStatus = Literal["created", "running", "completed", "failed", "cancelled"]


class DatasetInfo(_Result):
    path: str = ""
    size: int | None = None
    sha256: str | None = None


class StageRecord(_Result):
    name: str = ""
    status: str = ""
    seconds: float | None = None
    result: Any = None


class RunError(_Result):
    message: str = ""
    details: str = ""


class RunRecord(_Result):
    """``run.json``: one run's options, dataset, stages, timings and outcome.

    The fields are in the order the file has always had them (:func:`core.runs.create_run`
    writes the first eight, executing a run adds the times and the error). The options are
    written back as they were read, with what changed since (an option this version does not
    know, or options it cannot read, are not lost by saving the record)."""

    run_id: str = ""
    status: str = "unknown"  # a RunStatus; any string of an older or newer file reads
    created_time: str = ""
    options: Annotated[RunOptions | None, _tolerant(RunOptions)] = None
    dataset: DatasetInfo = Field(default_factory=DatasetInfo)
    stages: list[StageRecord] = Field(default_factory=list)
    timings: dict[str, float | None] = Field(default_factory=dict)
    versions: dict[str, str | None] = Field(default_factory=dict)
    started_time: str | None = None
    error: RunError | None = None
    finished_time: str | None = None
    # Where it was read from (not a field of the file).
    folder: Path | None = Field(default=None, exclude=True)
    _options_as_read: Any = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_options(cls, data: Any, handler: Callable[[Any], RunRecord]) -> RunRecord:
        record = handler(data)
        if isinstance(data, dict) and not isinstance(data.get("options"), BaseModel):
            record._options_as_read = data.get("options")
        return record

    @field_serializer("options")
    def _options_out(self, options: RunOptions | None) -> Any:
        if options is None:
            return self._options_as_read
        written = options.model_dump(mode="json")
        return _merged(self._options_as_read, written) if isinstance(self._options_as_read, dict) else written

    @property
    def name(self) -> str:
        return self.run_id or (self.folder.name if self.folder else "")

    def clear_error(self) -> None:
        """No ``error`` in the file any more (a run executed again)."""
        self.error = None
        self.model_fields_set.discard("error")


def _merged(read: dict[str, Any], written: dict[str, Any]) -> dict[str, Any]:
    """``read`` with ``written``'s values over it, recursively: its order and its other keys kept."""
    out = dict(read)
    for key, value in written.items():
        before = out.get(key)
        out[key] = _merged(before, value) if isinstance(before, dict) and isinstance(value, dict) else value
    return out


# --------------------------------------------------------------------------- readers


def read_run(run_dir: str | os.PathLike[str]) -> RunRecord:
    """``run_dir/run.json``."""
    folder = Path(run_dir)
    record = _read(RunRecord, folder / RUN_FILE)
    record.folder = folder
    return record


def list_runs(root: str | os.PathLike[str]) -> list[RunRecord]:
    """The runs under ``root``, newest first; folders without a readable run.json are skipped."""
    try:
        children = list(Path(root).iterdir())
    except OSError:  # missing, not a folder, no permission: no runs to show
        return []
    found: list[RunRecord] = []
    for child in children:
        if not (child / RUN_FILE).is_file():
            continue
        try:
            found.append(read_run(child))
        except RunFileError as exc:
            logger.warning("skipping unreadable run: %s", exc)
    found.sort(key=lambda r: (r.created_time, r.folder.name if r.folder else ""), reverse=True)
    return found
