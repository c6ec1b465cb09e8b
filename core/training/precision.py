"""Which precision a run trains in, and why; and bf16 mixed precision that really runs in bf16.

``--precision auto``: on a CUDA GPU bf16 where it is supported, else fp16; on a CPU bf16 only
where the processor multiplies bf16 natively (AVX-512 BF16 or AMX, read from the CPU flags),
fp32 elsewhere: without those instructions bf16 matmuls are emulated and several times slower
than fp32. The decision is one pure function (:func:`choose_precision`) so it can be tested
with any CPU's flags; the caller logs its reason and records it in the training report.

Why the HF Trainer's ``bf16=True`` alone gives nothing on a CPU: accelerate wraps the forward in
``torch.autocast`` (so matmuls do run in bf16), but every frozen fp32 weight is cast to bf16
again in every forward (autocast caches casts only for weights that require grad), the residual
stream stays fp32 so each layer casts its activations to bf16 and back, and the logits over the
whole vocabulary are upcast for the loss. The copies eat what the faster matmuls win.
:func:`store_frozen_in_bf16` keeps what does not train (a LoRA run's base model) in bf16 once,
so the embeddings start the residual stream in bf16 and only the small trainable tensors are
cast; what trains stays fp32 (master weights, fp32 optimizer state and gradients).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["BF16_CPU_FLAGS", "PrecisionChoice", "choose_precision", "cpu_flags", "lora_inputs_as_they_come",
           "restore_frozen", "restore_frozen_from_files", "store_frozen_in_bf16"]

# Any of these flags means the CPU multiplies bf16 in hardware (Cooper Lake / Sapphire Rapids
# and later, Zen 4 and later).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run uses and the one-line reason (logged and recorded in the report)."""

    precision: str  # fp32 | bf16 | fp16
    reason: str

    def as_record(self) -> dict[str, str]:
        return {"precision": self.precision, "reason": self.reason}


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The CPU feature flags from ``/proc/cpuinfo`` (Linux), or None where they cannot be read."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def choose_precision(requested: str, device: str, flags: frozenset[str] | None = None,
                     cuda_bf16: bool = False) -> PrecisionChoice:
    """The precision for ``requested`` (auto | fp32 | bf16 | fp16) on ``device`` (cpu | cuda | mps).

    ``flags`` are the CPU's feature flags (None: unknown), ``cuda_bf16`` whether the GPU does bf16.
    """
    native = sorted(set(BF16_CPU_FLAGS) & (flags or frozenset()))
    if requested != "auto":
        reason = f"{requested} as asked"
        if requested == "bf16" and device == "cpu" and not native:
            reason += (" (this CPU has no native bf16 (AVX-512 BF16 / AMX): bf16 is emulated and "
                       "slower than fp32 here)")
        return PrecisionChoice(requested, reason)
    if device == "cuda":
        if cuda_bf16:
            return PrecisionChoice("bf16", "auto: this GPU supports bf16")
        return PrecisionChoice("fp16", "auto: this GPU has no bf16, fp16 instead")
    if device == "cpu":
        if native:
            return PrecisionChoice("bf16", f"auto: this CPU multiplies bf16 natively ({', '.join(native)})")
        if flags is None:
            return PrecisionChoice("fp32", "auto: the CPU's features could not be read, fp32 to be safe")
        return PrecisionChoice("fp32", "auto: this CPU has no native bf16 (AVX-512 BF16 / AMX); "
                                       "emulated bf16 would be slower than fp32")
    return PrecisionChoice("fp32", f"auto: fp32 on {device}")


def store_frozen_in_bf16(model: Any) -> int:
    """Cast every parameter that does not train to bf16; return how many were cast. Trainable
    parameters (LoRA adapters) and buffers (rotary frequencies) stay fp32."""
    import torch

    cast = 0
    for param in model.parameters():
        if not param.requires_grad and param.dtype == torch.float32:
            param.data = param.data.to(torch.bfloat16)
            cast += 1
    return cast


@contextlib.contextmanager
def lora_inputs_as_they_come(model: Any, active: bool) -> Iterator[None]:
    """While active, PEFT's LoRA layers feed their input to the adapter in its own dtype.

    PEFT casts a layer's input to its adapter's dtype (fp32: what trains stays fp32) before the
    adapter's matmuls; under autocast those matmuls cast it straight back to bf16. That is two
    copies of every adapted layer's input, and two more in the backward, for the same numbers
    (a bf16 value survives fp32 and back exactly). On the starter model (seven adapters a layer)
    they were about 1,000 of a step's copies, and leaving them out made steps 5-7% faster.
    Only for mixed precision: in fp32 PEFT casts nothing anyway."""
    if not active:
        yield
        return
    from peft.helpers import disable_input_dtype_casting

    with disable_input_dtype_casting(model):
        yield


def _frozen_bf16(model: Any) -> dict[str, Any]:
    """The base model's bf16-rounded frozen parameters by their published names (PEFT's
    ``.base_layer.`` taken out); a tied weight appears under each of its names."""
    import torch

    from core.training.answer_loss import inner_model

    inner = inner_model(model)
    return {name.replace(".base_layer.", "."): param
            for name, param in inner.named_parameters(remove_duplicate=False)
            if not param.requires_grad and param.dtype == torch.bfloat16}


def restore_frozen_from_files(model: Any, folder: str | Path) -> int | None:
    """:func:`restore_frozen` reading the originals tensor by tensor from the ``*.safetensors``
    files in ``folder`` (never a second whole model in memory); None when it has none."""
    import torch
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    rounded = _frozen_bf16(model)
    restored = 0
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                param = rounded.get(key)
                if param is None or param.dtype != torch.bfloat16:
                    continue  # not ours to restore, or restored under a tied name already
                source = handle.get_tensor(key)
                if source.shape == param.shape and source.dtype == torch.float32:
                    param.data = source.to(param.device)
                    restored += 1
    for param in rounded.values():  # without an fp32 original: at least fp32 again
        if param.dtype == torch.bfloat16:
            param.data = param.data.float()
    return restored


def restore_frozen(model: Any, original: Any) -> int:
    """Put the fp32 values of ``original`` (the same base model, freshly loaded) back into every
    parameter of ``model`` that :func:`store_frozen_in_bf16` rounded, so the evaluation and the
    merged model use the base weights exactly as published; return how many were restored.
    PEFT names a wrapped layer's weight ``<layer>.base_layer.weight``; a parameter without an
    fp32 original is simply cast back to fp32."""
    import torch

    from core.training.answer_loss import inner_model

    inner = inner_model(model)
    fresh = dict(original.named_parameters(remove_duplicate=False))
    restored = 0
    for name, param in inner.named_parameters(remove_duplicate=False):
        if param.requires_grad or param.dtype != torch.bfloat16:
            continue
        source = fresh.get(name.replace(".base_layer.", "."))
        if source is not None and source.shape == param.shape and source.dtype == torch.float32:
            param.data = source.data.to(param.device)
            restored += 1
        else:
            param.data = param.data.float()
    return restored
