"""core.run_layout: the run folder's names, typed models and readers, on files real runs wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core import run_layout, runs
from core.run_layout import (
    RunFileError,
    list_runs,
    read_evaluation,
    read_export_report,
    read_model_metadata,
    read_run,
    read_training_report,
)
from core.training.config import TrainConfig
from tests.core.training_helpers import SAMPLE, tiny_config


def _raw(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _round_trip(model: Any, path: Path) -> None:
    """The typed model dumps back to exactly the JSON on disk (no key lost, none invented)."""
    assert model.model_dump(mode="json", exclude_unset=True) == _raw(path)


def _dry_options(data: Path = SAMPLE) -> runs.RunOptions:
    return runs.RunOptions(
        actions=["train", "export"],
        train=TrainConfig(data_path=str(data), output_dir="", dry_run=True),
        export=runs.ExportOptions(export_onnx=True),
    )


def test_names_come_from_the_layout() -> None:
    from core.training import evaluate, train

    assert runs.RUN_FILE == run_layout.RUN_FILE == "run.json"
    assert runs.MODEL_DIR == "model" and runs.SERVICE_DIR == "service" and runs.RESUME_DIR == "model.cancelled"
    assert runs.RunOptions is run_layout.RunOptions and runs.ExportOptions is run_layout.ExportOptions
    assert evaluate.EVALUATION_NAME == run_layout.EVALUATION_FILE
    assert evaluate.EVALUATIONS_DIR == run_layout.EVALUATIONS_DIR
    assert train.STUB_FILENAME == run_layout.MODEL_STUB_FILE


ROOT = Path(__file__).resolve().parents[2]
# Where a run file's name is still spelled out in code, and why (user-facing text only).
_SPELLED_OUT = {
    # Tooltips: the options panel is built before the first paint, the export panel in the GUI
    # thread just after it; core.run_layout pulls in pydantic, which the window loads later.
    ("tinyforge_gui/panels/options_panel.py", "run.json"),
    ("tinyforge_gui/panels/options_panel.py", "events.jsonl"),
    ("tinyforge_gui/panels/export_panel.py", "export_report.json"),
}


def _code_strings(path: Path) -> list[str]:
    """The string constants of ``path``'s code, without docstrings."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs]


