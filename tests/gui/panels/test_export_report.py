"""The Export tab's report table on report fixtures: a row set per candidate, one served name,
older reports; and the Playground's label naming the graph that will answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.gui.panels.report_helpers import export_report, older_report, write_run

pytestmark = pytest.mark.gui

CANDIDATES = ("fp32", "int8", "int8_block", "int4_block")


@pytest.fixture
def panel(qtbot):  # noqa: ANN001, ANN201
    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.panels.export_panel import ExportPanel

    create_app([])
    widget = ExportPanel()
    qtbot.addWidget(widget)
    return widget


def _rows(panel) -> list[tuple[str, str, str]]:  # noqa: ANN001
    rows, section = [], ""
    for row in range(panel.table.rowCount()):
        section = panel.table.item(row, 0).text() or section
        rows.append((section, panel.table.item(row, 1).text(), panel.table.item(row, 2).text()))
    return rows


@pytest.mark.parametrize("served", ["int8_block", "int4_block"])
def test_a_served_block_candidate_has_its_rows(panel, tmp_path: Path, served: str) -> None:  # noqa: ANN001
    assert panel.show_run(str(write_run(tmp_path / "run", export_report(served))))
    assert panel.value("Served", "precision") == served
    section = f"ONNX {served}"
    assert panel.value(section, "verdict") == "served"
    assert panel.value(section, "size").endswith("% of fp32)")
    assert panel.value(section, "latency").startswith(f"{export_report(served)['candidates'][served]['ms_per_token']:.3f} ms/token")
    assert panel.value(section, "parity").startswith("agreement 99.5 %, greedy match 100.0 %")
    for precision in CANDIDATES:  # every candidate the report describes, checked or not
        part = export_report(served)["candidates"][precision]
        assert panel.value(f"ONNX {precision}", "verdict"), precision
        assert panel.value(f"ONNX {precision}", "size"), precision
        parity = panel.value(f"ONNX {precision}", "parity")
        if part["checked"]:
            assert "greedy match" in parity and bool(panel.value(f"ONNX {precision}", "latency")), precision
        else:  # skipped because a faster candidate passed: said so, no latency invented
            assert parity == f"not checked: {served} is faster and answers like the trained model"
            assert panel.value(f"ONNX {precision}", "verdict").startswith("skipped")
            assert panel.value(f"ONNX {precision}", "latency") == ""
    failed = [p for p in CANDIDATES if panel.value(f"ONNX {p}", "verdict").startswith("FAILED the gate")]
    assert failed == [p for p in ("int8", "int4_block") if p != served and export_report(served)["candidates"][p]["checked"]]


def test_the_report_names_the_served_precision_once(panel, tmp_path: Path) -> None:  # noqa: ANN001
    report = export_report("int8_block")
    report["service_precision"] = report["served_precision"]  # what exports wrote until now
    panel.show_run(str(write_run(tmp_path / "run", report)))
    texts = [" ".join(row) for row in _rows(panel)]
    assert not any("service precision" in t or "service_precision" in t for t in texts)
    assert sum(t.startswith("Served precision") for t in texts) == 1
    sections = [section for section, _, _ in _rows(panel)]
    for precision in CANDIDATES:  # one section per candidate, each row once
        names = [name for section, name, _ in _rows(panel) if section == f"ONNX {precision}"]
        assert len(names) == len(set(names)) and {"verdict", "size", "parity"} <= set(names)
    assert "Sizes" not in sections and "Latency per token" not in sections  # said in each candidate's rows


def test_an_older_report_with_only_service_precision_still_displays(panel, tmp_path: Path) -> None:  # noqa: ANN001
    from core.run_layout import read_export_report

    run = write_run(tmp_path / "old", older_report())
    report = read_export_report(run)
    assert report.served_precision == "int8" and report.precisions() == ["fp32", "int8"]
    assert panel.show_run(str(run))
    assert panel.value("Served", "precision") == "int8"
    assert panel.value("ONNX int8", "verdict") == "served"
    assert panel.value("ONNX int8", "size") == "585.9 KB (30 % of fp32)"
    assert panel.value("ONNX int8", "latency") == "0.600 ms/token"
    assert panel.value("ONNX int8", "parity") == "token agreement 97.0 %, greedy match 100.0 %, max |logit diff| 0.4 on 3 input(s)"
    assert panel.value("ONNX fp32", "verdict") == "passed, not served"
    assert panel.value("Trained model (torch)", "latency") == "3.000 ms/token"


def _trained_run_with_export(root: Path, served: str, present: list[str]) -> Path:
    """A run whose export serves ``served`` but holds only the graph files of ``present``."""
    (root / "model").mkdir(parents=True)
    (root / "model" / "model_manifest.json").write_text(
        json.dumps({"model_type": "tinyforge_hf", "base_model": "tiny-causal"}), encoding="utf-8")
    graphs = {"fp32": {"decoder": "onnx/model.onnx"}, "int8": {"decoder": "onnx/quant/quantized.onnx"},
              served: {"decoder": f"onnx/quant/{served}.onnx"}}
    onnx = root / "service" / "onnx"
    (onnx / "quant").mkdir(parents=True)
    (onnx / "model.onnx.meta.json").write_text(
        json.dumps({"runtime": {"architecture": "causal", "graphs": graphs, "served_precision": served}}),
        encoding="utf-8")
    for precision in present:
        (root / "service" / graphs[precision]["decoder"]).write_bytes(b"graph")
    return root


def test_the_playground_label_names_what_the_runtime_loads(qtbot, tmp_path: Path,  # noqa: ANN001
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from core.exporter.onnx_predict import served_precision
    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.panels.playground_panel import PlaygroundPanel

    monkeypatch.delenv("TINYFORGE_PRECISION", raising=False)
    create_app([])
    playground = PlaygroundPanel()
    qtbot.addWidget(playground)
    run = _trained_run_with_export(tmp_path / "run", "int4_block", ["fp32", "int8"])
    playground.set_run(str(run))  # the served graph is missing: the runtime loads fp32
    assert served_precision(run / "service") == "fp32"
    assert playground.sources["onnx"]["served"] == "fp32" and "ONNX service (fp32)" in playground.source_label.text()
    (run / "service" / "onnx" / "quant" / "int4_block.onnx").write_bytes(b"graph")
    playground.set_run(str(run))
    assert "ONNX service (int4_block)" in playground.source_label.text()
    monkeypatch.setenv("TINYFORGE_PRECISION", "int8")  # the runtime's override, named as such
    playground.set_run(str(run))
    assert "ONNX service (int8)" in playground.source_label.text()


def test_the_stage_list_stays_beside_its_own_export(panel, tmp_path: Path) -> None:  # noqa: ANN001
    exported = str(write_run(tmp_path / "a", export_report("int8")))
    other = str(write_run(tmp_path / "b", export_report("int4_block")))
    panel.resize(1280, 820)
    panel.show()
    panel.begin(exported)
    panel.on_progress("export", 1, 2, "quantizing to int8")
    panel.finish("completed")
    panel.show_run(exported)
    assert panel.stages.isVisible() and panel.value("Served", "precision") == "int8"
    panel.show_run(other)  # a stored report of another run: the table gets the width
    assert not panel.stages.isVisible() and panel.value("Served", "precision") == "int4_block"
    panel.show_run(exported)
    assert panel.stages.isVisible()
