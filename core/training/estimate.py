"""Estimate a real training run before committing to it: train a few real steps, then project.

:func:`estimate_run` runs ``probe_steps`` optimizer steps of ``config`` in a child process (the
same :func:`core.training.child_supervisor.run_training_subprocess` a real run uses, output in a temp
folder that is removed afterwards), times the steps, samples the child's memory, and projects
the whole run: steps per epoch × epochs (or ``max_steps``) × seconds per step, plus the fixed
cost of loading and saving. Headless; no torch in this process.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.events import Cancelled, CancelToken, Event, EventCallback, Progress, noop
from core.run_layout import Estimate, TrainingReport
from core.training.config import TrainConfig
from core.training.recipe import choose_recipe, steps_per_epoch

logger = logging.getLogger(__name__)

__all__ = ["StepPlan", "estimate_run", "project_steps"]

_MEMORY_POLL_S = 0.05
_WORKER_MARKERS = ("core.training.child_main", "--training-child")
# Evaluation runs about five times in a run (every total_steps // 5 steps); a forward-only
# eval batch costs roughly a third of a training step.
_EVALS_PER_RUN = 5
_EVAL_STEP_FRACTION = 1 / 3


SURFACE_PER_QUESTION = 6  # the question and its surface variants (core.training.variants)


@dataclass(frozen=True)
class StepPlan:
    """How many records train and are held out, and the optimizer steps of the whole run."""

    n_train: int
    n_eval: int
    steps_per_epoch: int
    total_steps: int


def project_steps(config: TrainConfig, n_records: int) -> StepPlan:
    """Optimizer steps of the full run for ``n_records`` valid records, with the trainer's rules
    (the record split of ``evaluate.held_out_count``; steps per epoch from the batch size).
    With question variants every record trains with about :data:`SURFACE_PER_QUESTION` surface
    variants and half the asked rephrasings (what the filter keeps), one phrasing held out."""
    from core.training.evaluate import held_out_count
    from core.training.phrasings import variants_wanted

    wanted = variants_wanted(config)
    if wanted > 0:
        n_eval = n_records
        n_train = n_records * (SURFACE_PER_QUESTION + max(1, wanted // 2))
    else:
        n_eval = held_out_count(n_records, config.eval_split)
        n_train = max(0, n_records - n_eval)
    recipe = choose_recipe(config, n_train)
    per_epoch = steps_per_epoch(n_train, config.batch_size, config.grad_accum)
    return StepPlan(n_train=n_train, n_eval=n_eval, steps_per_epoch=per_epoch, total_steps=recipe.total_steps)


class _PeakMemory:
    """Samples the resident memory of new training children (psutil) on a daemon thread."""

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._known: set[int] = set()
        self._thread: threading.Thread | None = None
        try:
            import psutil

            self._psutil: Any = psutil
            self._known = {p.pid for p in psutil.Process().children(recursive=True)}
        except ImportError:  # pragma: no cover - psutil is a dependency
            self._psutil = None

    def __enter__(self) -> _PeakMemory:
        if self._psutil is not None:
            self._thread = threading.Thread(target=self._poll, name="tinyforge-estimate-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _poll(self) -> None:
        psutil = self._psutil
        me = psutil.Process()
        while not self._stop.wait(_MEMORY_POLL_S):
            total = 0
            try:
                children = me.children(recursive=True)
            except psutil.Error:
                continue
            for child in children:
                if child.pid in self._known:
                    continue
                try:
                    if not any(m in " ".join(child.cmdline()) for m in _WORKER_MARKERS):
                        self._known.add(child.pid)
                        continue
                    total += child.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_bytes = max(self.peak_bytes, total)


def _children_maxrss_bytes() -> int:
    """Largest resident set of any waited-for child so far (0 where unsupported)."""
    try:
        import resource
        import sys

        value = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        return int(value if sys.platform == "darwin" else value * 1024)
    except (ImportError, OSError):
        return 0


@dataclass
class _Probe:
    """What the probe run left: its report, wall seconds, when each step ended, memory figures."""

    report: TrainingReport
    wall: float
    step_times: dict[int, float]
    sampled_peak_bytes: int
    rss_before: int


def estimate_run(
    config: TrainConfig,
    probe_steps: int = 3,
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
) -> Estimate:
    """Train ``probe_steps`` real steps of ``config`` and project the full run.

    Returns the :class:`core.run_layout.Estimate`: ``seconds_per_step``, ``total_steps``, ``steps_per_epoch``,
    ``projected_train_seconds``, ``projected_total_seconds``, ``overhead_seconds``,
    ``peak_rss_bytes``, ``probe_steps``, ``probe_seconds``, ``n_train``, ``n_eval``, ``device``,
    ``precision``, ``tokens_per_second`` and the recipe.
    Raises :class:`core.events.Cancelled` when ``cancel`` is set, and what the trainer raises for
    bad input (``TrainingError``) or a crashed child (``TrainingProcessError``).
    """
    probe_steps = max(2, int(probe_steps))
    probe = _run_probe(config, probe_steps, on_event or noop, cancel)
    if (cancel is not None and cancel.cancelled) or probe.report.status == "cancelled":
        raise Cancelled("estimate cancelled")
    result = _project(config, probe_steps, probe)
    logger.info("estimate: %s", result)
    return result


def _run_probe(config: TrainConfig, probe_steps: int, emit: EventCallback, cancel: CancelToken | None) -> _Probe:
    """Train ``probe_steps`` steps in a child, in a temp folder removed afterwards, timing each step."""
    from core.training.child_supervisor import run_training_subprocess

    step_times: dict[int, float] = {}

    def relay(event: Event) -> None:
        if isinstance(event, Progress) and event.stage == "train" and event.step > 0:
            step_times.setdefault(int(event.step), time.perf_counter())
        emit(event)

    work = Path(tempfile.mkdtemp(prefix="tinyforge-estimate-"))
    # No eval set in the probe: evaluation after each of 3 steps would distort the step time.
    probe = config.model_copy(update={
        "output_dir": str(work / "model"), "max_steps": probe_steps, "eval_split": 0.0,
        "resume": False, "dry_run": False, "logging_steps": 1,
    })
    rss_before = _children_maxrss_bytes()
    started = time.perf_counter()
    try:
        with _PeakMemory() as memory:
            report = TrainingReport.model_validate(run_training_subprocess(probe, relay, cancel))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _Probe(report, time.perf_counter() - started, step_times, memory.peak_bytes, rss_before)


def _seconds_per_step(probe: _Probe, probe_steps: int) -> float:
    """Seconds per optimizer step, from the end of the first step (which pays for warm-up:
    allocations, caches); else the report's train seconds over its steps."""
    steps = sorted(probe.step_times)
    if len(steps) >= 2 and steps[-1] > steps[0]:
        return (probe.step_times[steps[-1]] - probe.step_times[steps[0]]) / (steps[-1] - steps[0])
    done = int(probe.report.global_step or probe_steps)
    return float(probe.report.train_seconds or probe.wall) / max(1, done)


