"""A service folder's files: ``export_report.json`` (:class:`ExportReport`) and
``model_metadata.json`` (:class:`ModelMetadata`).

The report's candidates (one per precision, with how each graph was quantized) are here; its
checks are in :mod:`core.run_layout.export_checks`, its GGUF files in :mod:`core.run_layout.gguf_files`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from core.run_layout.export_checks import (
    ExportGate,
    LatencyReport,
    LatencyResult,
    ParityReport,
    ParityResult,
    SelfTest,
)
from core.run_layout.gguf_files import GgufReport
from core.run_layout.names import EXPORT_REPORT_FILE, MODEL_METADATA_FILE, SERVICE_DIR
from core.run_layout.results import _first_file, _read, _Result


class Quantization(_Result):
    """How one graph was quantized (``core.exporter.quantize``): dynamic int8, block-wise
    weight-only, or float16, with the seconds it took (and, from ``quantize_onnx``, the sizes)."""

    method: str = ""
    weight_type: str | None = None  # dynamic: int8 or uint8
    pre_process: str | None = None
    per_channel: bool | None = None
    op_types: list[str] | None = None
    bits: int | None = None  # block-wise
    block_size: int | None = None
    symmetric: bool | None = None
    accuracy_level: int | None = None
    keep_io_types: bool | None = None  # float16
    seconds: float | None = None
    source_bytes: int | None = None
    quantized_bytes: int | None = None


class Candidate(_Result):
    """One precision the export built and checked (``export_report.json`` → ``candidates``)."""

    description: str = ""
    # Per graph role (``decoder``; seq2seq also ``encoder``): how that graph was quantized.
    quantization: dict[str, Quantization] = Field(default_factory=dict)
    size_bytes: int | None = None
    ms_per_token: float | None = None
    speedup_vs_torch: float | None = None
    teacher_forced_agreement: float | None = None
    generation_match_rate: float | None = None
    passed: bool | None = None
    served: bool = False
    kept: bool = True
    checked: bool = True  # False: a faster candidate passed first, so this one was not checked
    note: str = ""  # why it was not checked, or that its check stopped at a failed verdict


class ExportReport(_Result):
    """``export_report.json``: a real export (graphs, parity, latency, candidates, self-test)
    or a dry run's placeholders (paths and time only)."""

    onnx_path: str | None = None
    quantized_path: str | None = None
    export_time: str | None = None
    model_path: str | None = None
    model_stub: bool | None = None  # absent in a dry run's placeholder report
    architecture: str | None = None
    base_model: str | None = None
    exporter: str | None = None
    opset: int | None = None
    graph_source: str | None = None  # "exported" (traced by this export) or "cache" (a base model's graph)
    graphs: dict[str, dict[str, str]] = Field(default_factory=dict)
    sizes: dict[str, int | float | None] = Field(default_factory=dict)  # "<precision>_bytes", ratios
    parity: ParityReport = Field(default_factory=ParityReport)
    latency: LatencyReport = Field(default_factory=LatencyReport)
    self_test: SelfTest | None = None
    served_precision: str | None = None
    served_reason: str | None = None
    gate: ExportGate | None = None
    candidates: dict[str, Candidate] = Field(default_factory=dict)
    samples: list[dict[str, Any]] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    durations_s: dict[str, float | None] = Field(default_factory=dict)
    gguf: GgufReport | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_served_name(cls, data: Any) -> Any:
        """Older reports also wrote the served precision as ``service_precision`` (some only
        that name): read it as ``served_precision``, the one name this model keeps."""
        if isinstance(data, dict) and "service_precision" in data:
            data = dict(data)
            older = data.pop("service_precision")
            if not data.get("served_precision"):
                data["served_precision"] = older
        return data

    def precisions(self) -> list[str]:
        """Every ONNX precision the report describes, fp32 first: its candidates, and in a report
        written before candidates were recorded, the precisions with graphs, sizes, parity or latency."""
        found = [*self.candidates, *self.graphs]
        found += [key.removesuffix("_bytes") for key in self.sizes if key.endswith("_bytes")]
        found += list(self.parity.results)
        found += [key.removeprefix("onnx_") for key in self.latency.backends if key.startswith("onnx_")]
        return sorted(dict.fromkeys(found), key=lambda precision: precision != "fp32")

    def candidate(self, precision: str) -> Candidate:
        """``candidates[precision]``, or for a report written before candidates were recorded,
        the same figures gathered from ``sizes``, ``latency`` and ``parity``."""
        if precision in self.candidates:
            return self.candidates[precision]
        parity = self.parity_of(precision) or ParityResult()
        latency = self.latency_of(f"onnx_{precision}") or LatencyResult()
        size = self.sizes.get(f"{precision}_bytes")
        return Candidate(
            size_bytes=int(size) if size is not None else None,
            ms_per_token=latency.median_ms_per_token,
            speedup_vs_torch=self.latency.speedup(precision),
            teacher_forced_agreement=parity.teacher_forced_agreement,
            generation_match_rate=parity.generation_match_rate,
            passed=parity.passed,
            served=precision == self.served_precision,
            checked=parity.checked and precision in self.parity.results,
        )

    def parity_of(self, precision: str) -> ParityResult | None:
        return self.parity.results.get(precision)

    def latency_of(self, backend: str) -> LatencyResult | None:
        return self.latency.backends.get(backend)


class ModelMetadata(_Result):
    """``service/model_metadata.json``: which model the service serves."""

    model_path: str | None = None
    created_time: str | None = None
    source: str | None = None
    model_stub: bool | None = None
    architecture: str | None = None
    base_model: str | None = None


# --------------------------------------------------------------------------- readers


def export_report_path(folder: str | os.PathLike[str]) -> Path | None:
    """``export_report.json`` of a run folder (``service/``) or of a service folder, if any."""
    base = Path(folder)
    return _first_file(base / SERVICE_DIR / EXPORT_REPORT_FILE, base / EXPORT_REPORT_FILE)


def read_export_report(folder: str | os.PathLike[str]) -> ExportReport:
    """The export report of a run folder or a service folder."""
    path = export_report_path(folder) or Path(folder) / SERVICE_DIR / EXPORT_REPORT_FILE
    return _read(ExportReport, path)


def read_model_metadata(service_dir: str | os.PathLike[str]) -> ModelMetadata:
    """``model_metadata.json`` of a service folder."""
    return _read(ModelMetadata, Path(service_dir) / MODEL_METADATA_FILE)
