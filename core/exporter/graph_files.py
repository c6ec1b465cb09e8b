"""What lies beside an ONNX graph file: its ``<graph>.meta.json``, and whether it is a graph at all.

The ONNX export (:mod:`core.exporter.onnx_export`, which re-exports both helpers: TinyForgeAI's
API, kept for its users) and the quantizer (:mod:`core.exporter.quantize`) both read these; they
live here, under both, so that neither imports the other. Light: no onnx, no torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.exporter.errors import ExportError
from core.jsonio import read_json

if TYPE_CHECKING:
    from core.run_layout.results import _Result

__all__ = ["get_onnx_metadata", "is_placeholder_graph", "read_beside_graph"]

M = TypeVar("M", bound="_Result")


def get_onnx_metadata(onnx_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``<graph>.meta.json`` written beside an ONNX file (:class:`GraphMeta`, as a dict), or
    None when there is none."""
    from core.run_layout import GraphMeta

    meta = read_beside_graph(onnx_path, GraphMeta)
    return meta.to_json() if meta is not None else None


def read_beside_graph(onnx_path: str | os.PathLike[str], model: type[M]) -> M | None:
    """The ``<graph>.meta.json`` beside an ONNX file as ``model``; None when there is none or it
    holds no JSON object; :class:`ExportError` when it is not readable JSON or not a ``model``."""
    from core.run_layout import RunFileError, parse

    meta_path = Path(onnx_path).expanduser().with_name(Path(onnx_path).name + ".meta.json")
    if not meta_path.is_file():
        return None
    try:
        data = read_json(meta_path)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{meta_path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        return None
    try:
        return parse(model, data, meta_path)
    except RunFileError as exc:
        raise ExportError(str(exc)) from exc


def is_placeholder_graph(onnx_path: str | os.PathLike[str]) -> bool:
    """True for a dry run's placeholder (a ``#`` comment text or a JSON document), not a graph.

    A serialised ONNX model is a protobuf whose first byte is a field tag, never ``#`` or ``{``.
    """
    with open(onnx_path, "rb") as handle:
        return handle.read(1) in (b"#", b"{")
