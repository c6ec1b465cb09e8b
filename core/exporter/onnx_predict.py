"""Predict with an exported service folder: ONNX Runtime + ``tokenizers`` only (no torch).

The generation code is the service template's ``runtime.py`` (the same file every exported
service runs), loaded here by path so there is one implementation. Generators are cached per
(folder, precision) so repeated calls do not reload the graphs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from core.exporter.errors import ExportError

logger = logging.getLogger(__name__)

__all__ = ["clear_cache", "load_generator", "load_runtime_module", "predict_onnx", "served_precision"]

RUNTIME_FILE = Path(__file__).with_name("service_template") / "runtime.py"
_MODULE_NAME = "tinyforge_service_runtime"
_lock = threading.Lock()
_generators: dict[tuple[str, str, float], Any] = {}


def load_runtime_module() -> ModuleType:
    """Import ``service_template/runtime.py`` once, under a private module name."""
    module = sys.modules.get(_MODULE_NAME)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, RUNTIME_FILE)
    if spec is None or spec.loader is None:  # pragma: no cover - the file ships with the package
        raise ImportError(f"cannot load {RUNTIME_FILE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


def served_precision(service_dir: str | os.PathLike[str]) -> str:
    """The precision that answers when none is asked for (predict, the service, the playground):
    ``$TINYFORGE_PRECISION``, else the export's ``served_precision`` when its graph files are
    there, else fp32. :class:`ExportError` if ``service_dir`` is not an export."""
    runtime = load_runtime_module()
    try:
        return str(runtime.default_precision(Path(service_dir).expanduser().resolve()))
    except runtime.RuntimeFormatError as exc:
        raise ExportError(str(exc)) from exc


def load_generator(service_dir: str | os.PathLike[str], precision: str | None = None) -> Any:
    """A cached ``OnnxGenerator`` for ``service_dir`` (``precision`` None: the export's served
    precision); :class:`ExportError` if it is not an export."""
    from core.run_layout import ONNX_DIR, ONNX_META_FILE

    root = Path(service_dir).expanduser().resolve()
    meta = root / ONNX_DIR / ONNX_META_FILE
    if not meta.is_file():
        raise ExportError(f"{root} is not an exported service folder (no {ONNX_DIR}/{ONNX_META_FILE})")
    if precision is None:
        precision = served_precision(root)
    key = (str(root), precision, meta.stat().st_mtime)
    with _lock:
        generator = _generators.get(key)
        if generator is None:
            runtime = load_runtime_module()
            try:
                generator = runtime.OnnxGenerator(root, precision=precision)
            except runtime.RuntimeFormatError as exc:
                raise ExportError(str(exc)) from exc
            _generators[key] = generator
    return generator


def clear_cache() -> None:
    """Forget loaded generators (frees their ONNX Runtime sessions)."""
    with _lock:
        _generators.clear()


def predict_onnx(
    service_dir: str | os.PathLike[str], text: str, precision: str | None = None,
    max_new_tokens: int | None = None,
) -> str:
    """The greedy answer of the exported model to ``text``.

    ``precision`` None serves what the service serves (``served_precision``: the fastest graph
    that passed the parity gate, else fp32); ``fp32`` equals torch ``core.training.predict``.
    A dry-run service (placeholders, no graphs) raises :class:`ExportError`.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExportError("the input text is empty")
    from core.run_layout import MODEL_METADATA_FILE

    root = Path(service_dir).expanduser()
    metadata = root / MODEL_METADATA_FILE
    if metadata.is_file() and _is_stub(metadata):
        raise ExportError(f"{root} is a dry-run service: it holds placeholders, not a model to run")
    return load_generator(root, precision).generate(text, max_new_tokens=max_new_tokens)


def _is_stub(metadata_path: Path) -> bool:
    import json

    try:
        data = json.loads(metadata_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and bool(data.get("model_stub"))
