"""core.runs: run folders, run.json / events.jsonl, statuses, staging, listing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from core import runs
from core.events import ArtifactWritten, CancelToken, Event, Progress
from core.jsonio import write_json_atomic
from core.training.config import TrainConfig

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample_qna.jsonl"


def _options(data: Path, actions: list[str] | None = None, **export: object) -> runs.RunOptions:
    return runs.RunOptions(
        actions=actions or ["train"],  # type: ignore[arg-type]
        train=TrainConfig(data_path=str(data), output_dir="", dry_run=True),
        export=runs.ExportOptions(**export),  # type: ignore[arg-type]
    )


def _events(run: runs.RunFolder) -> list[dict]:
    return [json.loads(line) for line in run.events_file.read_text().splitlines()]


def _writer(name: str, steps: int = 3, cancel_at: int | None = None, fail: bool = False) -> runs.StageFn:
    def stage(run: runs.RunFolder, staging: Path, on_event, cancel: CancelToken) -> dict:
        staging.mkdir(parents=True, exist_ok=True)
        for step in range(steps):
            if cancel_at is not None and step == cancel_at:
                cancel.cancel()
            cancel.raise_if_cancelled()
            path = write_json_atomic(staging / f"{name}-{step}.json", {"step": step})
            on_event(ArtifactWritten(str(path)))
            on_event(Progress(name, step + 1, steps))
        if fail:
            raise ValueError("the stage broke on purpose")
        return {"files": steps}

    return stage


def test_create_run_writes_run_json(tmp_path: Path) -> None:
    run = runs.create_run(tmp_path / "out", _options(SAMPLE))
    assert run.path.parent == (tmp_path / "out").resolve()
    record = json.loads(run.run_file.read_text())
    assert record["status"] == "created"
    assert record["dataset"]["sha256"] and len(record["dataset"]["sha256"]) == 64
    assert record["options"]["train"]["output_dir"] == str(run.path / "model")
    assert record["versions"]["python"]
    assert run.options().train.dry_run is True


def test_execute_completed_records_events_timings_and_remaps_paths(tmp_path: Path) -> None:
    run = runs.create_run(tmp_path, _options(SAMPLE), dataset_sha256="ab" * 32)
    seen: list[Event] = []
    status = runs.execute_run(run, [runs.Stage("train", "model", _writer("m"))], seen.append)
    assert status == "completed"
    assert sorted(p.name for p in run.model_dir.iterdir()) == ["m-0.json", "m-1.json", "m-2.json"]
    assert not list(run.path.glob(".*partial"))
    record = json.loads(run.run_file.read_text())
    assert record["status"] == "completed"
    assert record["dataset"]["sha256"] == "ab" * 32
    assert "train" in record["timings"] and "total" in record["timings"]
    assert record["stages"][0]["result"] == {"files": 3}
    kinds = [e["kind"] for e in _events(run)]
    assert kinds[0] == "stage" and kinds[-1] == "finished"
    artifacts = [e.path for e in seen if isinstance(e, ArtifactWritten)]
    assert artifacts and all(p.startswith(str(run.model_dir)) for p in artifacts)


def test_cancel_leaves_no_partial_artifact(tmp_path: Path) -> None:
    run = runs.create_run(tmp_path, _options(SAMPLE))
    status = runs.execute_run(run, [runs.Stage("train", "model", _writer("m", steps=5, cancel_at=2))])
    assert status == "cancelled"
    assert not run.model_dir.exists()
    assert not list(run.path.glob(".*"))
    assert runs.open_run(run.path).status == "cancelled"
    assert _events(run)[-1] == {"kind": "finished", "status": "cancelled", "result": {"run_dir": str(run.path), "status": "cancelled"}}


def test_failure_is_recorded_and_reported(tmp_path: Path) -> None:
    run = runs.create_run(tmp_path, _options(SAMPLE))
    seen: list[Event] = []
    stages = [runs.Stage("train", "model", _writer("m")), runs.Stage("export", "service", _writer("s", fail=True))]
    status = runs.execute_run(run, stages, seen.append)
    assert status == "failed"
    assert run.model_dir.is_dir() and not run.service_dir.exists()
    record = runs.open_run(run.path).record
    assert record.status == "failed"
    assert "broke on purpose" in record.error.message
    failed = [e for e in _events(run) if e["kind"] == "failed"]
    assert failed and "Traceback" in failed[0]["details"]


def test_existing_target_needs_overwrite(tmp_path: Path) -> None:
    run = runs.create_run(tmp_path, _options(SAMPLE))
    stage = [runs.Stage("export", "service", _writer("s", steps=1))]
    assert runs.execute_run(run, stage) == "completed"
    assert runs.execute_run(run, stage) == "failed"
    assert "overwrite" in runs.open_run(run.path).record.error.message
    assert runs.execute_run(run, stage, overwrite=True) == "completed"
    assert (run.service_dir / "s-0.json").is_file()


def test_list_runs_newest_first_and_skips_junk(tmp_path: Path) -> None:
    first = runs.create_run(tmp_path, _options(SAMPLE))
    second = runs.create_run(tmp_path, _options(SAMPLE))
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{nope")
    listed = [r.path for r in runs.list_runs(tmp_path)]
    assert set(listed) == {first.path, second.path}
    assert runs.list_runs(tmp_path / "missing") == []


def test_standard_dry_run_train_and_export(tmp_path: Path) -> None:
    pytest.importorskip("core.training.dataset")
    options = _options(SAMPLE, ["train", "export"], export_onnx=True)
    options.train.lora.enabled = True
    options.train.lora.r = 4
    options.train.lora.alpha = 32
    run = runs.run_actions(tmp_path, options)
    assert run.status == "completed", run.record.error
    stub = json.loads((run.model_dir / "model_stub.json").read_text())
    assert stub["model_type"] == "tinyforge_stub" and stub["n_records"] == 3
    assert stub["lora_config"]["r"] == 4 and stub["lora_config"]["alpha"] == 32
    assert (run.service_dir / "model_metadata.json").is_file()
    assert (run.service_dir / "onnx" / "model.onnx").is_file()
    assert not list(run.path.glob(".*"))


def test_core_runs_imports_no_qt_or_torch() -> None:
    import subprocess

    code = "import sys, core.runs; print(any(m.startswith(('PySide6','torch','transformers')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_output_root_that_cannot_hold_runs_gets_one_clear_line(tmp_path) -> None:
    from core.runs import RunOptions, create_run

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    options = RunOptions.model_validate({"train": {"data_path": str(tmp_path / "d.jsonl"), "output_dir": "x"}})
    with pytest.raises(OSError) as caught:
        create_run(blocker / "runs", options)
    message = str(caught.value)
    assert message.startswith(f"cannot create a run folder in {blocker / 'runs'}") and "[Errno" not in message
    assert blocker.read_text() == "not a folder"
