"""What a newcomer sees first: the real recipe (LoRA) with ONNX export, when the starter model is here."""

from __future__ import annotations

import pytest

from tests.gui.window_helpers import SAMPLE, wait_report

pytestmark = pytest.mark.gui


def test_first_run_defaults_to_a_real_lora_run_with_export(qtbot, output_root) -> None:  # noqa: ANN001
    from core.models.starter import starter_available
    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.main_window import MainWindow

    create_app([])
    win = MainWindow()  # empty settings: a first run
    qtbot.addWidget(win)
    opts = win.options
    if not starter_available():
        assert opts.dry_run.isChecked()  # nothing to train for real with: the dry run stays the default
        return
    assert not opts.dry_run.isChecked() and opts.lora.isChecked() and opts.export_onnx.isChecked()
    assert opts.base_model.currentText() == "smollm2-135m-instruct"
    for box in (opts.lora_rank, opts.lora_alpha, opts.epochs, opts.learning_rate):
        assert box.text() == "auto"
    assert "pipeline" in opts.dry_run.text()  # says what the dry run is for
    opts.output_dir.setText(str(output_root))
    win.dataset_controller.load(str(SAMPLE))
    wait_report(qtbot, win)
    # The recipe is shown before the run, with its reasons.
    text = opts.recipe_label.text()
    assert "40 steps" in text and "learning rate 0.002" in text and "LoRA rank 16" in text
    train = opts.to_dict()["train"]
    assert train["lora"]["r"] is None and train["learning_rate"] is None and train["epochs"] is None
    win.close()


def test_try_the_example_loads_a_support_set_worth_training(qtbot, output_root) -> None:  # noqa: ANN001
    """The example a newcomer trains first has 40 support questions, not the seed's three."""
    import json

    from tinyforge_gui.__main__ import create_app
    from tinyforge_gui.controllers import dataset_controller
    from tinyforge_gui.main_window import MainWindow

    create_app([])
    win = MainWindow()
    qtbot.addWidget(win)
    real_default = "customer_support.jsonl"  # the conftest swaps in the seed's sample for speed
    dataset_controller.EXAMPLE_DATASET = real_default
    win.dataset_controller.open_example()
    report = wait_report(qtbot, win)
    assert report.valid and report.n_records == 40
    assert win.state.dataset_path.endswith(real_default)
    rows = [json.loads(line) for line in open(win.state.dataset_path, encoding="utf-8") if line.strip()]
    assert len({row["output"] for row in rows}) == 40  # forty distinct answers to learn
    win.close()
