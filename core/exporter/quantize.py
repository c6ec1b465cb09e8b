"""int8 dynamic quantization of an exported graph with ONNX Runtime's own tools.

Constant ``Transpose`` nodes are folded first (what ONNX Runtime's ``quant_pre_process`` would
do for these graphs, see :func:`fold_constant_transposes`), then ``quantize_dynamic`` with int8
weights. MatMul weights are quantized per tensor; embedding ``Gather`` tables too, which is
most of a small LM's size.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.run_layout import Quantization

logger = logging.getLogger(__name__)

__all__ = ["QUANTIZE_MODES", "get_quantized_metadata", "quantize_blockwise", "quantize_int8", "quantize_onnx"]

DEFAULT_OP_TYPES = ("MatMul", "Gather")
_LEAN_FROM_BYTES = 1 << 20  # initializers above this lose their bytes for shape inference (shape constants keep theirs)


def quantize_int8(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    per_channel: bool = False,
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES,
    weight_type: str = "int8",
) -> Quantization:
    """Write a dynamically quantized copy of ``source`` to ``destination`` (``weight_type``
    int8, or uint8 for ``quantize_onnx(mode="uint8")``).

    Returns what was done (pre-processing applied or skipped and why, op types, seconds).
    The pre-processed intermediate lives in a temp folder beside ``destination`` and is removed.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, destination = Path(source), Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    from core.exporter.onnx_graphs import graph_bytes

    require_space(destination.parent, 2 * graph_bytes(source), f"quantizing {source.name}")
    started = time.perf_counter()
    info = Quantization(method="onnxruntime.quantization.quantize_dynamic", weight_type=weight_type)
    work = Path(tempfile.mkdtemp(prefix=".quant-", dir=destination.parent))
    try:
        prepared = work / "prepared.onnx"
        try:
            folded = fold_constant_transposes(source, prepared)
            info.pre_process = f"folded {folded} constant Transpose node(s)"
        except Exception as exc:  # an exotic graph: quantize it as it is
            logger.warning("could not prepare %s for quantization (%s); quantizing it as it is", source, exc)
            info.pre_process = f"skipped: {type(exc).__name__}: {exc}"[:300]
            prepared = source
        with _no_pre_process_advice(), _lean_shape_inference():
            quantize_dynamic(
                str(prepared),
                str(destination),
                weight_type=QuantType.QUInt8 if weight_type == "uint8" else QuantType.QInt8,
                per_channel=per_channel,
                op_types_to_quantize=list(op_types),
                extra_options={"MatMulConstBOnly": True},
            )
        onnx.checker.check_model(str(destination))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info.per_channel = per_channel
    info.op_types = list(op_types)
    info.seconds = round(time.perf_counter() - started, 3)
    return info


class _PreProcessAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _no_pre_process_advice() -> Iterator[None]:
    """quantize_dynamic advises pre-processing on the root logger (to the user's terminal);
    :func:`fold_constant_transposes` is that pre-processing, for these graphs."""
    advice = _PreProcessAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


@contextlib.contextmanager
def _lean_shape_inference() -> Iterator[None]:
    """While quantizing, infer shapes without copying the weights.

    onnxruntime's dynamic quantizer re-infers the model's shapes by deep-copying it, saving the
    copy and loading it back: two more copies of every weight (1.3 GB for the starter model, the
    export's peak memory). Shape inference only needs the graph and the shapes of large
    tensors, so here it runs on a copy without their bytes and its result goes onto the model
    itself. Without that hook (another onnxruntime) the quantizer does as it always did.
    """
    try:
        from onnxruntime.quantization import onnx_quantizer
    except ImportError:
        yield
        return
    original = getattr(onnx_quantizer, "save_and_reload_model_with_shape_infer", None)
    if original is None:
        yield
        return
    onnx_quantizer.save_and_reload_model_with_shape_infer = _infer_shapes_in_place
    try:
        yield
    finally:
        onnx_quantizer.save_and_reload_model_with_shape_infer = original


