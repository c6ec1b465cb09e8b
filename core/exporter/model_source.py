"""What a model path points at: a dry-run stub or a real trained model (a leaf module).

Both the builder (:mod:`core.exporter.service_build`) and ``export_to_onnx`` in
:mod:`core.exporter.onnx_export` resolve a model path here, so neither imports the other for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.exporter.errors import ExportError, ModelNotFoundError
from core.jsonio import read_json
from core.run_layout import MODEL_DIR, MODEL_MANIFEST_FILE, MODEL_STUB_FILE

__all__ = ["ModelSource", "resolve_model_source"]

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
        if path.name == MODEL_MANIFEST_FILE:
            return ModelSource("hf", path.parent)
        if path.stat().st_size > _MAX_STUB_BYTES:  # a weights file, say: do not read it into memory
            raise ExportError(
                f"{path} is not a model artifact. Expected JSON (a {MODEL_STUB_FILE}) or a training output "
                f"folder; pass the folder that holds {MODEL_MANIFEST_FILE}"
            )
        try:
            data = read_json(path)
        except (OSError, ValueError) as exc:
            raise ExportError(
                f"{path} is not a model artifact. Expected JSON (a {MODEL_STUB_FILE}), but it is not readable "
                f"JSON: {exc}"
            ) from exc
        if not isinstance(data, dict) or "model_type" not in data:
            raise ExportError(f"{path} is not a model artifact: it has no 'model_type'")
        return ModelSource("stub", path)
    for folder in (path, path / MODEL_DIR, path.parent):
        if (folder / MODEL_MANIFEST_FILE).is_file():
            return ModelSource("hf", folder)
        if folder is not path.parent and (folder / MODEL_STUB_FILE).is_file():
            return ModelSource("stub", folder / MODEL_STUB_FILE)
    if (path / "config.json").is_file():
        return ModelSource("hf", path)
    raise ExportError(
        f"{path} is not a model: expected {MODEL_STUB_FILE} (dry run), {MODEL_MANIFEST_FILE} "
        "(a TinyForge training output) or a Hugging Face model folder with config.json"
    )
