"""Which graph the service serves: quantized candidates behind a parity gate, else fp32."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.exporter.candidates import Gate, choose_served
from core.exporter.parity_compare import compare_generator
from core.exporter.parity_runs import TorchRun
from core.run_layout import LatencyReport, ParityResult
from tests.core.export_helpers import QUESTIONS

LATENCY = LatencyReport.model_validate(
    {"onnx_fp32": {"median_ms_per_token": 10.0}, "onnx_int8": {"median_ms_per_token": 4.0},
     "onnx_int8_block": {"median_ms_per_token": 6.0}, "onnx_int4_block": {"median_ms_per_token": 5.0}})


def _result(agreement: float, match: float) -> ParityResult:
    result = ParityResult(teacher_forced_agreement=agreement, generation_match_rate=match)
    result.passed = Gate().passes(result)
    return result


def test_the_fastest_candidate_that_passes_is_served() -> None:
    candidates = {"int8": _result(0.77, 0.0), "int8_block": _result(0.99, 1.0), "int4_block": _result(0.99, 0.95)}
    served, reason = choose_served(candidates, LATENCY, Gate())
    assert served == "int4_block" and "5 vs fp32 10 ms/token" in reason


def test_fp32_when_every_candidate_drifts_or_is_slower() -> None:
    candidates = {"int8": _result(0.97, 1.0), "int8_block": _result(0.99, 0.8)}
    served, reason = choose_served(candidates, LATENCY, Gate())
    assert served == "fp32" and "no quantized candidate passed" in reason
    slow = LATENCY.model_copy(deep=True)
    slow.backends["onnx_fp32"].median_ms_per_token = 3.0
    served, reason = choose_served({"int8": _result(1.0, 1.0)}, slow, Gate())
    assert served == "fp32" and "not faster" in reason


class _FakeGenerator:
    """Replays fixed logits, then prefers the stop token 3: the candidate prefers token 2 where
    torch prefers 1."""

    stop_ids = {3}

    def __init__(self, logits: list[np.ndarray]) -> None:
        self.logits = logits

    def start(self, prompt: list[int]) -> tuple[dict[str, int], np.ndarray]:
        return {"i": 0}, self.logits[0]

    def step(self, state: dict[str, int], token: int) -> np.ndarray:
        state["i"] += 1
        return self.logits[state["i"]] if state["i"] < len(self.logits) else np.array([0.0, 0.0, 0.0, 9.0])


def test_teacher_forced_agreement_counts_disagreements_but_not_ties() -> None:
    ref = [np.array([0.0, 5.0, 1.0, 0.0], np.float32),     # torch: 1, clear
           np.array([0.0, 3.0, 2.99, 0.0], np.float32),    # torch: 1, a tie within 0.05
           np.array([0.0, 1.0, 0.0, 6.0], np.float32)]     # torch: 3 (stop), clear
    run = TorchRun(ids=[1, 1], step_logits=ref)
    candidate = [np.array([0.0, 5.0, 1.0, 0.0]), np.array([0.0, 2.9, 3.1, 0.0]), np.array([0.0, 7.0, 0.0, 6.0])]
    comparison = compare_generator(_FakeGenerator(candidate), [[9]], [run], 8, tie_margin=0.05)
    result = comparison.result
    # Position 2 disagrees but is a tie for torch; position 3 is a real disagreement.
    assert result.ties_skipped == 1 and result.positions_compared == 2
    assert result.teacher_forced_agreement == 0.5 and result.generation_match_rate == 0.0
    # Its own answer: torch's first token, its own 2 where it left torch's path, then on from there.
    assert comparison.answers == [[1, 2, 1]]


def test_a_strict_gate_falls_back_to_fp32_and_everything_serves_it(tiny_models: dict[str, Path], tmp_path) -> None:
    from core.exporter.onnx_export import export_real
    from core.exporter.onnx_predict import predict_onnx

    impossible = Gate(min_teacher_forced=1.01)
    service = tmp_path / "svc"
    report = export_real(tiny_models["causal"], service, max_new_tokens=16, gate=impossible, self_test=False)
    assert report.served_precision == "fp32" and "no quantized candidate passed" in report.served_reason
    assert report.gate.min_teacher_forced == 1.01
    assert all(not c.passed for p, c in report.candidates.items() if p != "fp32")
    # Failed candidates are not shipped (int8's quantized.onnx always is); the runtime serves fp32.
    assert set(report.graphs) == {"fp32", "int8"}
    assert not (service / "onnx" / "quant" / "int8_block.onnx").exists()
    meta = json.loads((service / "onnx" / "model.onnx.meta.json").read_text())
    assert meta["runtime"]["served_precision"] == "fp32"
    assert predict_onnx(service, QUESTIONS[0]) == predict_onnx(service, QUESTIONS[0], precision="fp32")


def test_a_lenient_gate_serves_the_fastest_candidate(exported: dict[str, Any]) -> None:
    service, report = exported["causal"]
    served = report.served_precision
    table = report.candidates
    assert table[served].served is True
    if served != "fp32":
        assert table[served].passed and table[served].ms_per_token < table["fp32"].ms_per_token
        assert (service / report.graphs[served]["decoder"]).is_file()
    for precision, row in table.items():
        assert row.size_bytes > 0
        if not row.checked:  # a faster candidate passed first: this one was not needed
            assert "is faster and answers like the trained model" in row.note
            assert row.kept == (precision == "int8")  # int8's quantized.onnx always ships
            continue
        assert row.ms_per_token > 0
        if precision != "fp32":
            assert 0.0 <= row.teacher_forced_agreement <= 1.0


def test_one_answer_length_everywhere(tiny_models: dict[str, Path], exported: dict[str, Any]) -> None:
    from core.exporter.onnx_predict import load_generator
    from core.models.prompting import DEFAULT_MAX_NEW_TOKENS, load_prompt_format

    service, _ = exported["causal"]
    fmt = load_prompt_format(tiny_models["causal"] / "model")
    assert fmt.max_new_tokens == DEFAULT_MAX_NEW_TOKENS == load_generator(service).max_new_tokens == 128


@pytest.mark.parametrize("precision", ["int8_block", "int4_block"])
def test_blockwise_candidates_build_checked_graphs(tiny_models: dict[str, Path], tmp_path, precision: str) -> None:
    import onnx

    from core.exporter.candidates import CANDIDATES
    from core.exporter.onnx_export import _load_torch_model, resolve_trained_model
    from core.exporter.onnx_graphs import export_graphs

    model, _, arch = _load_torch_model(resolve_trained_model(tiny_models["causal"]))
    exported = export_graphs(model, arch, tmp_path / "onnx")
    candidate = next(c for c in CANDIDATES if c.precision == precision)
    info = candidate.build(tmp_path / exported.files["decoder"], tmp_path / candidate.file)
    graph = onnx.load(str(tmp_path / candidate.file))
    assert any(node.op_type == "MatMulNBits" for node in graph.graph.node)
    assert info.bits == (8 if precision == "int8_block" else 4) and info.accuracy_level == 4
