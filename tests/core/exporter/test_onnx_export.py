"""Real ONNX export of tiny trained models: graphs, parity with torch, predict, the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.core.export_helpers import QUESTIONS

pytestmark = pytest.mark.slow

ARCHS = ["causal", "seq2seq"]


@pytest.mark.parametrize("arch", ARCHS)
def test_export_writes_checked_graphs_and_metadata(exported: dict[str, Any], arch: str) -> None:
    import onnx

    service, report = exported[arch]
    assert report.onnx_path == str(service / "onnx" / "model.onnx")
    assert report.quantized_path == str(service / "onnx" / "quant" / "quantized.onnx")
    graphs = report.graphs
    # fp32, int8 (quantized.onnx, always shipped) and the served candidate when it is another one.
    assert set(graphs) == {"fp32", "int8", report.served_precision}
    assert set(report.candidates) == {"fp32", "int8", "int8_block", "int4_block"}
    roles = {"decoder"} if arch == "causal" else {"encoder", "decoder"}
    for files in graphs.values():
        assert set(files) == roles
        for path in files.values():
            onnx.checker.check_model(path)
    meta = json.loads((service / "onnx" / "model.onnx.meta.json").read_text())
    assert meta["runtime"]["architecture"] == arch
    # How each graph was quantized, per role: a seq2seq export keeps its encoder's and decoder's.
    for precision in ("int8", "int8_block", "int4_block"):
        quantization = report.candidates[precision].quantization
        assert set(quantization) == roles, precision
        assert meta["quantization_candidates"][precision] == {role: q.to_json() for role, q in quantization.items()}
    assert report.candidates["int8"].quantization["decoder"].method.endswith("quantize_dynamic")
    assert meta["quantization"] == meta["quantization_candidates"]["int8"]["decoder"]  # TinyForgeAI's key
    assert meta["opset"] >= 17 and meta["inputs"] and meta["outputs"][0] == "logits"
    assert any(name.startswith("past_key_values.") for name in meta["inputs"])
    metadata = json.loads((service / "model_metadata.json").read_text())
    assert metadata["model_stub"] is False and metadata["source"] == "tinyforge-exporter"
    assert metadata["model_path"] == report.model_path
    for name in ("tokenizer.json", "tinyforge_prompt.json", "app.py", "runtime.py", "run.sh", "Dockerfile", "README.md"):
        assert (service / name).is_file(), name
    requirements = (service / "requirements.txt").read_text()
    assert "onnxruntime" in requirements and "torch" not in requirements
    on_disk = json.loads((service / "export_report.json").read_text())
    assert on_disk == report.to_json()
    assert "service_precision" not in on_disk  # one name: served_precision
    assert report.sizes["int8_bytes"] < report.sizes["fp32_bytes"]


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_parity_with_torch(exported: dict[str, Any], arch: str) -> None:
    _, report = exported[arch]
    parity = report.parity.results
    assert report.parity.tokenizer_match is True
    assert parity["fp32"].max_abs_logit_diff < 1e-3
    assert parity["fp32"].generation_match_rate == 1.0
    assert parity["fp32"].passed is True
    latency = report.latency.backends
    for backend in ("torch", "onnx_fp32"):
        assert latency[backend].median_ms_per_token > 0
    checked = [p for p in ("int8", "int8_block", "int4_block") if parity[p].checked]
    assert checked, "no quantized candidate was checked"
    for precision in checked:  # the fastest first; once one passed the slower ones are not needed
        assert 0.0 <= parity[precision].generation_match_rate <= 1.0
        assert 0.0 <= parity[precision].mean_token_agreement <= 1.0
        assert latency[f"onnx_{precision}"].median_ms_per_token > 0
        if not parity[precision].passed:
            assert any(f"{precision} answers drift" in warning for warning in report.warnings)
    for precision in {"int8", "int8_block", "int4_block"} - set(checked):
        assert "is faster and answers like the trained model" in parity[precision].note
    assert report.self_test.passed is True
    assert report.self_test.n_matched == report.self_test.n_checked > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_predict_onnx_fp32_equals_torch_predict(exported: dict[str, Any], tiny_models: dict[str, Path], arch: str) -> None:
    from core.exporter.onnx_predict import predict_onnx
    from core.training.predict import predict

    service, _ = exported[arch]
    for text in [*QUESTIONS, "Something it never saw: ünïcödé?"]:
        want = predict(tiny_models[arch], text, max_new_tokens=20)
        assert predict_onnx(service, text, precision="fp32", max_new_tokens=20) == want


@pytest.mark.parametrize("arch", ARCHS)
def test_predict_onnx_int8_runs(exported: dict[str, Any], arch: str) -> None:
    from core.exporter.onnx_predict import predict_onnx

    service, _ = exported[arch]
    answer = predict_onnx(service, QUESTIONS[0], max_new_tokens=8)
    assert isinstance(answer, str)
    assert predict_onnx(service, QUESTIONS[0], precision="int8", max_new_tokens=0) == ""


def test_runtime_has_no_torch_dependency() -> None:
    """The service's generation code imports neither torch nor transformers."""
    from core.exporter.onnx_predict import RUNTIME_FILE

    source = RUNTIME_FILE.read_text()
    for name in ("torch", "transformers"):
        assert f"import {name}" not in source and f"from {name}" not in source
