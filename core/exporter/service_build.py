"""Building a service folder from a trained model: :func:`build_service` (and :func:`build`).

From a dry-run ``model_stub.json`` it writes placeholders (they say so in their content;
TinyForgeAI's files, kept for its users); from a real trained model it exports real ONNX graphs
via :mod:`core.exporter.onnx_export`, and with ``gguf`` GGUF files for llama.cpp and Ollama.
TinyForgeAI had no GGUF placeholder, so a dry run with ``gguf`` says in one line that GGUF needs
a trained model and writes what it always wrote. The folder is always assembled beside its
target and renamed into place, so a crash or cancel never leaves half a service behind.

TinyForgeAI's module :mod:`core.exporter.builder` re-exports this API (its users import ``build``
and ``get_template_dir`` from there); ``foremforge export`` and the script ``builder.py`` are
:mod:`core.cli.export`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from core.events import (
    CancelToken,
    EventCallback,
    Log,
    Progress,
    StageStarted,
    noop,
)
from core.exporter.errors import ExportError, ModelNotFoundError, OutputExistsError
from core.exporter.model_source import resolve_model_source
from core.exporter.service_folder import (
    SERVICE_TEMPLATE,
    announce_service_folder,
    copy_service_template,
    staged_output_dir,
)
from core.jsonio import utc_now_iso, write_text_atomic
from core.run_layout import (
    EXPORT_REPORT_FILE,
    MODEL_METADATA_FILE,
    ONNX_DIR,
    ONNX_GRAPH_FILE,
    ONNX_META_FILE,
    QUANT_DIR,
    QUANTIZED_FILE,
    ExportReport,
    GraphMeta,
    ModelMetadata,
    ModelStub,
    QuantizedGraphMeta,
    read_model_stub,
    write_result,
)

__all__ = ["build", "build_service", "get_template_dir"]


def get_template_dir() -> Path:
    """The folder of the service template copied into every service folder (TinyForgeAI's API)."""
    return SERVICE_TEMPLATE


def build(
    model_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    overwrite: bool = False,
    export_onnx: bool = False,
    quantize: Literal["int8", "none"] = "int8",
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
    gguf: bool = False,
) -> dict[str, Any]:
    """Build the service folder ``output_dir`` from ``model_path`` (with ``gguf``, also its
    ``gguf/`` folder for llama.cpp and Ollama; a trained Llama-family model only).

    TinyForgeAI's API: returns ``export_report.json``'s content when ONNX is exported, else
    ``model_metadata.json``'s, as a dict (:func:`build_service` returns the typed report). Raises
    :class:`ExportError` for user mistakes; a missing model is also a ``FileNotFoundError`` and
    an existing ``output_dir`` without ``overwrite`` a ``FileExistsError``.
    """
    return build_service(model_path, output_dir, overwrite, export_onnx, quantize, on_event, cancel, gguf).to_json()


def build_service(
    model_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    overwrite: bool = False,
    export_onnx: bool = False,
    quantize: Literal["int8", "none"] = "int8",
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
    gguf: bool = False,
) -> ExportReport | ModelMetadata:
    """:func:`build`, returning the report typed: the :class:`ExportReport` when ONNX is
    exported (real, or a dry run's placeholders), else the :class:`ModelMetadata`."""
    emit = on_event or noop
    if quantize not in ("int8", "none"):
        raise ExportError(f"Unknown quantization {quantize!r}: use 'int8' or 'none'")
    if not Path(model_path).expanduser().exists():
        raise ModelNotFoundError(f"Model path not found: {Path(model_path).expanduser()}")
    # Refused before the model's content is read: the folder is the problem, whatever the model.
    target = Path(output_dir).expanduser().absolute()
    if target.exists() and not overwrite:
        raise OutputExistsError(f"Output folder already exists: {target} (use --overwrite to replace it)")
    source = resolve_model_source(model_path)
    if source.kind == "hf":
        from core.exporter.onnx_export import export_real

        return export_real(
            source.path, output_dir, quantize=quantize, overwrite=overwrite, on_event=emit, cancel=cancel, gguf=gguf
        )
    if gguf:
        emit(Log("GGUF export needs a trained model; this is a dry-run stub, so no gguf/ folder is written",
                 "warning"))
    return _build_stub(source.path, target, overwrite, export_onnx, quantize, emit, cancel)


def _build_stub(
    stub_path: Path,
    target: Path,
    overwrite: bool,
    export_onnx: bool,
    quantize: str,
    emit: EventCallback,
    cancel: CancelToken | None,
) -> ExportReport | ModelMetadata:
    stub = read_model_stub(stub_path)
    model_ref = str(stub_path.absolute())
    steps = 4 if export_onnx else 2
    emit(StageStarted("export", f"building the service for {model_ref}"))
    with staged_output_dir(target, overwrite) as staging:
        copy_service_template(staging)
        _step(emit, cancel, 1, steps, "service files")
        metadata = ModelMetadata(model_path=model_ref, created_time=utc_now_iso(), source="tinyforge-exporter",
                                 model_stub=True)
        write_result(staging / MODEL_METADATA_FILE, metadata)
        _step(emit, cancel, 2, steps, MODEL_METADATA_FILE)
        result: ExportReport | ModelMetadata = metadata
        if export_onnx:
            result = _write_onnx_placeholders(staging, target, stub, model_ref, quantize, emit, cancel, steps)
    return announce_service_folder(target, result, emit, "dry-run placeholders")


def _write_onnx_placeholders(
    staging: Path,
    target: Path,
    stub: ModelStub,
    model_ref: str,
    quantize: str,
    emit: EventCallback,
    cancel: CancelToken | None,
    steps: int,
) -> ExportReport:
    """A dry run's ONNX, metadata, quantized and report placeholders (text, not graphs)."""
    export_time = utc_now_iso()
    write_text_atomic(
        staging / ONNX_DIR / ONNX_GRAPH_FILE,
        "# TinyForgeAI ONNX placeholder\n"
        f"# Exported: {export_time}\n"
        f"# Source: {model_ref}\n"
        "# This is a stub file for testing purposes.\n",
    )
    meta = GraphMeta(
        exported_from=model_ref,
        export_time=export_time,
        version="0.1-stub",
        source_model={"model_type": stub.model_type, "n_records": stub.n_records},
    )
    write_result(staging / ONNX_DIR / ONNX_META_FILE, meta)
    _step(emit, cancel, 3, steps, "onnx placeholder")
    quantized_path = None
    if quantize == "int8":
        quantized = QuantizedGraphMeta(
            exported_from=model_ref,
            export_time=export_time,
            version="0.1-stub",
            quantized=True,
            mode="int8",
            quantize_time=utc_now_iso(),
        )
        write_result(staging / ONNX_DIR / QUANT_DIR / QUANTIZED_FILE, quantized)
        quantized_path = str(target / ONNX_DIR / QUANT_DIR / QUANTIZED_FILE)
    report = ExportReport(
        onnx_path=str(target / ONNX_DIR / ONNX_GRAPH_FILE),
        quantized_path=quantized_path,
        export_time=export_time,
        model_path=model_ref,
    )
    write_result(staging / EXPORT_REPORT_FILE, report)
    _step(emit, cancel, 4, steps, EXPORT_REPORT_FILE)
    return report


def _step(emit: EventCallback, cancel: CancelToken | None, step: int, total: int, message: str) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()
    emit(Progress("export", step, total, message))
