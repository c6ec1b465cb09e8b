"""What lies beside an ONNX graph file: its ``<graph>.meta.json``, and whether it is a graph at all.

The ONNX export (:mod:`core.exporter.onnx_export`, which re-exports both helpers: TinyForgeAI's
API, kept for its users) and the quantizer (:mod:`core.exporter.quantize`) both read these; they
live here, under both, so that neither imports the other. Light: no onnx, no torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.exporter.errors import ExportError
from core.jsonio import read_json

__all__ = ["get_onnx_metadata", "is_placeholder_graph"]


def get_onnx_metadata(onnx_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``<graph>.meta.json`` written beside an ONNX file, or None when there is none."""
    meta_path = Path(onnx_path).expanduser().with_name(Path(onnx_path).name + ".meta.json")
    if not meta_path.is_file():
        return None
    try:
        data = read_json(meta_path)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{meta_path} is not readable JSON: {exc}") from exc
    return data if isinstance(data, dict) else None


def is_placeholder_graph(onnx_path: str | os.PathLike[str]) -> bool:
    """True for a dry run's placeholder (a ``#`` comment text or a JSON document), not a graph.

    A serialised ONNX model is a protobuf whose first byte is a field tag, never ``#`` or ``{``.
    """
    with open(onnx_path, "rb") as handle:
        return handle.read(1) in (b"#", b"{")
