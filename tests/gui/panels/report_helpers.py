"""Export reports as the exporter writes them, for tests of what the window shows (no export runs).

The figures are those of a real tiny-seq2seq export; ``served`` picks which candidate passed the
gate and is served (the faster ones before it failed, the slower ones were not checked).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The candidates in the order the exporter checks them (fastest first) and their figures.
CHECK_ORDER = ("int4_block", "int8", "int8_block")
DESCRIPTIONS = {
    "fp32": "fp32 (the exact export)",
    "int8": "dynamic int8: per-tensor int8 weights and activations (MatMul, Gather)",
    "int8_block": "weight-only int8 in blocks of 32, int8 compute (MatMulNBits, accuracy level 4)",
    "int4_block": "weight-only int4 in blocks of 32, int8 compute (MatMulNBits, accuracy level 4)",
}
SIZES = {"fp32": 1_039_510, "int8": 519_068, "int8_block": 532_299, "int4_block": 442_043}
MS = {"fp32": 0.299, "int8": 0.298, "int8_block": 0.294, "int4_block": 0.290}


def export_report(served: str = "int8_block") -> dict[str, Any]:
    """A real export's report in which ``served`` is served: the candidates checked before it
    failed the gate, those after it were not checked (``checked`` false and a ``note``)."""
    parity: dict[str, Any] = {
        "n_inputs": 3, "inputs_source": "3 training records of sample_qna.jsonl", "tokenizer_match": True,
        "fp32": {"n_compared": 3, "max_abs_logit_diff": 7.6e-06, "generation_match_rate": 1.0,
                 "mean_token_agreement": 1.0, "teacher_forced_agreement": 1.0, "stopped_early": False,
                 "checked": True, "passed": True},
        "seconds": {"torch latency": 0.078},
    }
    latency: dict[str, Any] = {"unit": "milliseconds per generated token (median over decode steps)",
                               "torch": {"median_ms_per_token": 1.891, "median_prefill_ms": 8.374},
                               "onnx_fp32": {"median_ms_per_token": MS["fp32"], "median_prefill_ms": 7.144}}
    order = CHECK_ORDER[: CHECK_ORDER.index(served) + 1] if served != "fp32" else CHECK_ORDER
    for precision in CHECK_ORDER:
        if precision in order:
            passed = precision == served
            parity[precision] = {"n_compared": 3 if passed else 1, "max_abs_logit_diff": 0.58 if passed else 2.3,
                                 "generation_match_rate": 1.0 if passed else 0.0,
                                 "teacher_forced_agreement": 0.995 if passed else 0.0417,
                                 "stopped_early": not passed, "checked": True, "passed": passed}
            latency[f"onnx_{precision}"] = {"median_ms_per_token": MS[precision], "median_prefill_ms": 0.8}
            latency[f"speedup_{precision}_vs_torch"] = round(1.891 / MS[precision], 3)
        else:
            parity[precision] = {"checked": False, "passed": None,
                                 "note": f"not checked: {served} is faster and answers like the trained model"}
    candidates = {}
    for precision in ("fp32", "int8", "int8_block", "int4_block"):
        result = parity[precision]
        checked = result["checked"]
        candidates[precision] = {
            "description": DESCRIPTIONS[precision],
            "quantization": {} if precision == "fp32" else {"decoder": {"seconds": 0.03}, "encoder": {"seconds": 0.02}},
            "size_bytes": SIZES[precision],
            "ms_per_token": MS[precision] if checked else None,
            "speedup_vs_torch": latency.get(f"speedup_{precision}_vs_torch"),
            "teacher_forced_agreement": result.get("teacher_forced_agreement"),
            "generation_match_rate": result.get("generation_match_rate"),
            "passed": result.get("passed"),
            "served": precision == served,
            "kept": precision in ("fp32", "int8", served),
            "checked": checked,
            "note": result.get("note") or ("stopped after 1 inputs: it cannot pass the gate"
                                           if result.get("stopped_early") else ""),
        }
    sizes: dict[str, Any] = {"fp32_bytes": SIZES["fp32"], "torch_parameters": 181_504}
    for precision in CHECK_ORDER:
        sizes[f"{precision}_bytes"] = SIZES[precision]
        sizes[f"{precision}_to_fp32_ratio"] = round(SIZES[precision] / SIZES["fp32"], 4)
    return {
        "onnx_path": "/runs/r/service/onnx/model.onnx",
        "quantized_path": "/runs/r/service/onnx/quant/quantized.onnx",
        "export_time": "2025-01-01T12:00:00Z",
        "model_path": "/runs/r",
        "model_stub": False,
        "architecture": "seq2seq",
        "base_model": "tiny-seq2seq",
        "exporter": "torchscript",
        "opset": 17,
        "graph_source": "exported",
        "sizes": sizes,
        "parity": parity,
        "latency": latency,
        "self_test": {"passed": True, "n_checked": 3, "n_matched": 3, "precision": served, "latency_ms_median": 56.0},
        "served_precision": served,
        "served_reason": (f"{served} is the fastest precision that answers like the trained model"
                          if served != "fp32" else "no quantized candidate passed the gate"),
        "gate": {"min_teacher_forced": 0.98, "min_generation_match": 0.9},
        "candidates": candidates,
        "warnings": [],
    }


def older_report() -> dict[str, Any]:
    """A report of an export before candidates: fp32 and int8 only, the served precision under
    its older name ``service_precision`` alone."""
    return {
        "onnx_path": "/runs/old/service/onnx/model.onnx",
        "quantized_path": "/runs/old/service/onnx/quant/quantized.onnx",
        "export_time": "2024-06-01T12:00:00Z",
        "model_stub": False,
        "architecture": "causal",
        "base_model": "tiny-causal",
        "sizes": {"fp32_bytes": 2_000_000, "int8_bytes": 600_000, "int8_to_fp32_ratio": 0.3,
                  "torch_parameters": 500_000},
        "parity": {"fp32": {"passed": True, "n_compared": 3, "max_abs_logit_diff": 1e-05,
                            "generation_match_rate": 1.0, "mean_token_agreement": 1.0},
                   "int8": {"passed": True, "n_compared": 3, "max_abs_logit_diff": 0.4,
                            "generation_match_rate": 1.0, "mean_token_agreement": 0.97}},
        "latency": {"torch": {"median_ms_per_token": 3.0}, "onnx_fp32": {"median_ms_per_token": 1.0},
                    "onnx_int8": {"median_ms_per_token": 0.6}},
        "service_precision": "int8",
    }


def write_run(root: Path, report: dict[str, Any]) -> Path:
    """A run folder whose ``service/export_report.json`` is ``report``."""
    service = root / "service"
    service.mkdir(parents=True)
    (service / "export_report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return root
