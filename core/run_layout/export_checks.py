"""What the export checked of the models it built (sections of ``export_report.json``).

Parity with the trained model and latency, per precision and per backend (those entries are
keys of their section itself on disk, gathered under a field when read); the exported service's
self-test; the gate a quantized precision had to pass to be served.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from core.run_layout.results import _Result


class ParityResult(_Result):
    """One precision's agreement with the trained torch model (``parity`` → precision)."""

    n_compared: int | None = None
    max_abs_logit_diff: float | None = None
    generation_match_rate: float | None = None
    mean_token_agreement: float | None = None
    teacher_forced_agreement: float | None = None
    positions_compared: int | None = None
    ties_skipped: int | None = None
    stopped_early: bool = False
    checked: bool = True
    passed: bool | None = None
    note: str | None = None  # why it was not checked


class ParityReport(_Result):
    """``export_report.json`` → ``parity``: the inputs compared, then one :class:`ParityResult`
    per precision (keys of the section itself on disk), then where the time went."""

    n_inputs: int | None = None
    inputs_source: str | None = None
    max_new_tokens: int | None = None
    tokenizer_match: bool | None = None
    results: dict[str, ParityResult] = Field(default_factory=dict)  # precision -> result (flat on disk)
    seconds: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        return _gather_entries(cls, data, {"results": lambda key, value: isinstance(value, dict)})

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _flatten_entries(handler(self), ("results",))


class LatencyResult(_Result):
    median_ms_per_token: float | None = None
    median_prefill_ms: float | None = None
    n_tokens_timed: int | None = None


class LatencyReport(_Result):
    """``export_report.json`` → ``latency``: one :class:`LatencyResult` per backend (``torch``,
    ``onnx_<precision>``) and the speed-ups ``speedup_<precision>_vs_torch``, both keys of the
    section itself on disk."""

    unit: str | None = None
    max_new_tokens: int | None = None
    torch_threads: int | None = None
    backends: dict[str, LatencyResult] = Field(default_factory=dict)  # flat on disk
    speedups: dict[str, float] = Field(default_factory=dict)  # "speedup_<precision>_vs_torch" -> ratio, flat on disk

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        return _gather_entries(cls, data, {
            "backends": lambda key, value: isinstance(value, dict),
            "speedups": lambda key, value: key.startswith("speedup_") and isinstance(value, int | float),
        })

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _flatten_entries(handler(self), ("backends", "speedups"))

    def speedup(self, precision: str) -> float | None:
        return self.speedups.get(f"speedup_{precision}_vs_torch")


def _gather_entries(model: type[BaseModel], data: Any, groups: dict[str, Callable[[str, Any], bool]]) -> Any:
    """A section read from disk, whose entries (per precision, per backend) are its own keys:
    those entries gathered under the model's ``groups`` fields (the first group whose test fits)."""
    if not isinstance(data, dict):
        return data
    if any(name in data for name in groups):  # built in Python: every group set, so written
        return {**{name: {} for name in groups}, **data}
    gathered: dict[str, Any] = {name: {} for name in groups}
    for key, value in data.items():
        group = None if key in model.model_fields else next(
            (name for name, fits in groups.items() if fits(key, value)), None)
        if group is None:
            gathered[key] = value
        else:
            gathered[group][key] = value
    return gathered


def _flatten_entries(data: dict[str, Any], groups: tuple[str, ...]) -> dict[str, Any]:
    """The section as written: each group's entries in its place, as keys of the section."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in groups:
            flat.update(value)
        else:
            flat[key] = value
    return flat


class SelfTest(_Result):
    """The exported service answering the parity inputs over HTTP (``serve.self_test``)."""

    passed: bool | None = None
    skipped: bool = False
    n_checked: int | None = None
    n_matched: int | None = None
    precision: str | None = None
    auth: bool | None = None  # asked with the shell's API key
    startup_s: float | None = None
    latency_ms_median: float | None = None
    bad_request_status: dict[str, int] = Field(default_factory=dict)
    healthy_after: bool | None = None
    mismatches: list[dict[str, str]] = Field(default_factory=list)
    error: str | None = None
    seconds: float | None = None


class ExportGate(_Result):
    """What a quantized precision had to keep of the trained model to be served
    (``core.exporter.candidates.Gate``)."""

    min_teacher_forced: float | None = None
    min_greedy_match: float | None = None
    tie_margin: float | None = None