def _peak_rss_bytes(probe: _Probe) -> int:
    """The psutil samples; else the children's max RSS when this probe raised it."""
    return probe.sampled_peak_bytes or (
        _children_maxrss_bytes() if _children_maxrss_bytes() > probe.rss_before else 0)


def _project(config: TrainConfig, probe_steps: int, probe: _Probe) -> Estimate:
    """The whole run's figures from the probe: steps × seconds per step, evaluation, fixed cost."""
    report = probe.report
    per_step = _seconds_per_step(probe, probe_steps)
    train_seconds = float(report.train_seconds or per_step * probe_steps)
    overhead = max(0.0, probe.wall - train_seconds)
    n_records = int(report.n_records or report.n_train or 0)
    plan = project_steps(config, n_records)
    report_recipe = choose_recipe(config, plan.n_train, (report.recipe or {}).get("lora_targets"))
    eval_batches = math.ceil(plan.n_eval / config.batch_size) if plan.n_eval else 0
    eval_seconds = _EVALS_PER_RUN * eval_batches * per_step * _EVAL_STEP_FRACTION
    projected_train = plan.total_steps * per_step + eval_seconds
    peak = _peak_rss_bytes(probe)
    return Estimate(
        probe_steps=probe_steps,
        probe_seconds=round(probe.wall, 3),
        seconds_per_step=round(per_step, 4),
        n_train=plan.n_train,
        n_eval=plan.n_eval,
        steps_per_epoch=plan.steps_per_epoch,
        total_steps=plan.total_steps,
        epochs=report_recipe.epochs,
        max_steps=report_recipe.max_steps,
        recipe=report_recipe.as_record(),
        recipe_summary=report_recipe.summary(),
        projected_train_seconds=round(projected_train, 2),
        overhead_seconds=round(overhead, 2),
        projected_total_seconds=round(projected_train + overhead, 2),
        peak_rss_bytes=int(peak),
        memory_source="psutil (sampled)" if probe.sampled_peak_bytes else "getrusage (max of children)",
        device=report.device,
        precision=report.precision,
        tokens_per_second=report.tokens_per_second,
        base_model=config.base_model,
    )
