"""Quantized candidates of an exported graph, and the gate that decides which one is served.

Dynamic int8 (per-tensor MatMul/Gather weights, int8 activations) is small and fast but can
change a fine-tuned model's answers. ONNX Runtime's block-wise weight-only quantizer
(``MatMulNBits``: one scale per 32 weights) keeps far more of the model; with accuracy level 4
its matmuls still run on int8 kernels. Every candidate is checked against the trained model
(:mod:`core.exporter.parity`); the service serves the fastest one that passes the gate, else
fp32. The thresholds are parameters so a test (or a cautious user) can force the fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.run_layout import QUANTIZED_FILE, LatencyReport, ParityResult, Quantization

logger = logging.getLogger(__name__)

__all__ = ["CANDIDATES", "Candidate", "Gate", "choose_served"]


@dataclass(frozen=True)
class Gate:
    """What a quantized graph must keep of the trained model's behaviour to be served."""

    min_teacher_forced: float = 0.98  # top-1 agreement, each position given the fp32 prefix
    min_greedy_match: float = 0.9  # share of inputs whose whole greedy answer is identical
    tie_margin: float = 0.05  # fp32 top-2 logits closer than this: a tie, not a disagreement

    def passes(self, result: ParityResult) -> bool:
        return ((result.teacher_forced_agreement or 0.0) >= self.min_teacher_forced
                and (result.generation_match_rate or 0.0) >= self.min_greedy_match)


@dataclass(frozen=True)
class Candidate:
    """One way to quantize: ``build(source, destination) -> info``; ``file`` is the decoder's name."""

    precision: str
    description: str
    file: str
    build: Callable[[Path, Path], Quantization]


def _dynamic_int8(source: Path, destination: Path) -> Quantization:
    from core.exporter.quantize import quantize_int8

    return quantize_int8(source, destination)


def _blockwise(bits: int) -> Callable[[Path, Path], Quantization]:
    def build(source: Path, destination: Path) -> Quantization:
        from core.exporter.quantize import quantize_blockwise

        return quantize_blockwise(source, destination, bits=bits, block_size=32, accuracy_level=4)

    return build


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("int8", "dynamic int8: per-tensor int8 weights and activations (MatMul, Gather)",
              QUANTIZED_FILE, _dynamic_int8),
    Candidate("int8_block", "weight-only int8 in blocks of 32, int8 compute (MatMulNBits, accuracy level 4)",
              "int8_block.onnx", _blockwise(8)),
    Candidate("int4_block", "weight-only int4 in blocks of 32, int8 compute (MatMulNBits, accuracy level 4)",
              "int4_block.onnx", _blockwise(4)),
)


def choose_served(candidates: dict[str, ParityResult], latency: LatencyReport, gate: Gate) -> tuple[str, str]:
    """``(precision, reason)``: the fastest candidate that passes ``gate``, else fp32.

    ``candidates`` maps a precision to its parity result; ``latency`` holds the
    ``onnx_<precision>`` figures of fp32 and each candidate.
    """
    def ms(precision: str) -> float:
        figures = latency.backends.get(f"onnx_{precision}")
        value = figures.median_ms_per_token if figures is not None else None
        return float(value) if value else float("inf")

    passing = [p for p, result in candidates.items() if result.passed]
    faster = [p for p in passing if ms(p) < ms("fp32")]
    if faster:
        best = min(faster, key=ms)
        result = candidates[best]
        return best, (f"{best} is the fastest precision that answers like the trained model "
                      f"({ms(best):.3g} vs fp32 {ms('fp32'):.3g} ms/token; teacher-forced agreement "
                      f"{result.teacher_forced_agreement or 0.0:.3f}, greedy match {result.generation_match_rate or 0.0:.2f})")
    if passing:
        return "fp32", f"the passing candidates ({', '.join(passing)}) are not faster than fp32"
    if not candidates:
        return "fp32", "no quantized candidates were built"
    worst = ", ".join(f"{p} {r.teacher_forced_agreement or 0:.3f}/{r.generation_match_rate or 0:.2f}"
                      for p, r in candidates.items())
    return "fp32", (f"no quantized candidate passed the gate (teacher-forced agreement >= {gate.min_teacher_forced}, "
                    f"greedy match >= {gate.min_greedy_match}; got {worst})")
