"""What lies beside an exported graph: ``<graph>.meta.json`` (:class:`GraphMeta`), a quantized
graph's ``quantized.onnx.meta.json`` (:class:`QuantizedGraphMeta`, also a dry run's placeholder
``quantized.onnx``) and a dry run's ``model_stub.json`` (:class:`ModelStub`).

TinyForgeAI's APIs hand these out as dicts (``get_onnx_metadata``, ``get_quantized_metadata``,
``run_training``'s dry run): they are the models' :meth:`~core.run_layout.results._Result.to_json`.
The service template reads ``model.onnx.meta.json`` as plain JSON, so each writer sets exactly the
keys it always wrote and the models' field order is the files' key order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Self

from pydantic import ModelWrapValidatorHandler, PrivateAttr, model_validator

from core.run_layout.export_files import Quantization
from core.run_layout.results import _read, _Result


class _InKeyOrder(_Result):
    """A file TinyForgeAI's APIs hand out as a dict: it keeps the key order it was built or read
    with (a file read and written again, or handed out, is the same text); fields set later
    follow, in the model's order."""

    _keys: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _keep_key_order(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        result = handler(data)
        if isinstance(data, dict):
            result._keys = tuple(data)
        return result

    def to_json(self) -> dict[str, Any]:
        """The fields set, the keys it was built or read with first, in their order."""
        data = super().to_json()
        first = {key: data.pop(key) for key in self._keys if key in data}
        return {**first, **data}


class ModelStub(_InKeyOrder):
    """``model_stub.json``: a dry run's placeholder model (TinyForgeAI's artifact), with the LoRA
    marks ``core.training.peft_adapter.apply_lora`` adds."""

    model_type: str | None = None
    n_records: int | None = None
    created_time: str | None = None
    notes: str | None = None
    lora_applied: bool | None = None
    lora_config: dict[str, Any] | None = None
    lora_timestamp: str | None = None


class _SourceGraphMeta(_InKeyOrder):
    """What every graph's metadata starts with: where the graph came from and what it takes."""

    exported_from: str | None = None
    export_time: str | None = None
    version: str | None = None  # the export format's version; "0.1-stub" for a placeholder
    exporter: str | None = None
    opset: int | None = None
    graphs: dict[str, dict[str, Any]] | None = None  # role -> path, inputs, outputs
    inputs: list[str] | None = None  # the decoder's
    outputs: list[str] | None = None
    source_model: dict[str, Any] | None = None  # a placeholder's: the stub (or part of it)
    layout: dict[str, Any] | None = None  # export_to_onnx: the graphs' runtime layout
    sizes: dict[str, int | float | None] | None = None  # a service's: "<precision>_bytes", ratios


class GraphMeta(_SourceGraphMeta):
    """``onnx/model.onnx.meta.json``: a real export's graphs (a service's also their sizes, how each
    candidate was quantized and the runtime layout the service template reads), or a placeholder's."""

    # TinyForgeAI's key: how quantized.onnx (the int8 decoder graph) was made.
    quantization: Quantization | None = None
    quantization_candidates: dict[str, dict[str, Quantization]] | None = None  # precision -> role -> how
    runtime: dict[str, Any] | None = None


class QuantizedGraphMeta(_SourceGraphMeta):
    """``quantized.onnx.meta.json`` (``quantize_onnx``): the source graph's metadata, then that it
    was quantized, how and when; a dry run's placeholder ``quantized.onnx`` holds the same fields
    (the source's first three and the quantizing).

    ``quantize_onnx`` builds it from the source's metadata followed by what it adds, so a
    service graph's ``quantization`` stays in its place, unknown keys too, as TinyForgeAI wrote it.
    """

    quantization_candidates: dict[str, dict[str, Quantization]] | None = None  # carried from a service graph
    runtime: dict[str, Any] | None = None
    quantized: bool | None = None
    mode: str | None = None
    quantize_time: str | None = None
    source_onnx: str | None = None
    quantization: Quantization | None = None  # a real graph's: how it was quantized


# --------------------------------------------------------------------------- readers


def read_model_stub(path: str | os.PathLike[str]) -> ModelStub:
    """A dry run's ``model_stub.json``."""
    return _read(ModelStub, Path(path))

