"""The options form's defaults and limits are TrainConfig's (written once, in config_defaults)."""

from __future__ import annotations

from typing import Any

import pytest

from core.run_layout import ExportOptions
from core.training.config import LoraSettings, TrainConfig

pytestmark = pytest.mark.gui


def _default(name: str, model: type[Any] = TrainConfig) -> Any:
    return model.model_fields[name].default


def _bound(name: str, kind: str, model: type[Any] = TrainConfig) -> float | None:
    """The ``ge`` / ``gt`` / ``lt`` constraint pydantic holds for a field (None: unbounded)."""
    for item in model.model_fields[name].metadata:
        value = getattr(item, kind, None)
        if value is not None:
            return value
    return None


@pytest.fixture
def panel(qtbot):  # noqa: ANN001, ANN201
    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.panels.options_panel import OptionsPanel

    create_app([])
    form = OptionsPanel()
    qtbot.addWidget(form)
    return form


def test_a_fresh_form_sends_trainconfigs_defaults(panel) -> None:  # noqa: ANN001
    options = panel.to_dict()
    train = options["train"]
    for name in ("base_model", "epochs", "learning_rate", "batch_size", "max_length", "eval_split", "seed",
                 "device", "precision", "variants", "eval_data_path"):
        assert train[name] == _default(name), name
    lora = train["lora"]
    for name in ("enabled", "r", "alpha", "target_modules"):
        assert lora[name] == _default(name, LoraSettings), name
    for name in ("export_onnx", "overwrite", "gguf"):
        assert options["export"][name] == _default(name, ExportOptions), name
    assert options["export"]["quantize"] == _default("quantize", ExportOptions)
    # What the form sends validates as it stands.
    TrainConfig(data_path="d.jsonl", output_dir="out", **train)


def test_the_forms_limits_are_trainconfigs_bounds(panel) -> None:  # noqa: ANN001
    assert panel.batch_size.minimum() == _bound("batch_size", "ge")
    assert panel.max_length.minimum() == _bound("max_length", "ge")
    # "auto" (None) is the special value just below the smallest accepted value.
    assert panel.lora_rank.minimum() + 1 == _bound("r", "ge", LoraSettings)
    assert panel.lora_alpha.minimum() == _bound("alpha", "gt", LoraSettings)
    assert panel.epochs.minimum() == _bound("epochs", "gt")
    assert panel.learning_rate.minimum() == _bound("learning_rate", "gt")
    assert panel.eval_split.minimum() < _bound("eval_split", "ge") <= panel.eval_split.minimum() + 0.05 + 1e-9
    assert panel.eval_split.maximum() < _bound("eval_split", "lt")
    for box in (panel.epochs, panel.learning_rate, panel.eval_split, panel.lora_rank, panel.lora_alpha):
        assert box.specialValueText() == "auto" and box.value() == box.minimum()
    # Variants: "auto" (None) just below "off" (0), the recipe's choice and none at all.
    assert panel.variants.text() == "auto" and panel.variants.minimum() + 1 == _bound("variants", "ge")
    assert panel.variants.maximum() < _bound("variants", "lt")
    panel.variants.setValue(0)
    assert panel.variants.text() == "off" and panel.to_dict()["train"]["variants"] == 0
    panel.variants.setValue(-1)
    # Every value the form can send at its limits validates.
    for box in (panel.batch_size, panel.max_length, panel.eval_split, panel.lora_rank, panel.lora_alpha,
                panel.epochs, panel.learning_rate, panel.variants):
        for value in (box.minimum(), box.maximum()):
            box.setValue(value)
            train = panel.to_dict()["train"]
            TrainConfig(data_path="d.jsonl", output_dir="out", **train)
        box.setValue(box.minimum())


def test_the_train_flags_default_to_trainconfig() -> None:
    from core.cli.train import build_parser, config_from_args

    args = build_parser().parse_args(["--data", "d.jsonl", "--out", "out"])
    config = config_from_args(args)
    assert config == TrainConfig(data_path="d.jsonl", output_dir="out")
    for action in build_parser()._actions:
        if action.dest in TrainConfig.model_fields and action.dest not in ("resume", "dry_run"):
            assert action.default == _default(action.dest), action.dest
        if action.dest in ("device", "precision"):
            assert action.default == _default(action.dest) and action.choices[0] == "auto"


def test_gguf_is_a_real_runs_choice(panel) -> None:  # noqa: ANN001
    """A dry run's stub has no weights: the GGUF box is off there and never sent."""
    panel.dry_run.setChecked(False)
    panel.gguf.setChecked(True)
    assert panel.gguf.isEnabled() and panel.to_dict()["export"]["gguf"] is True
    panel.dry_run.setChecked(True)
    assert not panel.gguf.isEnabled() and panel.to_dict()["export"]["gguf"] is False
    panel.load_dict({"train": {"dry_run": False}, "export": {"gguf": False}})
    assert panel.gguf.isEnabled() and not panel.gguf.isChecked()


def test_options_texts_fit_at_1280x820(window) -> None:  # noqa: ANN001
    """At the default window size no option's label, check box or placeholder is cut (issue 21)."""
    from PySide6.QtWidgets import QCheckBox, QLabel, QLineEdit

    window.options.dry_run.setChecked(False)
    window.options.lora.setChecked(True)  # the real-training rows and the module list show
    assert (window.width(), window.height()) == (1280, 820)
    cut = []
    for box in window.options.findChildren(QCheckBox):
        if box.isVisible():
            needed = box.fontMetrics().horizontalAdvance(box.text()) + 24  # the indicator and its gap
            if needed > box.width():
                cut.append(f"check box {box.text()!r}: {needed} > {box.width()} px")
    for edit in window.options.findChildren(QLineEdit):
        text = edit.placeholderText()
        if edit.isVisible() and text and not edit.text():
            needed = edit.fontMetrics().horizontalAdvance(text) + 8  # the frame's margins
            if needed > edit.width():
                cut.append(f"placeholder {text!r}: {needed} > {edit.width()} px")
    for label in window.options.findChildren(QLabel):
        if label.isVisible() and not label.wordWrap() and label.text():
            needed = label.fontMetrics().horizontalAdvance(label.text())
            if needed > label.width():
                cut.append(f"label {label.text()!r}: {needed} > {label.width()} px")
    assert not cut, cut
