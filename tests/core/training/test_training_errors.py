"""Bad input to a real training: a clear TrainingError within seconds, nothing left behind."""

from __future__ import annotations

import time

import pytest

from core.training.errors import TrainingError
from core.training.hf_train import run_real_training
from tests.core.training_helpers import EventRecorder, tiny_config, write_jsonl


def _fails(config, match: str) -> None:
    recorder = EventRecorder()
    start = time.monotonic()
    with pytest.raises(TrainingError, match=match):
        run_real_training(config, on_event=recorder)
    assert time.monotonic() - start < 30
    assert not recorder.of("failed"), "core raises; only a boundary (run, child, CLI, GUI) reports"


def test_invalid_dataset(tmp_path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"input": "a", "output": "b"}\nnot json\n', encoding="utf-8")
    _fails(tiny_config(tmp_path / "out", data=data), "line 2")
    assert not (tmp_path / "out").exists()


def test_missing_dataset(tmp_path) -> None:
    _fails(tiny_config(tmp_path / "out", data=tmp_path / "nope.jsonl"), "not found")
    assert not (tmp_path / "out").exists()


def test_unknown_base_model(tmp_path) -> None:
    _fails(tiny_config(tmp_path / "out", base="no-such-model"), "unknown base model 'no-such-model'")
    assert not (tmp_path / "out").exists()


def test_missing_model_folder(tmp_path) -> None:
    _fails(tiny_config(tmp_path / "out", base=str(tmp_path / "missing")), "folder not found")
    assert not (tmp_path / "out").exists()


def test_bad_lora_targets_list_the_real_ones(tmp_path) -> None:
    config = tiny_config(tmp_path / "out", base="tiny-seq2seq", lora=True)
    config.lora.target_modules = ["q_proj", "v"]
    _fails(config, r"q_proj not found.*modules that exist: .*\bk\b.*\bq\b")
    assert not (tmp_path / "out").exists()


def test_no_training_records_left_after_split(tmp_path) -> None:
    _fails(tiny_config(tmp_path / "out", eval_split=0.9), "no training records left")
    assert not (tmp_path / "out").exists()


def test_resume_without_checkpoint(tmp_path) -> None:
    _fails(tiny_config(tmp_path / "out", resume=True), "nothing to resume")


def test_fp16_on_cpu(tmp_path) -> None:
    _fails(tiny_config(tmp_path / "out", precision="fp16"), "fp16 needs a GPU")


def test_existing_user_folder_is_left_alone(tmp_path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    _fails(tiny_config(out, base="no-such-model"), "unknown base model")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    # a valid run is refused too: an output is replaced whole, and this folder is not ours
    data = write_jsonl(tmp_path / "one.jsonl", [{"input": "a", "output": "b"}])
    _fails(tiny_config(out, data=data, max_steps=1), "not a TinyForge training output")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "one.jsonl"]
