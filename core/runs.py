"""Run folders: one folder per train/export run, with ``run.json`` and ``events.jsonl``.

Headless (no Qt): the GUI, the CLI or a script create a run, execute its stages with an event
callback and a cancel token, and list past runs. A cancelled or failed stage never leaves a
half-written ``model/`` or ``service/`` behind: a stage either writes into a staging folder that
is swapped into place on success, or writes atomically itself and its new folder is removed
when it fails. A run is locked while it executes (``.RUN.tinyforge.lock`` beside it), so a
second process cannot execute the same run at once.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.events import (
    ArtifactWritten,
    Cancelled,
    CancelToken,
    Event,
    EventCallback,
    Finished,
    Log,
    StageStarted,
)
from core.failures import describe
from core.jsonio import utc_now_iso
from core.options import TrainConfig
from core.run_layout import (  # noqa: F401 - the layout's names and input models, re-exported
    CHECKPOINTS_DIR,
    EVENTS_FILE,
    MODEL_DIR,
    MODEL_MANIFEST_FILE,
    RESUME_DIR,
    RUN_FILE,
    SERVICE_DIR,
    DatasetInfo,
    ExportOptions,
    ExportReport,
    ModelMetadata,
    RunError,
    RunFileError,
    RunOptions,
    RunRecord,
    RunStatus,
    StageRecord,
    TrainingReport,
    read_run,
    write_result,
)
from core.run_layout import list_runs as _list_records
from core.staging import OutputFolderError, discard, output_lock, remove_leftovers, staging_folder, swap_in

logger = logging.getLogger(__name__)

@dataclass
class RunFolder:
    """A run on disk; ``record`` mirrors ``run.json`` (:meth:`save` writes it; saving loses no
    key of the file as read, see :class:`core.run_layout.RunRecord`)."""

    path: Path
    record: RunRecord = field(default_factory=RunRecord)

    @property
    def run_id(self) -> str:
        return self.record.run_id or self.path.name

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def service_dir(self) -> Path:
        return self.path / SERVICE_DIR

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def events_file(self) -> Path:
        return self.path / EVENTS_FILE

    def options(self) -> RunOptions:
        """The options this run was created with (to load them back into a form)."""
        if self.record.options is None:
            raise RunFileError(self.run_file, "no options this version can read")
        return self.record.options.model_copy(deep=True)

    def save(self) -> None:
        write_result(self.run_file, self.record)


# A stage gets the run, the folder to write into, the event callback and the cancel token;
# it returns a small JSON-able result or a report model (run.json keeps it as the file holds it).
StageFn = Callable[["RunFolder", Path, EventCallback, CancelToken], Any]


@dataclass(frozen=True)
class Stage:
    """``fn`` writes into ``target`` (a folder name in the run). With ``staged`` it writes into a
    hidden staging folder that is renamed into place on success; without, the stage writes its
    final folder itself (atomically, as core's trainer and builder do) and a target that did not
    exist before is removed when the stage fails or is cancelled."""

    name: str
    target: str  # folder name inside the run ("model" or "service")
    fn: StageFn
    staged: bool = True


def _versions() -> dict[str, str]:
    """Versions worth recording, read from package metadata (imports nothing heavy)."""
    from importlib import metadata

    from core import __version__

    out = {"tinyforge": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "transformers", "peft", "onnx", "onnxruntime", "pydantic"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _file_sha256(path: Path, cancel: CancelToken | None = None) -> str:
    import hashlib

    from core.training.dataset_scan import open_dataset

    digest = hashlib.sha256()
    with open_dataset(path) as handle:  # regular files only: never blocks on a FIFO
        while chunk := handle.read(1 << 20):
            if cancel is not None:
                cancel.raise_if_cancelled()
            digest.update(chunk)
    return digest.hexdigest()


def _new_run_dir(output_root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        name = f"run-{stamp}" if n == 0 else f"run-{stamp}-{n}"
        candidate = output_root / name
        try:
            candidate.mkdir(parents=True)
        except FileExistsError:
            continue
        except OSError as exc:  # read-only, not a folder, disk full: say where, in one line
            reason = exc.strerror or type(exc).__name__
            raise OSError(f"cannot create a run folder in {output_root}: {reason.lower()}; "
                          "choose another output folder") from exc
        return candidate
    raise RuntimeError(f"could not create a run folder in {output_root}")


def create_run(
    output_root: str | os.PathLike[str],
    options: RunOptions,
    dataset_sha256: str | None = None,
) -> RunFolder:
    """Create ``output_root/run-YYYYmmdd-HHMMSS`` with a ``run.json`` in status ``created``.

    The dataset hash is computed here when not given (the GUI passes the one its scan found).
    """
    root = Path(output_root).expanduser().resolve()
    path = _new_run_dir(root)
    options = options.model_copy(deep=True)
    if "train" in options.actions:
        options.train.output_dir = str(path / MODEL_DIR)
    data = Path(options.train.data_path)
    dataset = DatasetInfo(path=str(data))
    if data.is_file():
        dataset.size = data.stat().st_size
        dataset.sha256 = dataset_sha256 or _file_sha256(data)
    record = RunRecord(
        run_id=path.name,
        status="created",
        created_time=utc_now_iso(),
        options=options,
        dataset=dataset,
        stages=[],
        timings={},
        versions=_versions(),
        folder=path,
    )
    run = RunFolder(path=path, record=record)
    run.save()
    return run


def open_run(path: str | os.PathLike[str]) -> RunFolder:
    """Load a run folder written by :func:`create_run`; :class:`core.run_layout.RunFileError`
    (a ``ValueError``) when its run.json is missing, unreadable or not a run record."""
    folder = Path(path)
    return RunFolder(path=folder, record=read_run(folder))


def list_runs(output_root: str | os.PathLike[str]) -> list[RunFolder]:
    """Runs under ``output_root``, newest first; folders without a readable run.json are skipped
    (:func:`core.run_layout.list_runs` reads and orders them)."""
    return [RunFolder(path=info.folder, record=info) for info in _list_records(output_root) if info.folder is not None]


class _EventSink:
    """Appends every event to events.jsonl (one JSON line each) and forwards it."""

    def __init__(self, path: Path, forward: EventCallback | None, remap: dict[str, str]) -> None:
        self._handle = path.open("a", encoding="utf-8")
        self._forward = forward
        self._lock = threading.Lock()
        self.remap = remap  # staging prefix -> final prefix, for ArtifactWritten paths

    def __call__(self, event: Event) -> None:
        if isinstance(event, ArtifactWritten):
            for staging, final in self.remap.items():
                if event.path.startswith(staging):
                    event = ArtifactWritten(path=final + event.path[len(staging) :])
                    break
        with self._lock:
            self._handle.write(json.dumps(event.to_dict(), default=str) + "\n")
            self._handle.flush()
        if self._forward is not None:
            try:
                self._forward(event)
            except Exception:  # a broken listener must not break the run
                logger.exception("event listener failed")

    def close(self) -> None:
        with self._lock:
            self._handle.close()


def _promote(staging: Path, final: Path, overwrite: bool) -> None:
    """Swap a finished staging folder in as ``final`` (replacing it only when allowed, and only
    inside a run folder); a failure leaves the old ``final`` as it was."""
    if final.exists():
        if not overwrite:
            raise FileExistsError(f"{final} already exists (enable overwrite to replace it)")
        if not (final.parent / RUN_FILE).is_file():
            raise OutputFolderError(f"refusing to replace {final}: {final.parent} is not a TinyForge run (no {RUN_FILE})")
    swap_in(staging, final)


def execute_run(
    run: RunFolder,
    stages: Sequence[Stage],
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
    overwrite: bool = False,
) -> str:
    """Run ``stages`` in order; return the final status (completed, failed or cancelled).

    Never raises for a stage failure: the stages only raise, and this is where a failure is
    reported, once: recorded in run.json, written to events.jsonl as the run's one ``Failed``
    event and forwarded to ``on_event``. Raises
    :class:`core.staging.OutputInUseError`, touching nothing, while another process executes
    the same run.
    """
    with output_lock(run.path):
        return _execute_locked(run, stages, on_event, cancel or CancelToken(), overwrite)


def _execute_locked(
    run: RunFolder, stages: Sequence[Stage], on_event: EventCallback | None, cancel: CancelToken, overwrite: bool
) -> str:
    sink = _EventSink(run.events_file, on_event, {})
    record = run.record
    record.status = "running"
    record.started_time = utc_now_iso()
    record.clear_error()
    run.save()
    started = time.perf_counter()
    status = "completed"
    try:
        for stage in stages:
            cancel.raise_if_cancelled()
            t0 = time.perf_counter()
            result = _run_stage(run, stage, sink, cancel, overwrite)
            elapsed = round(time.perf_counter() - t0, 3)
            record.timings[stage.name] = elapsed
            record.stages.append(StageRecord(name=stage.name, status="completed", seconds=elapsed,
                                             result=_jsonable(result)))
            run.save()
            sink(Log(message=f"{stage.name} finished in {elapsed:.2f} s", level="info"))
    except Cancelled:
        status = "cancelled"
        sink(Log(message="run cancelled; partial output removed", level="warning"))
    except Exception as exc:  # errors are results: record, report (once), carry on
        status = "failed"
        failure = describe(exc)
        record.error = RunError(message=failure.headline, details=failure.details)
        sink(failure.event(short=True))
    record.status = status
    record.finished_time = utc_now_iso()
    record.timings["total"] = round(time.perf_counter() - started, 3)
    run.save()
    if status != "failed":
        sink(Finished(status=status, result={"run_dir": str(run.path), "status": status}))
    sink.close()
    return status


def _run_stage(run: RunFolder, stage: Stage, sink: _EventSink, cancel: CancelToken, overwrite: bool) -> Any:
    """One stage into its target: staged (built beside, swapped in) or written in place (a new
    target is removed again when the stage fails or is cancelled)."""
    final = run.path / stage.target
    if final.exists() and not overwrite:
        raise FileExistsError(f"{stage.target}/ already exists in {run.path.name} (enable overwrite to replace it)")
    if not stage.staged:
        new = not final.exists()
        sink.remap = {}
        sink(StageStarted(stage=stage.name, message=f"{stage.name} started"))
        try:
            result = stage.fn(run, final, sink, cancel)
            cancel.raise_if_cancelled()
        except BaseException:
            if new:
                discard(final)
            raise
        return result
    legacy = run.path / f".{stage.target}.partial"  # the fixed name earlier versions used
    if legacy.exists():
        discard(legacy)
    remove_leftovers(final)  # of dead runs (this run is locked)
    with staging_folder(final) as staging:
        staging.rmdir()  # a unique name (pid + random); the stage creates the folder when it writes
        sink.remap = {str(staging): str(final)}
        sink(StageStarted(stage=stage.name, message=f"{stage.name} started"))
        result = stage.fn(run, staging, sink, cancel)
        cancel.raise_if_cancelled()
        if staging.exists():
            _promote(staging, final, overwrite)
    return result


def _jsonable(value: Any) -> Any:
    """A stage's result as run.json keeps it: a report model as its file holds it."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


# ---- standard stages -------------------------------------------------------------------------


def resumable(run_dir: str | os.PathLike[str]) -> bool:
    """True when ``run_dir`` holds the checkpoint of a cancelled real training."""
    return bool(run_dir) and (Path(run_dir) / RESUME_DIR / CHECKPOINTS_DIR).is_dir()


def _keep_checkpoint(run: RunFolder, out: Path, report: TrainingReport | None, on_event: EventCallback) -> None:
    """A real training that did not complete keeps its checkpoint in ``model.cancelled/``.

    execute_run removes a cancelled stage's output so no half-written model/ remains; the
    checkpoint is not half-written, and Resume continues from it.
    """
    if (report is None or report.status != "completed") and (out / CHECKPOINTS_DIR).is_dir():
        if (out / MODEL_MANIFEST_FILE).is_file():  # an earlier completed model stays where it is
            return
        keep = run.path / RESUME_DIR
        discard(keep)
        out.rename(keep)
        on_event(Log(message=f"checkpoint kept in {RESUME_DIR}/: resume continues from it", level="warning"))


def train_stage(run: RunFolder, out: Path, on_event: EventCallback,
                cancel: CancelToken) -> TrainingReport | dict[str, Any]:
    """Dry run in process (writes the placeholder model_stub.json; returns its content, as
    TinyForgeAI's ``run_training`` does); real training in a child process (its report)."""
    options = run.options()
    config = options.train.model_copy(update={"output_dir": str(out)})
    if config.dry_run:
        from core.training.run import run_training

        return run_training(config.data_path, str(out), dry_run=True, on_event=on_event, cancel=cancel, config=config)
    return _train_in_child(run, out, config, on_event, cancel)


def resume_stage(run: RunFolder, out: Path, on_event: EventCallback, cancel: CancelToken) -> TrainingReport:
    """Continue a cancelled real training from the checkpoint in ``model.cancelled/``."""
    keep = run.path / RESUME_DIR
    if not keep.is_dir():
        raise FileNotFoundError(f"nothing to resume: {keep} does not exist")
    keep.rename(out)
    config = run.options().train.model_copy(update={"output_dir": str(out), "resume": True})
    return _train_in_child(run, out, config, on_event, cancel)


def _train_in_child(run: RunFolder, out: Path, config: TrainConfig, on_event: EventCallback,
                    cancel: CancelToken) -> TrainingReport:
    """Real training in a child process: its report, typed (the child sends
    ``training_report.json``'s content as JSON). A run that did not complete keeps its checkpoint."""
    from core.training.child_supervisor import run_training_subprocess

    report: TrainingReport | None = None
    try:
        report = TrainingReport.model_validate(run_training_subprocess(config, on_event, cancel))
        return report
    finally:
        _keep_checkpoint(run, out, report, on_event)


def export_stage(run: RunFolder, out: Path, on_event: EventCallback, cancel: CancelToken) -> ExportReport | ModelMetadata:
    """Build the service (:func:`core.exporter.service_build.build_service`) from this run's model
    (or ``source_model``) into ``service/``."""
    from core.exporter.service_build import build_service

    options = run.options()
    model = Path(options.source_model) if options.source_model else run.model_dir
    if not model.exists():
        raise FileNotFoundError(f"no model to export: {model} does not exist (train first)")
    return build_service(
        str(model),
        str(out),
        overwrite=options.export.overwrite,
        export_onnx=options.export.export_onnx,
        quantize=options.export.quantize,
        gguf=options.export.gguf,
        on_event=on_event,
        cancel=cancel,
    )


STANDARD_STAGES: dict[str, Stage] = {
    # core's trainer and builder write atomically themselves, so their paths stay final.
    "train": Stage(name="train", target=MODEL_DIR, fn=train_stage, staged=False),
    "export": Stage(name="export", target=SERVICE_DIR, fn=export_stage, staged=False),
}


def stages_for(actions: Iterable[str], resume: bool = False) -> list[Stage]:
    """The standard stages for ``actions`` (e.g. ``["train", "export"]``); with ``resume``,
    training continues a cancelled run's checkpoint instead of starting over."""
    stages = [STANDARD_STAGES[name] for name in actions]
    if resume:
        stages = [
            Stage(name=st.name, target=st.target, fn=resume_stage, staged=st.staged) if st.name == "train" else st
            for st in stages
        ]
    return stages


def run_actions(
    output_root: str | os.PathLike[str],
    options: RunOptions,
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
    dataset_sha256: str | None = None,
) -> RunFolder:
    """Create a run for ``options`` and execute its actions: the one-call API for scripts."""
    run = create_run(output_root, options, dataset_sha256=dataset_sha256)
    if on_event is not None:
        on_event(ArtifactWritten(path=str(run.run_file)))
    execute_run(run, stages_for(options.actions), on_event, cancel, overwrite=options.export.overwrite)
    return run
