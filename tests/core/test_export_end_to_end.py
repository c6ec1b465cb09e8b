"""Train (real trainer, LoRA merged) -> build (the lead's builder) -> predict/serve, tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.events import ArtifactWritten, Event, Finished, Progress

pytestmark = pytest.mark.slow


def test_trained_lora_model_exports_through_build(tmp_path: Path) -> None:
    from core.exporter.builder import build
    from core.exporter.onnx_predict import predict_onnx
    from core.training.config import LoraSettings, TrainConfig
    from core.training.hf_train import run_real_training
    from core.training.predict import predict

    sample = Path(__file__).resolve().parents[2] / "examples" / "sample_qna.jsonl"
    trained = tmp_path / "run" / "model_out"
    config = TrainConfig(
        data_path=str(sample), output_dir=str(trained), base_model="tiny-causal",
        lora=LoraSettings(enabled=True), max_steps=6, batch_size=3, device="cpu",
    )
    assert run_real_training(config)["status"] == "completed"

    events: list[Event] = []
    service = tmp_path / "run" / "service"
    report = build(trained, service, export_onnx=True, on_event=events.append)

    assert report["parity"]["fp32"]["passed"] is True and report["self_test"]["passed"] is True
    assert report["parity"]["inputs_source"].endswith("sample_qna.jsonl")
    assert json.loads((service / "export_report.json").read_text())["onnx_path"] == str(service / "onnx" / "model.onnx")
    steps = [e for e in events if isinstance(e, Progress)]
    assert steps and steps[-1].step == steps[-1].total
    assert any(isinstance(e, ArtifactWritten) and e.path.endswith("quantized.onnx") for e in events)
    assert isinstance(events[-1], Finished) and events[-1].result == report
    question = "What is your refund policy?"
    assert predict_onnx(service, question, precision="fp32", max_new_tokens=16) == predict(trained, question, max_new_tokens=16)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model_out", "service"]
