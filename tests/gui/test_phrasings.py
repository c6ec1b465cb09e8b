"""The Dataset tab's phrasings: write the variants, see them per question, drop one, export them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from tests.gui.window_helpers import wait_report
from tinyforge_gui.widgets.dataset_model import PHRASINGS_COLUMN


def _facts(tmp_path: Path) -> Path:
    path = tmp_path / "facts.jsonl"
    records = [("When do you open?", "At 9:00."), ("What time do you start?", "At 9:00."),
               ("How much is a pass?", "12 pounds."), ("Where are you?", "Mill Lane.")]
    path.write_text("".join(json.dumps({"input": q, "output": a}) + "\n" for q, a in records), encoding="utf-8")
    return path


def test_write_drop_and_export_phrasings(qtbot, window, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("TINYFORGE_VARIANTS_CACHE", str(tmp_path / "variants"))  # its own dropped list
    win = window
    win.options.dry_run.setChecked(False)
    win.options.base_model.setCurrentText("tiny-causal")
    win.options.variants.setValue(2)
    assert win.dataset_controller.load(str(_facts(tmp_path)))
    assert wait_report(qtbot, win).valid
    box, controller = win.dataset.phrasings, win.phrasings_controller
    qtbot.mouseClick(box.write_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: controller.variant_set is not None and not win.tasks.is_busy("variants"), timeout=60000)
    assert "4 questions" in box.status.text()
    model = win.dataset.model
    counts = [model.data(model.index(row, PHRASINGS_COLUMN)) for row in range(model.rowCount())]
    assert all(c and int(c) >= 4 for c in counts), counts  # the surface variants at least
    win.dataset.table.selectRow(0)
    qtbot.waitUntil(lambda: box.list.count() > 0)
    texts = [box.list.item(i).text() for i in range(box.list.count())]
    assert texts[0].startswith("When do you open?") and "(yours)" in texts[0]
    assert any("What time do you start?" in t for t in texts)  # the same answer's other question
    droppable = next(box.list.item(i) for i in range(box.list.count())
                     if box.list.item(i).flags() & Qt.ItemFlag.ItemIsUserCheckable)
    dropped_text = droppable.data(Qt.ItemDataRole.UserRole)
    before = int(model.data(model.index(0, PHRASINGS_COLUMN)))
    droppable.setCheckState(Qt.CheckState.Unchecked)
    assert int(model.data(model.index(0, PHRASINGS_COLUMN))) == before - 1
    out = tmp_path / "exported.jsonl"
    assert controller.export(str(out))
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert set(exported[0]) == {"input", "output"} and dropped_text not in {r["input"] for r in exported}
    assert {r["output"] for r in exported} == {"At 9:00.", "12 pounds.", "Mill Lane."}
    # A training run of this dataset (same options) leaves the dropped phrasing out too.
    from core.training.config import TrainConfig
    from core.training.phrasings import dataset_variants
    from core.training.variants import variant_rows

    config = TrainConfig(**{**win.options.to_dict()["train"], "data_path": str(tmp_path / "facts.jsonl"),
                            "output_dir": "-"})
    again = dataset_variants(config)
    assert again.cached and dropped_text not in {r.input for r in variant_rows(again)}
