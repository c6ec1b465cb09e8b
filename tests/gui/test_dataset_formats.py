"""The Dataset tab reads every data shape and shows what the model is trained on: the format line,
the token lengths, the training text with its trained span, Map columns… and "Train on"."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextDocumentFragment

from tests.gui.test_main_window import drop_file
from tests.gui.window_helpers import wait_report, wait_run
from tinyforge_gui.controllers.preview_controller import NOT_PREPARED
from tinyforge_gui.widgets.dataset_model import ANSWER_COLUMN, QUESTION_COLUMN, TURNS_COLUMN

pytestmark = pytest.mark.gui

CHAT = {"messages": [
    {"role": "system", "content": "You are the shop's assistant."},
    {"role": "user", "content": "Do you open on Sundays?"},
    {"role": "assistant", "content": "Yes, from ten."},
    {"role": "user", "content": "Until when?"},
    {"role": "assistant", "content": "Until four."},
]}
SINGLE = {"messages": [{"role": "user", "content": "Where are you?"}, {"role": "assistant", "content": "Mill Lane."}]}


def _messages_file(tmp_path: Path) -> Path:
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps(CHAT) + "\n" + json.dumps(SINGLE) + "\n", encoding="utf-8")
    return path


def _select(qtbot, win, row: int) -> None:  # noqa: ANN001
    qtbot.waitUntil(lambda: win.dataset.model.has_index, timeout=30000)
    win.dataset.table.selectRow(row)


def test_messages_file_shows_its_format_tokens_and_training_text(window, qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    win = window
    win.options.base_model.setCurrentText("tiny-causal")
    assert win.dataset_controller.load(str(_messages_file(tmp_path)))
    assert wait_report(qtbot, win).valid
    dataset = win.dataset
    qtbot.waitUntil(lambda: "messages (OpenAI / TRL chat), 2 of 2 rows" in dataset.format_label.text(), timeout=30000)
    assert "read as: messages[].role/content" in dataset.format_label.text()
    qtbot.waitUntil(lambda: dataset.tokens_label.text().startswith("tokens (2 rows)"), timeout=30000)
    assert "max_length 256" in dataset.tokens_label.text()
    model = dataset.model
    assert model.data(model.index(0, QUESTION_COLUMN)) == "Until when?"  # the last user turn
    assert model.data(model.index(0, ANSWER_COLUMN)) == "Until four."
    assert model.data(model.index(0, TURNS_COLUMN)) == "4"

    _select(qtbot, win, 0)
    view = dataset.training_text
    # Every answer trains (the default); the last one ends with the end-of-sequence token.
    qtbot.waitUntil(lambda: view.trained_spans() == ["Yes, from ten.", "Until four.</s>"], timeout=30000)
    text = view.text.toPlainText()
    assert text.startswith("You are the shop's assistant.") and "Do you open on Sundays?" in text
    legend = QTextDocumentFragment.fromHtml(view.legend.text()).toPlainText()
    assert legend.startswith("highlighted: trained (loss); grey: prompt"), legend
    assert dataset.row_tabs.currentWidget() is view

    win.options.loss_on.setCurrentIndex(win.options.loss_on.findData("last"))  # only the last answer
    qtbot.waitUntil(lambda: view.trained_spans() == ["Until four.</s>"], timeout=30000)
    assert win.run_controller.build_run_options(["train"]).train.loss_on == "last"
    _select(qtbot, win, 1)
    qtbot.waitUntil(lambda: view.trained_spans() == ["Mill Lane.</s>"], timeout=30000)


def test_preview_waits_for_a_base_model_that_is_not_prepared(window, qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    win = window
    win.options.base_model.setCurrentText(str(tmp_path / "not-downloaded"))
    assert win.dataset_controller.load(str(_messages_file(tmp_path)))
    assert wait_report(qtbot, win).valid
    view = win.dataset.training_text
    qtbot.waitUntil(lambda: view.note.text() == NOT_PREPARED, timeout=30000)
    assert not win.dataset.tokens_label.text()
    _select(qtbot, win, 0)
    assert view.trained_spans() == []
    win.options.base_model.setCurrentText("tiny-causal")  # a prepared model: the preview comes
    qtbot.waitUntil(lambda: view.trained_spans() == ["Yes, from ten.", "Until four.</s>"], timeout=30000)
    assert not view.note.text()


def test_csv_with_unknown_headers_maps_columns_into_the_run(window, qtbot, tmp_path: Path,  # noqa: ANN001
                                                            output_root: Path) -> None:
    win = window
    path = tmp_path / "faq.csv"
    path.write_text("Frage,Antwort,Note\nWhen do you open?,At 9:00.,x\nHow much?,12 pounds.,y\n", encoding="utf-8")
    assert win.dataset_controller.load(str(path))
    report = wait_report(qtbot, win)
    assert not report.valid and report.problem_counts.get("unknown_format")
    assert not win.run_panel.train.isEnabled()
    button = win.dataset.map_columns
    qtbot.waitUntil(button.isEnabled, timeout=30000)
    assert button.font().bold()  # the file needs it
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    dialog = win.dataset_controller.columns_dialog
    assert dialog is not None and dialog.isVisible()
    names = [dialog.combos["question"].itemData(i) for i in range(dialog.combos["question"].count())]
    assert names == ["", "Frage", "Antwort", "Note"]
    assert all(combo.currentData() == "" for combo in dialog.combos.values())  # nothing guessed
    assert not dialog.ok_button.isEnabled()
    dialog.choose("question", "Frage")
    dialog.choose("answer", "Frage")
    assert not dialog.ok_button.isEnabled()  # one column cannot be both
    dialog.choose("answer", "Antwort")
    assert dialog.ok_button.isEnabled() and "At 9:00." in dialog.samples["answer"].text()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)

    mapping = {"question": "Frage", "answer": "Antwort"}
    assert win.state.dataset_columns == mapping
    report = wait_report(qtbot, win)
    assert report.valid and report.n_records == 2
    assert "columns: Frage → user, Antwort → assistant" in win.dataset.format_label.text()
    model = win.dataset.model
    assert model.data(model.index(0, QUESTION_COLUMN)) == "When do you open?"
    assert model.data(model.index(1, ANSWER_COLUMN)) == "12 pounds."
    assert not button.font().bold()

    assert win.run_controller.build_run_options(["train"]).train.columns == mapping
    qtbot.mouseClick(win.run_panel.train, Qt.MouseButton.LeftButton)  # the run's config records the mapping
    wait_run(qtbot, win)  # (its status is core's: the dry run's own scan reads the mapping or not)
    record = json.loads((Path(win.state.current_run) / "run.json").read_text(encoding="utf-8"))
    assert record["options"]["train"]["columns"] == mapping


def test_train_on_choice_round_trips_through_the_settings(qtbot, output_root: Path) -> None:  # noqa: ANN001
    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.main_window import MainWindow

    create_app([])
    first = MainWindow()
    qtbot.addWidget(first)
    assert first.options.to_dict()["train"]["loss_on"] == "all"  # TrainConfig's default
    first.options.loss_on.setCurrentIndex(first.options.loss_on.findData("last"))
    assert first.options.loss_on.currentText() == "the last answer"
    first.close()
    second = MainWindow()
    qtbot.addWidget(second)
    assert second.options.to_dict()["train"]["loss_on"] == "last"
    second.options.load_dict({"train": {"loss_on": "all"}})
    assert second.options.loss_on.currentText() == "every answer"
    second.close()


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json"])
def test_dropped_table_is_read_like_jsonl(window, qtbot, tmp_path: Path, suffix: str) -> None:  # noqa: ANN001
    path = tmp_path / f"pairs{suffix}"
    rows = [{"instruction": "Say hi", "input": "", "output": "Hi!"}, {"instruction": "Count", "input": "to 2",
                                                                     "output": "1, 2"}]
    if suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, list(rows[0]), delimiter="," if suffix == ".csv" else "\t")
            writer.writeheader()
            writer.writerows(rows)
    drop_file(window, path)
    assert window.state.dataset_path == str(path.resolve())
    report = wait_report(qtbot, window)
    assert report.valid and report.format == "instruction"
    qtbot.waitUntil(lambda: window.dataset.model.rowCount() == 2, timeout=30000)
    model = window.dataset.model
    assert model.data(model.index(1, QUESTION_COLUMN)) == "Count to 2"
    assert model.data(model.index(1, TURNS_COLUMN)) == ""  # a single exchange
    assert "instruction/input/output (Alpaca), 2 of 2 rows" in window.dataset.format_label.text()
    assert str(path.resolve()) in window.settings.recent_datasets()
    assert window.dataset.map_columns.isEnabled()  # a table may always be mapped
    assert window.run_panel.train.isEnabled()
