"""What a model path points at: a dry-run stub or a real trained model (a leaf module).

Both the builder and the seed's ONNX hook in :mod:`core.exporter.onnx_export` resolve a model
path here, so neither imports the other for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.exporter.errors import ExportError, ModelNotFoundError
from core.jsonio import read_json

__all__ = ["MANIFEST_FILENAME", "STUB_FILENAME", "ModelSource", "resolve_model_source"]

STUB_FILENAME = "model_stub.json"
MANIFEST_FILENAME = "model_manifest.json"
_MAX_STUB_BYTES = 16 << 20  # a model_stub.json is a few hundred bytes


@dataclass(frozen=True)
class ModelSource:
    """What a model path points at: a dry-run stub file or a real trained model folder."""

    kind: Literal["stub", "hf"]
    path: Path  # the stub file, or the folder holding model_manifest.json / config.json


def resolve_model_source(model_path: str | os.PathLike[str]) -> ModelSource:
    """Accept a stub file, a training output folder, its ``model/`` folder or a run folder."""
    path = Path(model_path).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"Model path not found: {path}")
    if path.is_file():
        if path.name == MANIFEST_FILENAME:
            return ModelSource("hf", path.parent)
        if path.stat().st_size > _MAX_STUB_BYTES:  # a weights file, say: do not read it into memory
            raise ExportError(
                f"{path} is not a model artifact. Expected JSON (a model_stub.json) or a training output "
                "folder; pass the folder that holds model_manifest.json"
            )
        try:
            data = read_json(path)
        except (OSError, ValueError) as exc:
            raise ExportError(
                f"{path} is not a model artifact. Expected JSON (a model_stub.json), but it is not readable JSON: {exc}"
            ) from exc
        if not isinstance(data, dict) or "model_type" not in data:
            raise ExportError(f"{path} is not a model artifact: it has no 'model_type'")
        return ModelSource("stub", path)
    for folder in (path, path / "model", path.parent):
        if (folder / MANIFEST_FILENAME).is_file():
            return ModelSource("hf", folder)
        if folder is not path.parent and (folder / STUB_FILENAME).is_file():
            return ModelSource("stub", folder / STUB_FILENAME)
    if (path / "config.json").is_file():
        return ModelSource("hf", path)
    raise ExportError(
        f"{path} is not a model: expected {STUB_FILENAME} (dry run), {MANIFEST_FILENAME} "
        "(a TinyForge training output) or a Hugging Face model folder with config.json"
    )
