"""Studio features in the window: LoRA suggestions, Estimate, train → export report, the
playground's three answers, Start/Stop Service, and Help."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton, QTableWidget, QWidget

from tests.gui.window_helpers import wait_report, wait_run

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def _real_options(window, epochs: float) -> None:  # noqa: ANN001
    opts = window.options
    opts.dry_run.setChecked(False)
    opts.base_model.setCurrentText("tiny-causal")
    opts.epochs.setValue(epochs)
    opts.batch_size.setValue(1)
    opts.learning_rate.setValue(0.003)
    opts.seed.setValue(0)
    opts.device.setCurrentText("cpu")
    opts.variants.setValue(0)  # the sample's three records as they are: the projection counts them


def test_lora_suggestions_list_the_models_modules(window, qtbot) -> None:  # noqa: ANN001
    opts = window.options
    opts.dry_run.setChecked(False)
    opts.base_model.setCurrentText("tiny-causal")
    opts.lora.setChecked(True)
    qtbot.waitUntil(lambda: "q_proj" in opts.suggested_modules(), timeout=30000)
    assert {"v_proj", "o_proj"} <= set(opts.suggested_modules())
    assert "7 linear projections" in opts.lora_modules.placeholderText()
    assert "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj" in opts.lora_hint.text()
    opts._fill_lora_menu()
    q_action = next(a for a in opts.lora_menu.actions() if a.text() == "q_proj")
    q_action.setChecked(True)
    assert opts.lora_targets() == ["q_proj"]
    opts.base_model.setCurrentText("tiny-seq2seq")
    qtbot.waitUntil(lambda: getattr(opts.lora_suggestions, "base_model", None) == "tiny-seq2seq", timeout=30000)
    assert "q" in opts.suggested_modules() and "q_proj" not in opts.suggested_modules()


def test_estimate_shows_a_projection(window, qtbot) -> None:  # noqa: ANN001
    window.dataset_controller.open_example()
    wait_report(qtbot, window)
    _real_options(window, epochs=10)
    button = window.findChild(QPushButton, "estimateButton")
    assert button is not None
    qtbot.waitUntil(button.isEnabled, timeout=5000)
    button.click()
    assert not button.isEnabled()  # "Estimating…" while it runs
    qtbot.waitUntil(lambda: window.state.estimate is not None, timeout=120000)
    qtbot.waitUntil(lambda: not window.tasks.is_busy("estimate"), timeout=30000)
    est = window.state.estimate
    assert est is not None and est.total_steps == 30 and est.seconds_per_step > 0 and est.peak_rss_bytes > 0
    text = window.run_panel.estimate_label.text()
    assert "30 steps" in text and "peak memory" in text
    # The window re-enables the button in a timer once the worker's thread is gone.
    qtbot.waitUntil(button.isEnabled, timeout=10000)


def test_train_export_report_playground_and_service(window, qtbot, monkeypatch) -> None:  # noqa: ANN001
    window.dataset_controller.open_example()
    wait_report(qtbot, window)
    _real_options(window, epochs=12)
    window.options.export_onnx.setChecked(True)
    window.options.gguf.setChecked(True)
    assert window.options.to_dict()["export"]["gguf"] is True
    window.run_controller.start_train_export()
    assert wait_run(qtbot, window, timeout=240000) == "completed", window.message.text.text()
    assert window.run_panel.chart.count() >= 3
    qtbot.waitUntil(lambda: window.tabs.currentWidget() is window.tabs.export_panel, timeout=30000)

    # The export report as a table, with parity numbers and the stages that ran.
    table = window.findChild(QTableWidget, "exportReportView")
    assert table is not None and table.rowCount() > 8
    panel = window.tabs.export_panel
    diff = re.search(r"max \|logit diff\| (\S+)", panel.value("ONNX fp32", "parity"))
    assert diff and float(diff.group(1)) < 1e-3
    served = panel.value("Served", "precision")
    assert panel.value(f"ONNX {served}", "verdict") == "served"
    # The served precision's parity and latency, whichever it is; every candidate has its rows.
    assert "greedy match" in panel.value(f"ONNX {served}", "parity")
    assert "ms/token (prefill" in panel.value(f"ONNX {served}", "latency")
    assert all(panel.value(f"ONNX {p}", "parity") for p in ("fp32", "int8", "int8_block", "int4_block"))
    assert panel.value("Service self-test", "result").startswith("passed")
    stages = [panel.stages.item(i).text() for i in range(panel.stages.count())]
    assert "quantizing to int8" in stages and "self-testing the service" in stages
    # The GGUF files: one row each, one of them recommended, and where they were checked.
    gguf_rows = [panel.value("GGUF (Ollama / llama.cpp)", f"model-{t}.gguf") for t in ("F16", "Q8_0", "Q4_0")]
    assert all(gguf_rows) and sum(r.startswith("recommended") for r in gguf_rows) == 1, gguf_rows
    assert panel.value("GGUF (Ollama / llama.cpp)", "checked in")
    panel.json_button.click()
    assert window.tabs.artifacts.viewer.current_path.endswith("export_report.json")

    # Playground: four answers, each with a latency; the second question reuses loaded models.
    window.tabs.setCurrentWidget(window.tabs.playground)
    pg = window.tabs.playground
    assert set(pg.sources) == {"base", "tuned", "onnx", "gguf"}
    assert pg.sources["gguf"]["path"].endswith(".gguf")
    llama_cpp = _llama_cpp_installed()
    pg.max_tokens.setValue(80)
    pg.input.setText("How do I reset my password?")
    pg.run_button.click()
    qtbot.waitUntil(lambda: len(pg.answers()) == 4, timeout=120000)
    answers = pg.answers()
    errors = [k for k, a in answers.items() if a.startswith("(error)")]
    assert errors == ([] if llama_cpp else ["gguf"]), answers
    assert all(answers.values())
    if served == "fp32" or "greedy match 100.0 %" in panel.value(f"ONNX {served}", "parity"):
        assert answers["tuned"] == answers["onnx"]
    recommended = next(r for r in gguf_rows if r.startswith("recommended"))
    if llama_cpp and "greedy match 100.0 %" in recommended:
        assert answers["tuned"] == answers["gguf"], answers
    assert answers["base"] != answers["tuned"]
    # A second question is answered too (models cached in the worker's modules).
    pg.input.setText("How can I contact support?")
    pg.run_button.click()
    qtbot.waitUntil(lambda: len(pg.answers()) == 4, timeout=60000)
    assert all(card.latency.text().endswith("ms") for card in pg.cards.values())
    qtbot.waitUntil(lambda: not window.tasks.is_busy("playground"), timeout=30000)

    # Start/Stop Service: /health answers over loopback; Stop ends the process.
    button = window.findChild(QPushButton, "serviceButton")
    assert button.isEnabled() and button.text() == "Start Service"
    button.click()
    qtbot.waitUntil(lambda: window.state.service_state == "running", timeout=60000)
    url = window.studio_controller.service.url
    assert url.startswith("http://127.0.0.1:") and url in panel.service_url.text()
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    process = window.studio_controller.service.process
    button.click()
    qtbot.waitUntil(lambda: window.state.service_state == "stopped", timeout=30000)
    assert process.poll() is not None
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)

    # Started again, it stops when the window closes.
    button.click()
    qtbot.waitUntil(lambda: window.state.service_state == "running", timeout=60000)
    process = window.studio_controller.service.process
    window.close()
    assert process.poll() is not None


def _llama_cpp_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def test_cancelled_real_run_resumes(window, qtbot) -> None:  # noqa: ANN001
    window.dataset_controller.open_example()
    wait_report(qtbot, window)
    _real_options(window, epochs=400)
    window.run_controller.start_train()
    qtbot.waitUntil(lambda: window.run_panel.chart.count() >= 2, timeout=120000)
    assert "tokens/s" in window.run_panel.speed.text()
    window.run_controller.cancel_run()
    assert wait_run(qtbot, window, timeout=60000) == "cancelled"
    run_dir = Path(window.state.last_run)
    assert (run_dir / "model.cancelled" / "checkpoints").is_dir()
    window.tabs.artifacts.select_run(str(run_dir))
    assert window.run_panel.resume.isEnabled()
    report = json.loads((run_dir / "model.cancelled" / "training_report.json").read_text())
    stopped_at = report["global_step"]
    # Resume with fewer epochs so it ends quickly: the stored options drive it, so edit run.json.
    record = json.loads((run_dir / "run.json").read_text())
    record["options"]["train"]["epochs"] = max(1, (stopped_at + 3) // 3)
    (run_dir / "run.json").write_text(json.dumps(record))
    window.run_panel.resume.click()
    assert wait_run(qtbot, window, timeout=120000) == "completed", window.message.text.text()
    final = json.loads((run_dir / "model" / "training_report.json").read_text())
    assert final["resumed_from"] and final["global_step"] > stopped_at
    assert not (run_dir / "model.cancelled").exists()


def test_help_menu_about_and_guide(window, qtbot, monkeypatch) -> None:  # noqa: ANN001
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "about", lambda parent, title, text: shown.append(text))
    window.about_action.trigger()
    assert shown and "TinyForge Studio" in shown[0] and "License" in shown[0]
    assert window.guide_action.shortcut().toString() == "F1"
    window.guide_action.trigger()
    dialog = window.findChild(QWidget, "userGuideDialog")
    assert dialog is not None and dialog.isVisible()
    dialog.close()
    QApplication.processEvents()


def test_starter_model_preselected_and_pickers(window) -> None:  # noqa: ANN001
    opts = window.options
    assert opts.base_model.currentText() == "smollm2-135m-instruct"
    names = [opts.base_model.itemText(i) for i in range(opts.base_model.count())]
    assert {"tiny-causal", "tiny-seq2seq"} <= set(names)
    assert [opts.device.itemText(i) for i in range(opts.device.count())] == ["auto", "cpu", "cuda", "mps"]
    assert [opts.precision.itemText(i) for i in range(opts.precision.count())] == ["auto", "fp32", "bf16", "fp16"]
    train = opts.to_dict()["train"]
    assert train["device"] == "auto" and train["precision"] == "auto"
    opts.load_dict({"train": {"device": "cpu", "precision": "fp32"}})
    assert opts.to_dict()["train"]["device"] == "cpu"
