"""A real training output is replaced whole or not at all: a failed, cancelled or refused run
leaves the previous output byte-identical; LoRA then full fine-tuning leaves no stale adapter;
resume still works; the export reads safetensors only."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from core.events import CancelToken, Progress
from core.jsonio import read_json
from core.training import hf_train
from core.training.errors import TrainingError
from core.training.hf_train import run_real_training
from tests.core.output_helpers import fail_rename_into, hidden_beside, snapshot, usual_modes
from tests.core.training_helpers import SAMPLE as ROOT_SAMPLE
from tests.core.training_helpers import EventRecorder, tiny_config

_CACHE: dict[str, Path] = {}


@pytest.fixture(name="lora_output")
def lora_output_fixture(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """A completed LoRA training output (trained once per session), copied for each test."""
    if "lora" not in _CACHE:
        out = tmp_path_factory.mktemp("lora") / "out"
        report = run_real_training(tiny_config(out, lora=True, max_steps=2))
        assert report["status"] == "completed"
        _CACHE["lora"] = out
    copy = tmp_path / "out"
    shutil.copytree(_CACHE["lora"], copy)
    return copy


def test_lora_then_full_finetune_leaves_no_stale_adapter(lora_output: Path) -> None:
    assert (lora_output / "adapter" / "adapter_model.safetensors").is_file()
    report = run_real_training(tiny_config(lora_output, max_steps=1))
    assert report["status"] == "completed"
    assert not (lora_output / "adapter").exists(), "the LoRA run's adapter/ survived a full fine-tune"
    manifest = read_json(lora_output / "model_manifest.json")
    assert "lora_applied" not in manifest
    assert read_json(lora_output / "training_report.json")["config"]["lora"]["enabled"] is False
    assert hidden_beside(lora_output) == []


def test_a_failure_while_training_keeps_the_previous_output(lora_output: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(lora_output)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(hf_train, "save_completed", broken)
    recorder = EventRecorder()
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_real_training(tiny_config(lora_output, max_steps=1), on_event=recorder)
    assert not recorder.of("failed"), "core raises; the boundary reports"
    assert snapshot(lora_output) == before, "the previous completed output (or its report) was changed"
    assert read_json(lora_output / "training_report.json")["status"] == "completed"
    assert hidden_beside(lora_output) == []


def test_a_failure_while_publishing_keeps_the_previous_output(lora_output: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before, inode = snapshot(lora_output), lora_output.stat().st_ino
    failures = fail_rename_into(monkeypatch, lora_output)
    with pytest.raises(OSError, match="No space left"):
        run_real_training(tiny_config(lora_output, max_steps=1))
    assert failures() == 1
    assert snapshot(lora_output) == before and lora_output.stat().st_ino == inode
    assert hidden_beside(lora_output) == []


def test_cancel_keeps_a_completed_output_and_resume_replaces_it(lora_output: Path) -> None:
    kept = {name: snapshot(lora_output / name) for name in ("model", "adapter")}
    files = {name: (lora_output / name).read_bytes() for name in ("training_report.json", "model_manifest.json")}
    token = CancelToken()

    def cancel_at_two(event: object) -> None:
        if isinstance(event, Progress) and event.step == 2:
            token.cancel()

    report = run_real_training(tiny_config(lora_output, epochs=20), on_event=EventRecorder(cancel_at_two), cancel=token)
    assert report["status"] == "cancelled" and report["checkpoint"] == "checkpoints/checkpoint-2"
    for name, content in kept.items():
        assert snapshot(lora_output / name) == content, f"{name}/ changed by a cancelled run"
    for name, content in files.items():
        assert (lora_output / name).read_bytes() == content, f"{name} changed by a cancelled run"
    assert read_json(lora_output / "checkpoints" / "training_report.json")["status"] == "cancelled"

    # the cancelled run was a full fine-tune: resume checks it against its own report, not the LoRA one
    resumed = run_real_training(tiny_config(lora_output, epochs=20, resume=True))
    assert resumed["status"] == "completed" and resumed["resumed_from"] == "checkpoint-2"
    assert not (lora_output / "checkpoints").exists() and not (lora_output / "adapter").exists()
    assert read_json(lora_output / "training_report.json")["status"] == "completed"
    assert hidden_beside(lora_output) == []


def test_a_folder_with_foreign_files_is_refused_before_training(lora_output: Path) -> None:
    (lora_output / "my_notes.md").write_text("mine", encoding="utf-8")
    before = snapshot(lora_output)
    with pytest.raises(TrainingError, match="my_notes.md, which TinyForge did not write"):
        run_real_training(tiny_config(lora_output, max_steps=1))
    assert snapshot(lora_output) == before and hidden_beside(lora_output) == []


def test_a_locked_output_is_refused(lora_output: Path) -> None:
    from core.staging import output_lock

    before = snapshot(lora_output)
    with output_lock(lora_output), pytest.raises(TrainingError, match="in use by another TinyForge run"):
        run_real_training(tiny_config(lora_output, max_steps=1))
    assert snapshot(lora_output) == before


def test_training_output_files_get_the_usual_modes(lora_output: Path) -> None:
    file_mode, dir_mode = usual_modes()
    source = _CACHE["lora"]
    assert source.stat().st_mode & 0o777 == dir_mode
    for path in source.rglob("*"):
        want = dir_mode if path.is_dir() else file_mode
        assert oct(path.stat().st_mode & 0o777) == oct(want), path
    assert (source / "model" / "model.safetensors").stat().st_mode & 0o777 == file_mode


def test_export_refuses_pickle_only_weights(lora_output: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from core.exporter.builder import build
    from core.exporter.errors import ExportError

    model = lora_output / "model"
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    with pytest.raises(ExportError) as info:
        build(lora_output, tmp_path / "svc")
    message = str(info.value)
    assert "pytorch_model.bin" in message and "safetensors" in message and "save_pretrained" in message
    assert "\n" not in message
    assert not (tmp_path / "svc").exists()


def test_a_dry_run_into_a_real_training_output_is_refused(lora_output: Path) -> None:
    """Before, it added model_stub.json: predict then refused the real model and export served it."""
    from core.training.train import run_training

    before = snapshot(lora_output)
    with pytest.raises(TrainingError, match="holds a real training output"):
        run_training(str(ROOT_SAMPLE), lora_output, dry_run=True)
    assert snapshot(lora_output) == before and hidden_beside(lora_output) == []
