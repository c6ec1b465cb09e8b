"""Export failure modes: clear ExportErrors, nothing half-written, existing folders untouched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.events import Cancelled, CancelToken, Event, Progress
from core.exporter.errors import ExportError, OutputExistsError

pytestmark = pytest.mark.slow


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_existing_output_is_refused_and_untouched(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from core.exporter.onnx_export import export_real

    target = tmp_path / "svc"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="already exists"):
        export_real(tiny_models["causal"], target)
    assert _entries(target) == ["keep.txt"] and (target / "keep.txt").read_text() == "mine"
    assert _entries(tmp_path) == ["svc"]


@pytest.mark.parametrize("content", ["nothing", "junk-json", "missing"])
def test_not_a_model_is_a_clear_error(tmp_path: Path, content: str) -> None:
    from core.exporter.onnx_export import export_real

    folder = tmp_path / "not_a_model"
    if content != "missing":
        folder.mkdir()
        (folder / "notes.txt").write_text("hello")
    if content == "junk-json":
        (folder / "model_manifest.json").write_text("{not json")
    with pytest.raises(ExportError) as info:
        export_real(folder, tmp_path / "svc")
    message = str(info.value)
    assert str(folder) in message or "not" in message
    assert "Traceback" not in message
    assert not (tmp_path / "svc").exists()


def test_build_dispatches_a_real_model_to_the_onnx_export(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """The lead's builder refuses a clobber for real models too (before any heavy work)."""
    from core.exporter.builder import build

    target = tmp_path / "svc"
    target.mkdir()
    with pytest.raises(OutputExistsError):
        build(tiny_models["causal"] / "model", target, export_onnx=True)


def test_cancel_leaves_nothing_behind(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from core.exporter.onnx_export import export_real

    token = CancelToken()
    seen: list[Event] = []

    def on_event(event: Event) -> None:
        seen.append(event)
        if isinstance(event, Progress) and event.step == 3:  # graphs exported, about to check them
            token.cancel()

    with pytest.raises(Cancelled):
        export_real(tiny_models["causal"], tmp_path / "svc", on_event=on_event, cancel=token, exporter="torchscript")
    assert _entries(tmp_path) == []
    assert any(isinstance(e, Progress) for e in seen)


def test_failure_midway_is_an_export_error_and_cleans_up(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.exporter import quantize
    from core.exporter.onnx_export import export_real

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(quantize, "quantize_int8", broken)
    failures: list[Event] = []
    with pytest.raises(ExportError, match="quantizing to int8.*disk on fire"):
        export_real(
            tiny_models["seq2seq"], tmp_path / "svc", on_event=failures.append, exporter="torchscript"
        )
    assert _entries(tmp_path) == []
    assert not any(e.kind == "failed" for e in failures), "core raises; the boundary reports"


def test_overwrite_replaces_an_existing_service(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from core.exporter.onnx_export import export_real

    target = tmp_path / "svc"
    target.mkdir()
    (target / "onnx").mkdir()
    (target / "onnx" / "old.onnx").write_text("old")  # an older export's (no list of files yet): ours
    (target / "model_metadata.json").write_text("{}")  # a TinyForge service: --overwrite may replace it
    report = export_real(
        tiny_models["causal"], target, overwrite=True, quantize="none", self_test=False, max_new_tokens=4,
        exporter="torchscript",
    )
    assert not (target / "onnx" / "old.onnx").exists()
    assert report.quantized_path is None and set(report.graphs) == {"fp32"}
    assert report.exporter == "torchscript"
    assert report.parity_of("fp32").passed is True
    assert json.loads((target / "model_metadata.json").read_text())["model_stub"] is False
    assert _entries(tmp_path) == ["svc"]


def test_predict_onnx_errors(tmp_path: Path, exported: dict[str, Any]) -> None:
    from core.exporter.builder import build
    from core.exporter.onnx_predict import predict_onnx

    stub = tmp_path / "model_stub.json"
    stub.write_text(json.dumps({"model_type": "tinyforge_stub", "n_records": 3}))
    build(stub, tmp_path / "stub_svc", export_onnx=True)
    with pytest.raises(ExportError, match="dry-run"):
        predict_onnx(tmp_path / "stub_svc", "hello")
    with pytest.raises(ExportError, match="not an exported service"):
        predict_onnx(tmp_path, "hello")
    service, _ = exported["causal"]
    with pytest.raises(ExportError, match="empty"):
        predict_onnx(service, "  ")
    with pytest.raises(ExportError, match="precision"):
        predict_onnx(service, "hi", precision="int4")