def _infer_shapes_in_place(model: Any) -> Any:
    """``model`` with its shapes inferred (as ``save_and_reload_model_with_shape_infer`` returns
    it), inferred on a copy whose large initializers carry their shape but not their bytes."""
    import onnx
    from onnxruntime.quantization.quant_utils import add_infer_metadata

    graph = model.graph

    def shell(init: Any) -> Any:
        if init.ByteSize() <= _LEAN_FROM_BYTES:  # shape constants: inference may read their values
            return init
        return onnx.TensorProto(name=init.name, data_type=init.data_type, dims=init.dims)

    bare_graph = onnx.helper.make_graph(list(graph.node), graph.name, list(graph.input), list(graph.output),
                                        initializer=[shell(i) for i in graph.initializer],
                                        value_info=list(graph.value_info))
    bare = onnx.helper.make_model(bare_graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    bare.functions.extend(model.functions)
    inferred = onnx.shape_inference.infer_shapes(bare)
    del graph.value_info[:]
    graph.value_info.extend(inferred.graph.value_info)
    add_infer_metadata(model)
    return model


def fold_constant_transposes(source: Path, destination: Path) -> int:
    """Save ``source`` to ``destination`` with every ``Transpose`` of an initializer replaced by the
    transposed initializer; return how many were folded.

    A tied LM head is ``MatMul(x, Transpose(embedding))``: unfolded, the quantizer cannot see its
    weight and the int8 graph transposes 100 MB every step (twice as slow). ONNX Runtime's
    ``quant_pre_process`` folds it too, with symbolic shape inference and a full optimisation
    pass around it that take 20 s on the starter model and change nothing else that matters here.
    Large weights go beside ``destination`` in ``<name>.data``.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    initializers = {i.name: i for i in model.graph.initializer}
    folded = []
    for node in model.graph.node:
        if node.op_type == "Transpose" and len(node.input) == 1 and node.input[0] in initializers:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            data = numpy_helper.to_array(initializers[node.input[0]])
            transposed = np.ascontiguousarray(np.transpose(data, perm))
            model.graph.initializer.append(numpy_helper.from_array(transposed, node.output[0]))
            folded.append(node)
    for node in folded:
        model.graph.node.remove(node)
    _drop_unused(model, {node.input[0] for node in folded})
    from core.exporter.onnx_graphs import save_graph

    save_graph(model, destination)
    return len(folded)


def _drop_unused(model: Any, names: set[str]) -> None:
    """Remove the initializers in ``names`` that nothing reads any more (a weight whose only
    reader was a folded Transpose); kept when a node has subgraphs, which may read them too."""
    import onnx

    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        return
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name in names and i.name not in read]:
        graph.initializer.remove(init)


def require_space(folder: Path, needed: int, doing: str) -> None:
    """Raise a plain "no space left" naming ``folder`` before ``doing`` would run out of it:
    onnxruntime's quantizer, short of disk, fails later with "Failed to find proper ai.onnx
    domain" about a half-written file."""
    import errno

    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device: {doing} needs about {needed // 2**20} MB in "
                                    f"{folder}, {free // 2**20} MB free", str(folder))


# --------------------------------------------------------------------------- TinyForgeAI's quantize hook

QUANTIZE_MODES = ("int8", "uint8", "int4", "fp16")
_INT4_BLOCK_SIZE = 32  # 4-bit weights per block of 32 input rows, each block with its own scale


def quantize_onnx(onnx_path: str | os.PathLike[str], output_dir: str | os.PathLike[str], mode: str = "int8") -> str:
    """Quantize a graph into ``output_dir/quantized.onnx`` and its ``.meta.json`` (TinyForgeAI's
    hook, kept for its users).

    A dry run's placeholder gets a placeholder JSON document (saying ``quantized`` and ``mode``,
    as TinyForgeAI wrote it); a real graph is quantized for real: ``int8``/``uint8`` with ONNX
    Runtime's dynamic quantization, ``int4`` with its block-wise weight-only ``MatMulNBitsQuantizer``,
    ``fp16`` by converting weights and compute to float16 (inputs and outputs stay float32;
    meant for GPUs, many CPU kernels have no float16 version). The metadata carries the
    source's metadata plus ``quantized``, ``mode`` and ``quantize_time``. Returns the path of
    ``quantized.onnx``; raises ``FileNotFoundError`` for a missing file and ``ValueError`` for
    an unknown mode or a file that is not an ONNX graph.
    """
    from core.exporter.graph_files import get_onnx_metadata, is_placeholder_graph
    from core.jsonio import utc_now_iso
    from core.run_layout import QUANTIZED_FILE, QuantizedGraphMeta, write_result

    source = Path(onnx_path).expanduser().absolute()
    if not source.is_file():
        raise FileNotFoundError(errno.ENOENT, "ONNX file not found", str(source))
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"Invalid quantization mode: {mode!r} (valid modes: {', '.join(QUANTIZE_MODES)})")
    out = Path(output_dir).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    destination = out / QUANTIZED_FILE
    source_meta = get_onnx_metadata(source) or {}
    quantize_time = utc_now_iso()
    meta = QuantizedGraphMeta.model_validate(
        {**source_meta, "quantized": True, "mode": mode, "quantize_time": quantize_time, "source_onnx": str(source)}
    )
    if is_placeholder_graph(source):
        write_result(
            destination,
            QuantizedGraphMeta(
                exported_from=source_meta.get("exported_from", str(source)),
                export_time=source_meta.get("export_time"),
                version=source_meta.get("version", "0.1-stub"),
                quantized=True,
                mode=mode,
                quantize_time=quantize_time,
            ),
        )
    else:
        meta.quantization = _quantize_graph(source, destination, mode)
    write_result(out / f"{QUANTIZED_FILE}.meta.json", meta)
    return str(destination)


