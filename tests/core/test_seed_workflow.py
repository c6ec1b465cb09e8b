"""What TinyForgeAI's training docs promise, kept for its users: LoRA hook, dry-run trainer,
exporter, CLI, workflow."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from core.exporter.builder import build
from core.exporter.errors import ExportError, OutputExistsError
from core.training.dataset import DatasetError
from core.training.peft_adapter import apply_lora, get_default_lora_config
from core.training.train import run_training

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_qna.jsonl"


def _iso_utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0
    return parsed


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------------------- LoRA hook


def test_default_lora_config_is_the_seeds() -> None:
    assert get_default_lora_config() == {"r": 8, "alpha": 16, "target_modules": ["q", "v"]}


def test_apply_lora_patches_a_copy() -> None:
    model = {"model_type": "tinyforge_stub", "n_records": 3}
    patched = apply_lora(model)
    assert model == {"model_type": "tinyforge_stub", "n_records": 3}
    assert patched["lora_applied"] is True
    assert patched["lora_config"] == {"r": 8, "alpha": 16, "target_modules": ["q", "v"]}
    _iso_utc(patched["lora_timestamp"])
    assert patched["model_type"] == "tinyforge_stub" and patched["n_records"] == 3


def test_apply_lora_again_updates_only_the_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.training.peft_adapter as adapter

    first = apply_lora({"model_type": "m"}, {"r": 4, "alpha": 8, "target_modules": ["q"]})
    monkeypatch.setattr(adapter, "utc_now_iso", lambda: "2030-01-01T00:00:00+00:00")
    second = apply_lora(first)
    assert second["lora_timestamp"] == "2030-01-01T00:00:00+00:00"
    assert {k: v for k, v in second.items() if k != "lora_timestamp"} == {
        k: v for k, v in first.items() if k != "lora_timestamp"
    }


@pytest.mark.parametrize("model", [None, [], "model", 3])
def test_apply_lora_rejects_non_dicts(model: object) -> None:
    with pytest.raises(ValueError):
        apply_lora(model)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"r": 0}, "rank"),
        ({"r": 2.5}, "rank"),
        ({"alpha": 0}, "alpha"),
        ({"alpha": -1}, "alpha"),
        ({"target_modules": []}, "target_modules"),
        ({"target_modules": ["q", ""]}, "target_modules"),
        ({"target_modules": [1]}, "target_modules"),
    ],
)
def test_apply_lora_validates_custom_configs(config: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        apply_lora({"model_type": "m"}, config)


# ----------------------------------------------------------------------------- dry run


def test_dry_run_writes_the_seed_stub(tmp_path: Path) -> None:
    stub = run_training(SAMPLE, tmp_path / "model", dry_run=True)
    written = json.loads((tmp_path / "model" / "model_stub.json").read_text())
    assert written == stub
    assert list(written) == ["model_type", "n_records", "created_time", "notes"]
    assert written["model_type"] == "tinyforge_stub"
    assert written["n_records"] == 3
    assert written["notes"] == "dry-run artifact"
    _iso_utc(written["created_time"])


def test_dry_run_with_lora_adds_the_seed_keys(tmp_path: Path) -> None:
    run_training(SAMPLE, tmp_path, dry_run=True, use_lora=True)
    written = json.loads((tmp_path / "model_stub.json").read_text())
    assert written["lora_applied"] is True
    assert written["lora_config"] == {"r": 8, "alpha": 16, "target_modules": ["q", "v"]}
    _iso_utc(written["lora_timestamp"])


def test_dry_run_reports_events(tmp_path: Path) -> None:
    from core.events import ArtifactWritten, Finished, Log

    events = []
    run_training(SAMPLE, tmp_path, dry_run=True, on_event=events.append)
    assert any(isinstance(e, Log) and "3 records" in e.message for e in events)
    assert any(isinstance(e, ArtifactWritten) and e.path.endswith("model_stub.json") for e in events)
    assert isinstance(events[-1], Finished)


def test_dry_run_cancelled_writes_nothing(tmp_path: Path) -> None:
    from core.events import Cancelled, CancelToken

    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        run_training(SAMPLE, tmp_path / "out", dry_run=True, cancel=token)
    assert not (tmp_path / "out").exists()


def test_dry_run_bad_data_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "output": "b"}\n{"input": "c"}\n', encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        run_training(bad, tmp_path / "out", dry_run=True)
    assert info.value.line == 2
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- exporter


def _stub(tmp_path: Path) -> Path:
    run_training(SAMPLE, tmp_path / "tiny_model", dry_run=True, use_lora=True)
    return tmp_path / "tiny_model" / "model_stub.json"


def test_export_without_onnx_writes_metadata_and_service(tmp_path: Path) -> None:
    stub = _stub(tmp_path)
    build(stub, tmp_path / "svc")
    metadata = json.loads((tmp_path / "svc" / "model_metadata.json").read_text())
    assert list(metadata) == ["model_path", "created_time", "source", "model_stub"]
    assert metadata["model_path"] == str(stub)
    assert metadata["source"] == "tinyforge-exporter"
    assert metadata["model_stub"] is True
    _iso_utc(metadata["created_time"])
    for name in ("app.py", "model_loader.py", "schemas.py", "requirements.txt", "run.sh"):
        assert (tmp_path / "svc" / name).is_file(), name
    assert not (tmp_path / "svc" / "onnx").exists()


def test_export_with_onnx_writes_the_seed_placeholders(tmp_path: Path) -> None:
    stub = _stub(tmp_path)
    out = tmp_path / "tiny_service"
    report = build(stub, out, export_onnx=True)
    onnx_text = (out / "onnx" / "model.onnx").read_text()
    lines = onnx_text.splitlines()
    assert lines[0] == "# TinyForgeAI ONNX placeholder"
    assert lines[1].startswith("# Exported: ")
    assert lines[2] == f"# Source: {stub}"
    assert lines[3] == "# This is a stub file for testing purposes."
    meta = json.loads((out / "onnx" / "model.onnx.meta.json").read_text())
    assert meta["exported_from"] == str(stub)
    assert meta["version"] == "0.1-stub"
    assert meta["source_model"] == {"model_type": "tinyforge_stub", "n_records": 3}
    quant = json.loads((out / "onnx" / "quant" / "quantized.onnx").read_text())
    assert quant["quantized"] is True and quant["mode"] == "int8" and quant["version"] == "0.1-stub"
    assert set(quant) == {"exported_from", "export_time", "version", "quantized", "mode", "quantize_time"}
    saved = json.loads((out / "export_report.json").read_text())
    assert saved == report
    assert saved["onnx_path"] == str(out / "onnx" / "model.onnx")
    assert saved["quantized_path"] == str(out / "onnx" / "quant" / "quantized.onnx")
    assert saved["model_path"] == str(stub)
    _iso_utc(saved["export_time"])


def test_export_accepts_the_model_folder(tmp_path: Path) -> None:
    stub = _stub(tmp_path)
    build(stub.parent, tmp_path / "svc")
    assert json.loads((tmp_path / "svc" / "model_metadata.json").read_text())["model_path"] == str(stub)


def test_export_refuses_an_existing_folder_and_leaves_it_untouched(tmp_path: Path) -> None:
    stub = _stub(tmp_path)
    out = tmp_path / "svc"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="already exists"):
        build(stub, out, export_onnx=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # --overwrite replaces only a TinyForge service (model_metadata.json): this one is refused too
    with pytest.raises(ExportError, match="not a TinyForge service"):
        build(stub, out, export_onnx=True, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    (out / "model_metadata.json").write_text("{}")  # our marker beside a file we did not write: still refused
    with pytest.raises(ExportError, match="keep.txt, which TinyForge did not write"):
        build(stub, out, export_onnx=True, overwrite=True)
    (out / "keep.txt").unlink()
    build(stub, out, export_onnx=True, overwrite=True)
    assert (out / "export_report.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_missing_model_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not found"):
        build(tmp_path / "nope" / "model_stub.json", tmp_path / "svc")
    assert not (tmp_path / "svc").exists()


def test_export_cancel_leaves_nothing(tmp_path: Path) -> None:
    from core.events import Cancelled, CancelToken, Progress

    stub = _stub(tmp_path)
    token = CancelToken()

    def cancel_midway(event: object) -> None:
        if isinstance(event, Progress) and event.step == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        build(stub, tmp_path / "svc", export_onnx=True, on_event=cancel_midway, cancel=token)
    assert not (tmp_path / "svc").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny_model"]


def test_stub_service_answers_with_a_labelled_placeholder(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    stub = _stub(tmp_path)
    out = tmp_path / "svc"
    build(stub, out, export_onnx=True)
    sys.path.insert(0, str(out))
    try:
        for name in ("app", "model_loader", "schemas"):
            sys.modules.pop(name, None)
        import app  # type: ignore[import-not-found]

        client = TestClient(app.app)
        assert client.get("/health").json()["status"] == "ok"
        answer = client.post("/predict", json={"input": "hello"}).json()
        assert "placeholder" in answer["output"] and answer["placeholder"] is True
        assert client.post("/predict", json={"input": ""}).status_code == 422
    finally:
        sys.path.remove(str(out))
        for name in ("app", "model_loader", "schemas", "runtime"):
            sys.modules.pop(name, None)


# ----------------------------------------------------------------------------- command lines


def test_seed_workflow_end_to_end_as_scripts(tmp_path: Path) -> None:
    model, service = tmp_path / "tiny_model", tmp_path / "tiny_service"
    train = _run("core/training/train.py", "--data", "examples/sample_qna.jsonl", "--out", str(model), "--dry-run", "--use-lora")
    assert train.returncode == 0, train.stderr
    assert "3 records" in train.stderr
    export = _run(
        "core/exporter/builder.py", "--model-path", str(model / "model_stub.json"),
        "--output-dir", str(service), "--overwrite", "--export-onnx",
    )
    assert export.returncode == 0, export.stderr
    assert json.loads((model / "model_stub.json").read_text())["lora_applied"] is True
    assert json.loads((service / "model_metadata.json").read_text())["model_stub"] is True
    report = json.loads((service / "export_report.json").read_text())
    assert Path(report["onnx_path"]).is_file() and Path(report["quantized_path"]).is_file()


@pytest.mark.parametrize("entry", [["-m", "core.training.train"], ["-m", "core.cli", "train"]])
def test_train_entry_points_accept_the_seed_flags(tmp_path: Path, entry: list[str]) -> None:
    result = _run(*entry, "--data", str(SAMPLE), "--out", str(tmp_path), "--dry-run", "--use-lora",
                  "--lora-r", "4", "--lora-alpha", "32", "--lora-targets", "q,k,v")
    assert result.returncode == 0, result.stderr
    stub = json.loads((tmp_path / "model_stub.json").read_text())
    assert stub["lora_config"] == {"r": 4, "alpha": 32, "target_modules": ["q", "k", "v"]}


def test_cli_bad_data_exits_1_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "output": "b"}\n{"input": "c", "output": 5}\n', encoding="utf-8")
    result = _run("-m", "core.cli", "train", "--data", str(bad), "--out", str(tmp_path / "out"), "--dry-run")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(bad) in result.stderr and "line 2" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_missing_data_exits_1(tmp_path: Path) -> None:
    result = _run("-m", "core.cli", "train", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o"), "--dry-run")
    assert result.returncode == 1 and "not found" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_cli_export_refuses_existing_folder(tmp_path: Path) -> None:
    stub = _stub(tmp_path)
    (tmp_path / "svc").mkdir()
    result = _run("-m", "core.cli", "export", "--model-path", str(stub), "--output-dir", str(tmp_path / "svc"))
    assert result.returncode == 1 and "already exists" in result.stderr and "Traceback" not in result.stderr
    assert list((tmp_path / "svc").iterdir()) == []


def test_cli_export_missing_model(tmp_path: Path) -> None:
    result = _run("-m", "core.cli", "export", "--model-path", str(tmp_path / "x.json"), "--output-dir", str(tmp_path / "svc"))
    assert result.returncode == 1 and "not found" in result.stderr
    assert not (tmp_path / "svc").exists()


def test_cli_validate_json_and_exit_codes(tmp_path: Path) -> None:
    good = _run("-m", "core.cli", "validate", "--data", str(SAMPLE), "--json")
    assert good.returncode == 0, good.stderr
    report = json.loads(good.stdout)
    assert {"n_records", "avg_input_len", "avg_output_len", "problems", "warnings"} <= set(report)
    assert report["n_records"] == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "output": "b"}\nnot json\n', encoding="utf-8")
    result = _run("-m", "core.cli", "validate", "--data", str(bad))
    assert result.returncode == 1 and "line 2" in result.stdout


def test_cli_validate_prints_plain_progress_lines_when_piped() -> None:
    result = _run("-m", "core.cli", "validate", "--data", str(SAMPLE))
    assert result.returncode == 0
    assert "\r" not in result.stderr


def test_foremforge_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("foremforge")
    assert script.exists()
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("validate", "train", "export", "predict", "serve"):
        assert command in result.stdout


def test_every_subcommands_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        summary = next(c.help for c in commands._choices_actions if c.dest == name)
        assert sub.description == summary[0].upper() + summary[1:] + ".", name
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        assert sub.description in capsys.readouterr().out.replace("\n", " ")


# ----------------------------------------------------------------------------- layering


def test_importing_core_loads_no_qt_and_no_heavy_libraries() -> None:
    code = (
        "import importlib, pkgutil, sys, core\n"
        "for info in pkgutil.walk_packages(core.__path__, 'core.'):\n"
        # the service template is a payload copied into service folders (its app.py loads the
        # folder's model on import), not a part of core
        "    if not info.name.endswith('__main__') and '.service_template.' not in info.name:\n"
        "        importlib.import_module(info.name)\n"
        "heavy = [m for m in ('PySide6', 'torch', 'transformers', 'peft', 'onnx', 'onnxruntime', 'tinyforge_gui')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