def test_code_takes_file_names_from_the_layout() -> None:
    """No module of core or the GUI spells a run file's name itself (the service template, which
    runs without core, spells the names it reads: the next test checks them)."""
    import re

    from core.run_layout import names as layout_names

    names = {value for key, value in vars(layout_names).items()
             if key.endswith(("_FILE", "_DIR")) and isinstance(value, str) and "." in value}
    names.discard(run_layout.TOKENIZER_FILE)  # Hugging Face's name, read in any model folder too
    # The one module that spells the names (the package's other modules take them from it).
    names_module = Path(layout_names.__file__).resolve().relative_to(ROOT).as_posix()
    assert names_module == "core/run_layout/names.py"
    longest_first = sorted(names, key=len, reverse=True)  # model.onnx.meta.json, not model.onnx
    pattern = re.compile("|".join(rf"(?<![\w.]){re.escape(name)}(?!\w)" for name in longest_first))
    found = set()
    for folder in ("core", "tinyforge_gui"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == names_module or rel.startswith("core/exporter/service_template/"):
                continue
            found |= {(rel, hit) for text in _code_strings(path) for hit in pattern.findall(text)}
    assert len(names) >= 12 and found == _SPELLED_OUT


def test_the_service_template_reads_the_layout_names() -> None:
    from core.exporter.onnx_predict import load_runtime_module
    from core.exporter.service_folder import SERVICE_TEMPLATE

    runtime = load_runtime_module()
    assert runtime.PROMPT_FILE == run_layout.PROMPT_FILE and runtime.TOKENIZER_FILE == run_layout.TOKENIZER_FILE
    assert runtime.META_FILE == f"{run_layout.ONNX_DIR}/{run_layout.ONNX_META_FILE}"
    loader = _code_strings(SERVICE_TEMPLATE / "model_loader.py")
    assert {run_layout.MODEL_METADATA_FILE, run_layout.ONNX_DIR, run_layout.ONNX_META_FILE} <= set(loader)
    assert (SERVICE_TEMPLATE / run_layout.SERVICE_APP_FILE).is_file()


def test_a_dry_run_reads_back_typed(tmp_path: Path) -> None:
    pytest.importorskip("core.training.dataset")
    run = runs.run_actions(tmp_path, _dry_options())
    record = read_run(run.path)
    _round_trip(record, run.run_file)
    assert record.status == "completed" and record.folder == run.path and record.name == run.path.name
    assert record.options is not None and record.options.train.dry_run is True
    assert record.options.actions == ["train", "export"] and record.options.export.export_onnx is True
    assert [stage.name for stage in record.stages] == ["train", "export"]
    assert record.dataset.sha256 and len(record.dataset.sha256) == 64
    assert record.error is None and record.timings["total"] >= 0
    assert run.record.to_json() == record.to_json()  # core.runs reads through the same model
    report = read_export_report(run.path)  # the run folder or its service/ folder
    assert report == read_export_report(run.service_dir)
    _round_trip(report, run.service_dir / run_layout.EXPORT_REPORT_FILE)
    assert report.model_stub is None and report.onnx_path and report.candidates == {}
    assert read_model_metadata(run.service_dir).model_stub is True
    assert [r.folder for r in list_runs(tmp_path)] == [run.path]
    assert [r.path for r in runs.list_runs(tmp_path)] == [run.path]


def test_list_runs_newest_first_skipping_broken_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = runs.create_run(tmp_path, _dry_options())
    second = runs.create_run(tmp_path, _dry_options())
    older = dict(_raw(first.run_file), created_time="2000-01-01T00:00:00+00:00")
    first.run_file.write_text(json.dumps(older), encoding="utf-8")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{nope", encoding="utf-8")
    (tmp_path / "a list").mkdir()
    (tmp_path / "a list" / "run.json").write_text("[]", encoding="utf-8")
    (tmp_path / "not-a-run").mkdir()
    assert [r.folder for r in list_runs(tmp_path)] == [second.path, first.path]
    assert [r.path for r in runs.list_runs(tmp_path)] == [second.path, first.path]
    assert "broken" in caplog.text and "a list" in caplog.text
    assert list_runs(tmp_path / "missing") == [] and runs.list_runs(tmp_path / "missing") == []


def test_an_old_run_json_without_the_new_fields_still_reads(tmp_path: Path) -> None:
    folder = tmp_path / "run-old"
    folder.mkdir()
    # An early run.json: no versions/timings/stages/dataset, options without today's fields,
    # and one option that no longer exists (dropped, not an error).
    old = {
        "run_id": "run-old",
        "status": "completed",
        "created_time": "2025-01-01T00:00:00+00:00",
        "options": {"train": {"data_path": "d.jsonl", "output_dir": "out", "dry_run": True, "warmup": 3,
                              "lora": {"enabled": True, "r": 8, "gone": 1}}},
        "some_future_key": {"kept": True},
    }
    (folder / "run.json").write_text(json.dumps(old), encoding="utf-8")
    record = read_run(folder)
    assert record.status == "completed" and record.stages == [] and record.timings == {}
    assert record.options is not None and record.options.train.lora.r == 8
    assert record.options.train.batch_size == TrainConfig.model_fields["batch_size"].default
    assert record.options.actions == ["train"]
    assert record.model_extra == {"some_future_key": {"kept": True}}
    # Options that do not validate any more read as None; the run still lists.
    (folder / "run.json").write_text(json.dumps({**old, "options": {"train": {"batch_size": 0}}}), encoding="utf-8")
    assert read_run(folder).options is None and [r.name for r in list_runs(tmp_path)] == ["run-old"]
    # core.runs keeps the record exactly as read, so saving it loses nothing.
    run = runs.open_run(folder)
    run.save()
    assert _raw(folder / "run.json")["options"] == {"train": {"batch_size": 0}}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{nope", "not valid JSON (line 1, column 2"),
        ("[1, 2]", "not a JSON object (a list)"),
        ('{"status": ["not", "a", "string"]}', "not a valid RunRecord: status"),
        ('{"stages": "none"}', "not a valid RunRecord: stages"),
    ],
)
def test_a_corrupt_run_json_gives_one_clear_error(tmp_path: Path, content: str, reason: str) -> None:
    (tmp_path / "run.json").write_text(content, encoding="utf-8")
    with pytest.raises(RunFileError) as caught:
        read_run(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'run.json'}: {reason}") and "\n" not in message
    assert caught.value.path == tmp_path / "run.json"
    with pytest.raises(ValueError):  # what the callers of a plain json.load caught
        runs.open_run(tmp_path)


def test_missing_and_unreadable_files_give_the_same_error(tmp_path: Path) -> None:
    with pytest.raises(RunFileError, match="no such file"):
        read_run(tmp_path)
    with pytest.raises(RunFileError, match="training_report.json: no such file"):
        read_training_report(tmp_path)
    (tmp_path / "evaluation.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(RunFileError, match="not UTF-8"):
        read_evaluation(tmp_path)
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "export_report.json").write_text('{"candidates": {"int8": {"passed": "maybe"}}}')
    with pytest.raises(RunFileError, match=r"not a valid ExportReport: candidates\.int8\.passed"):
        read_export_report(tmp_path)


def test_an_export_report_has_one_served_name_and_older_ones_still_read(tmp_path: Path) -> None:
    service = tmp_path / "service"
    service.mkdir()
    path = service / "export_report.json"
    path.write_text(json.dumps({"service_precision": "int8", "sizes": {"fp32_bytes": 10, "int8_bytes": 4},
                                "parity": {"seconds": {"fp32": 0.1}, "int8": {"passed": True}},
                                "latency": {"onnx_fp32": {"median_ms_per_token": 2.0}, "speedup_int8_vs_torch": 3}}))
    report = read_export_report(tmp_path)
    assert report.served_precision == "int8" and "service_precision" not in report.model_dump()
    assert report.precisions() == ["fp32", "int8"]  # from sizes, parity and latency: no candidates yet
    int8 = report.candidate("int8")
    assert int8.served and int8.passed and int8.size_bytes == 4 and int8.speedup_vs_torch == 3
    assert not report.candidate("fp32").checked  # no parity recorded for it
    path.write_text(json.dumps({"served_precision": "int4_block", "service_precision": "int4_block"}))
    assert read_export_report(tmp_path).model_dump(exclude_unset=True) == {"served_precision": "int4_block"}


@pytest.mark.slow
def test_a_tiny_real_run_reads_back_typed(tmp_path: Path) -> None:
    """Train and export a tiny model through core.runs; every file reads back, losing nothing."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    options = runs.RunOptions(actions=["train", "export"], train=tiny_config(tmp_path / "unused", epochs=2.0),
                              export=runs.ExportOptions(export_onnx=True))
    run = runs.run_actions(tmp_path / "runs", options)
    record = read_run(run.path)
    assert record.status == "completed", record.error
    _round_trip(record, run.run_file)
    assert record.options is not None and record.options.train.base_model == "tiny-causal"

    report = read_training_report(run.path)  # the run folder or its model/ folder
    assert report == read_training_report(run.model_dir)
    _round_trip(report, run.model_dir / run_layout.TRAINING_REPORT_FILE)
    assert report.status == "completed" and report.global_step and report.global_step > 0
    assert report.config is not None and report.config.seed == 0 and report.config.dry_run is False
    assert report.evaluation is not None and report.evaluation.verdict

    evaluation = read_evaluation(run.path)
    _round_trip(evaluation, run.model_dir / run_layout.EVALUATION_FILE)
    assert evaluation.rows and evaluation.verdict == report.evaluation.verdict
    assert evaluation.splits["train"].n == len([r for r in evaluation.rows if r.split == "train"])

    export = read_export_report(run.path)
    _round_trip(export, run.service_dir / run_layout.EXPORT_REPORT_FILE)
    assert export.model_stub is False and export.served_precision in export.candidates
    served = [name for name, candidate in export.candidates.items() if candidate.served]
    assert served == [export.served_precision]
    fp32 = export.parity_of("fp32")
    assert fp32 is not None and fp32.n_compared
    assert export.self_test is not None and export.self_test.n_checked
    assert read_model_metadata(run.service_dir).architecture == "causal"
