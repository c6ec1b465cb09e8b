"""Helpers of the GUI tests: the repository's paths, and waits on a shown main window (its dataset
report, the end of its run) that hold on a loaded machine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.training.dataset_models import ValidationReport

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample_qna.jsonl"


def wait_report(qtbot, win, timeout: int = 30000) -> ValidationReport:  # noqa: ANN001
    """Wait until the window has validated its dataset; return the report."""
    qtbot.waitUntil(lambda: win.state.dataset_report is not None, timeout=timeout)
    return win.state.dataset_report


def wait_run(qtbot, win, timeout: int = 60000) -> str:  # noqa: ANN001
    """Wait until the run ended, its thread is gone and the window has settled; return its status.

    The window refreshes its buttons in a timer after the thread ends (RunController._after_run
    polls until is_busy("run") is False), so "not busy" alone races with it; a fixed sleep
    fails on a loaded machine. The options form is re-enabled by that refresh and by nothing
    else after a run, so it marks the end of _after_run.
    """
    qtbot.waitUntil(
        lambda: win.state.run_status not in ("", "running") and not win.tasks.is_busy("run") and win.options.isEnabled(),
        timeout=timeout,
    )
    return win.state.run_status
