"""int8 dynamic quantization of an exported graph with ONNX Runtime's own tools.

Follows ONNX Runtime's recommended recipe: ``quant_pre_process`` (symbolic shape inference +
graph optimisation) first, then ``quantize_dynamic`` with int8 weights. MatMul weights are
quantized per tensor; embedding ``Gather`` tables too, which is most of a small LM's size.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["quantize_int8"]

DEFAULT_OP_TYPES = ("MatMul", "Gather")


def quantize_int8(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    per_channel: bool = False,
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES,
) -> dict[str, Any]:
    """Write an int8 dynamically quantized copy of ``source`` to ``destination``.

    Returns what was done (pre-processing applied or skipped and why, op types, seconds).
    The pre-processed intermediate lives in a temp folder beside ``destination`` and is removed.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, destination = Path(source), Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    info: dict[str, Any] = {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "int8"}
    work = Path(tempfile.mkdtemp(prefix=".quant-", dir=destination.parent))
    try:
        prepared = work / "preprocessed.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
            info["pre_process"] = "quant_pre_process"
        except Exception as exc:  # shape inference can fail on exotic graphs: quantize as is
            logger.warning("quant_pre_process failed (%s); quantizing the graph without it", exc)
            info["pre_process"] = f"skipped: {type(exc).__name__}: {exc}"[:300]
            prepared = source
        quantize_dynamic(
            str(prepared),
            str(destination),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=list(op_types),
            extra_options={"MatMulConstBOnly": True},
        )
        onnx.checker.check_model(str(destination))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info.update(
        {
            "per_channel": per_channel,
            "op_types": list(op_types),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    return info
