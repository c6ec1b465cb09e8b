"""The run progress bar: words that agree with its numbers, text that fits, an ETA only where honest."""

from __future__ import annotations

import pytest

from core.exporter.onnx_export import EXPORT_STEPS  # every step name core reports
from tinyforge_gui.panels.run_panel import RunPanel
from tinyforge_gui.widgets.chart import LossChart
from tinyforge_gui.widgets.run_progress import (
    STEP_LABELS,
    WARMUP_STEPS,
    FittedProgressBar,
    StepRate,
    progress_texts,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def panel(qtbot):  # noqa: ANN001, ANN201
    widget = RunPanel()
    qtbot.addWidget(widget)
    widget.resize(880, 240)
    widget.show()
    clock = FakeClock()
    widget._clock = clock
    widget.start(["train", "export"], "Train → Export")
    yield widget, clock
    widget.finish("completed")


def _bar_fits(bar: FittedProgressBar) -> bool:
    return bar.fontMetrics().horizontalAdvance(bar.text()) <= bar.label_width()


def test_training_steps_get_an_eta_only_after_warm_up(panel) -> None:  # noqa: ANN001
    rp, clock = panel
    rp.on_stage("train", "training tiny-model (LoRA), 40 steps")
    rp.on_progress("train", 0, 40, "starting")
    clock.now += 20.0  # the first step holds start-up work: not part of the rate
    rp.on_progress("train", 1, 40, "ETA 0:13:00")
    etas = []
    for step in range(2, 29):
        clock.now += 2.0
        rp.on_progress("train", step, 40, "ETA 0:00:10")  # the trainer's own ETA is not shown
        etas.append(rp.eta.text())
    assert all("elapsed" in text for text in etas[:WARMUP_STEPS - 1])
    assert etas[-1] == "ETA 24s"  # 12 steps left at the measured 2 s a step
    clock.now += 5.0
    rp._update_eta()  # the 1 s ticker: the ETA counts down while a step runs
    assert rp.eta.text() == "ETA 19s"
    assert rp.progress.text() == "Training · step 28 of 40"
    assert rp.progress.value() == 700  # the stage's own fraction, as the words say
    assert "%" not in rp.progress.text()


def test_export_stages_give_no_eta(panel) -> None:  # noqa: ANN001
    rp, clock = panel
    rp.on_stage("export", "exporting /runs/run-1/model to ONNX and GGUF")
    for index, name in enumerate(EXPORT_STEPS, 1):
        clock.now += 30.0
        rp.on_progress("export", index, len(EXPORT_STEPS), name)
        assert "ETA" not in rp.eta.text()
        assert "elapsed" in rp.eta.text()
    assert rp.eta.text() == "5m 00s elapsed"
    rp.on_progress("export", 2, len(EXPORT_STEPS), EXPORT_STEPS[1])
    assert rp.progress.text() == "Exporting · ONNX graph (2 of 10)"
    assert "exporting the fp32 ONNX graph" in rp.progress.toolTip()  # the full name, in the tooltip
    for stage in ("evaluate", "variants", "gguf"):  # variable lengths: no projection either
        for step in range(1, 20):
            clock.now += 1.0
            rp.on_progress(stage, step, 40, "")
        assert "ETA" not in rp.eta.text()


def test_text_never_mixes_the_runs_share_with_a_stages_step() -> None:
    for stage, step, total, message in [
        ("train", 28, 40, "ETA 0:00:24"), ("export", 2, 9, "exporting the fp32 ONNX graph"),
        ("evaluate", 3, 10, ""), ("gguf", 1, 4, "converting to GGUF"), ("load", 0, 0, "loading base model x"),
    ]:
        for text in progress_texts(stage, step, total, message):
            assert "%" not in text and "ETA" not in text


def test_step_rate_restarts_with_a_new_stage() -> None:
    rate = StepRate()
    for step in range(0, 6):
        rate.add(step, 10.0 * step)
    assert rate.remaining(10) == pytest.approx(50.0)  # 5 steps left at 10 s each
    assert rate.remaining(10, now=62.0) == pytest.approx(38.0)  # counts down between steps
    rate.add(0, 100.0)  # step counter went back: a new stage
    assert rate.remaining(10) is None


def test_bar_text_fits_at_1280x820(window) -> None:  # noqa: ANN001
    """A simulated Train → Export in the real window: every text the bar shows fits inside it."""
    assert (window.width(), window.height()) == (1280, 820)
    rp = window.run_panel
    bar = rp.progress
    seen = []

    def shown() -> None:
        assert _bar_fits(bar), bar.text()
        assert "%" not in bar.text()
        seen.append(bar.text())

    rp.start(["train", "export"], "Resume Train → Export")
    shown()
    rp.on_stage("train", "train started")
    rp.on_stage("load", "loading base model HuggingFaceTB/SmolLM2-135M-Instruct")
    shown()
    for step in (1, 28, 12_000):
        rp.on_progress("train", step, 12_000, "ETA 0:10:00")
        shown()
    rp.on_stage("export", "exporting /a/very/long/path/to/runs/run-20240101-120000/model to ONNX and GGUF")
    shown()
    for index, name in enumerate(EXPORT_STEPS, 1):
        rp.on_progress("export", index, len(EXPORT_STEPS), name)
        shown()
        assert name.lower() in STEP_LABELS, f"no short label for core's export step {name!r}"
    rp.on_progress("export", 3, 10, "an unexpected step name that is much longer than any bar could hold " * 3)
    shown()
    assert bar.text() == "Exporting · 3 of 10"
    rp.finish("completed")
    shown()
    assert "Exporting · ONNX graph (2 of 10)" in seen and "Training · step 28 of 12,000" in seen
    assert "Loading the model" in seen and seen[-1].startswith("Completed in ")


def test_narrow_bar_falls_back_to_shorter_text(qtbot) -> None:  # noqa: ANN001
    bar = FittedProgressBar()
    qtbot.addWidget(bar)
    bar.setRange(0, 10)
    bar.setValue(6)
    bar.resize(140, 22)
    bar.show()
    bar.set_texts(progress_texts("export", 6, 10, "checking parity and latency against torch"))
    assert bar.text() == "Exporting · 6 of 10" and _bar_fits(bar)
    bar.resize(60, 22)
    assert _bar_fits(bar) and bar.text() in ("6/10", "")
    bar.resize(600, 22)
    assert bar.text() == "Exporting · parity check (6 of 10)"


def test_export_steps_go_to_the_log_in_full(window) -> None:  # noqa: ANN001
    rc, log = window.run_controller, window.run_panel.log
    rc._on_step_log("export", 2, 10, "exporting the fp32 ONNX graph")
    rc._on_step_log("export", 2, 10, "exporting the fp32 ONNX graph")  # once
    rc._on_step_log("train", 5, 40, "ETA 0:00:30")  # not news
    log.flush()
    text = log.toPlainText()
    assert text.count("export 2/10: exporting the fp32 ONNX graph") == 1 and "ETA 0:00:30" not in text


def test_cancelling_stays_on_the_bar(panel) -> None:  # noqa: ANN001
    rp, _ = panel
    rp.on_progress("train", 5, 40, "")
    rp.show_cancelling()
    rp.on_progress("train", 6, 40, "")
    assert rp.progress.text() == "Cancelling…" and rp.eta.text() == ""


def test_legend_lists_a_series_once_it_has_a_point(qtbot) -> None:  # noqa: ANN001
    chart = LossChart()
    qtbot.addWidget(chart)
    chart.add_metric(1, {"loss": 2.0, "tokens_per_second": 900.0})
    assert chart.legend_names() == ["loss"]
    chart.add_metric(2, {"loss": 1.8})
    assert chart.legend_names() == ["loss"]
    chart.add_metric(2, {"eval_loss": 1.9})
    assert chart.legend_names() == ["loss", "eval_loss"]
    chart.clear()
    assert chart.legend_names() == []
    chart.add_metric(1, {"eval_loss": 2.1})
    assert chart.legend_names() == ["eval_loss"]