def get_quantized_metadata(quantized_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``.meta.json`` beside a quantized file written by :func:`quantize_onnx`, or None."""
    from core.exporter.graph_files import read_beside_graph
    from core.run_layout import QuantizedGraphMeta

    meta = read_beside_graph(quantized_path, QuantizedGraphMeta)
    return meta.to_json() if meta is not None else None


def _quantize_graph(source: Path, destination: Path, mode: str) -> Quantization:
    """Quantize a real graph into a temp file beside ``destination``, check it, move it in place."""
    import onnx

    from core.exporter.errors import ExportError

    try:
        onnx.load(str(source), load_external_data=False)
    except Exception as exc:  # protobuf decode errors have no common base class
        raise ExportError(f"{source} is not an ONNX graph: {type(exc).__name__}: {exc}") from exc
    work = Path(tempfile.mkdtemp(prefix=".quantize-", dir=destination.parent))
    started = time.perf_counter()
    try:
        partial = work / destination.name
        if mode == "int8":
            info = quantize_int8(source, partial)
        elif mode == "uint8":
            info = quantize_int8(source, partial, weight_type="uint8")
        elif mode == "int4":
            info = _quantize_int4(source, partial)
        else:
            info = _convert_fp16(source, partial)
        onnx.checker.check_model(str(partial))
        for extra in sorted(work.iterdir(), key=lambda p: p == partial):  # external data before the graph
            os.replace(extra, destination.parent / extra.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "seconds" not in info.model_fields_set:
        info.seconds = round(time.perf_counter() - started, 3)
    info.source_bytes = source.stat().st_size
    info.quantized_bytes = destination.stat().st_size
    return info


def _quantize_int4(source: Path, destination: Path) -> Quantization:
    """Block-wise 4-bit weight-only quantization of the MatMul weights (``MatMulNBits`` nodes)."""
    return quantize_blockwise(source, destination, bits=4, block_size=_INT4_BLOCK_SIZE, accuracy_level=None,
                              external_data=False)  # quantize_onnx returns one self-contained file


def quantize_blockwise(source: str | os.PathLike[str], destination: str | os.PathLike[str], bits: int = 8,
                       block_size: int = 32, accuracy_level: int | None = 4,
                       external_data: bool = True) -> Quantization:
    """Weight-only block-wise quantization of every MatMul with constant weights (``MatMulNBits``:
    one symmetric scale per ``block_size`` weights). ``accuracy_level`` 4 runs the matmuls on int8
    kernels; None keeps fp32 compute. ``external_data``: the weights go beside the graph
    (``<name>.data``; writing raw bytes beats serialising one protobuf); else one file."""
    import onnx

    source, destination = Path(source), Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    MatMulNBitsQuantizer = _import_nbits_quantizer()  # noqa: N806 - a class
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=bits, block_size=block_size, is_symmetric=True,
                                     accuracy_level=accuracy_level)
    quantizer.process()
    quantizer.model.save_model_to_file(str(destination), use_external_data_format=external_data)
    onnx.checker.check_model(str(destination))
    return Quantization(
        method="onnxruntime.quantization.MatMulNBitsQuantizer",
        bits=bits,
        block_size=block_size,
        symmetric=True,
        accuracy_level=accuracy_level,
        seconds=round(time.perf_counter() - started, 3),
    )


def _import_nbits_quantizer() -> Any:
    """``MatMulNBitsQuantizer``, without the side effects of importing its module.

    The module calls ``logging.basicConfig(level=INFO)`` on import, which would turn on INFO
    logging for the whole process, and logs every node it skips at INFO.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization import matmul_nbits_quantizer

    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger(matmul_nbits_quantizer.__name__).setLevel(logging.WARNING)
    return matmul_nbits_quantizer.MatMulNBitsQuantizer


def _convert_fp16(source: Path, destination: Path) -> Quantization:
    """float16 weights and compute; graph inputs and outputs keep their float32 type."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    converted = OnnxModel(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True))
    converted.topological_sort()  # the casts kept for float32 inputs are appended at the end
    onnx.save(converted.model, str(destination))
    return Quantization(method="onnxruntime.transformers.float16.convert_float_to_float16", keep_io_types=True)
