"""Fewer autograd steps for a LoRA run in bf16 on a CPU: one node per adapted layer and per norm.

Profiled on the starter model (LoRA on seven projections, batch 8, 2 cores): once the matmuls
run in bf16, a good part of a step is the many small operations around them, each a separate
autograd node with its own copies. PEFT's LoRA layer under autocast is about a dozen of them
(two weight casts, two matmuls, the scaling, the add, and their backward nodes); HF's RMSNorm
is eight (casts, pow, mean, rsqrt, two multiplies) that also keep fp32 copies of the
activations for the backward. Here each becomes one ``torch.autograd.Function`` with the same
arithmetic and a hand-written backward:

* :func:`lora_linear_function`: ``y = x W^T + s (x A^T) B^T`` with the update added into the base
  output in place (one addmm), the adapter cast to bf16 once per call; the backward computes
  exactly the four products the chain rule needs and returns fp32 gradients for A and B.
* :func:`rms_norm_function`: ``w * bf16(x * rsqrt(mean(x^2) + eps))`` computed in fp32 like HF; it keeps
  only the bf16 input and one scale per row for the backward.

Measured in one process, alternating with PEFT's and HF's layers round by round: +3% tokens/s
for the LoRA function, +1% more for the norm. Only while training (:func:`lean_layers` puts the
original forwards back) and only where it is the same computation: a PEFT ``lora.Linear`` with
one plain LoRA adapter, no dropout, over a bf16 ``nn.Linear``; a frozen RMSNorm of the Llama
family. Anything else keeps its own forward, as does every layer outside bf16 autocast.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import types
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["LEAN_NORMS", "lean_layers", "lora_linear_function", "rms_norm_function"]

# RMSNorm classes whose forward is exactly Llama's (checked against transformers 5.24).
LEAN_NORMS = frozenset({"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "Phi3RMSNorm"})


@contextlib.contextmanager
def lean_layers(model: Any, active: bool) -> Iterator[int]:
    """While active, adapted layers and norms of ``model`` run as single autograd nodes under
    bf16 autocast; yields how many modules were swapped (0 when inactive)."""
    if not active:
        yield 0
        return
    import torch

    swapped = []
    for module in model.modules():
        forward = _lean_forward(module, torch)
        if forward is not None:
            module.forward = types.MethodType(forward, module)
            swapped.append(module)
    logger.info("lean layers: %d adapted layers and norms as single autograd nodes", len(swapped))
    try:
        yield len(swapped)
    finally:
        for module in swapped:
            module.__dict__.pop("forward", None)


def _lean_forward(module: Any, torch: Any) -> Any:
    """The lean forward for ``module``, or None where it would not be the same computation."""
    if type(module).__name__ in LEAN_NORMS:
        weight = getattr(module, "weight", None)
        if weight is not None and not weight.requires_grad and hasattr(module, "variance_epsilon"):
            return _norm_forward
        return None
    if not _is_plain_lora_linear(module, torch):
        return None
    return _lora_forward


def _is_plain_lora_linear(module: Any, torch: Any) -> bool:
    try:
        from peft.tuners.lora import Linear as PeftLoraLinear
    except ImportError:
        return False
    if type(module) is not PeftLoraLinear:
        return False
    base = module.base_layer
    adapters = list(module.lora_A.keys())
    return (type(base) is torch.nn.Linear and base.weight.dtype == torch.bfloat16
            and not base.weight.requires_grad and adapters == ["default"]
            and not module.lora_variant and not module.lora_bias.get("default", False)
            and isinstance(module.lora_dropout["default"], torch.nn.Identity))


def _lora_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    import torch

    if (args or kwargs or self.disable_adapters or self.merged or self.active_adapters != ["default"]
            or not torch.is_autocast_enabled(x.device.type)):
        return type(self).forward(self, x, *args, **kwargs)  # PEFT's own path
    base = self.base_layer
    out = lora_linear_function().apply(x.to(base.weight.dtype), base.weight, self.lora_A["default"].weight,
                                       self.lora_B["default"].weight, float(self.scaling["default"]))
    return out if base.bias is None else out + base.bias


def _norm_forward(self: Any, hidden_states: Any) -> Any:
    return rms_norm_function().apply(hidden_states, self.weight, float(self.variance_epsilon))


@functools.cache
def lora_linear_function() -> Any:
    """``x W^T + s (x A^T) B^T`` as one autograd node (W frozen bf16; A, B fp32 masters)."""
    import torch

    class _LoraLinear(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, lora_a: Any, lora_b: Any, scaling: float) -> Any:
            a, b = lora_a.to(weight.dtype), lora_b.to(weight.dtype)
            rows = x.reshape(-1, x.shape[-1])
            h = rows @ a.t()  # [tokens, r]
            out = (rows @ weight.t()).addmm_(h, b.t(), alpha=scaling)
            ctx.save_for_backward(rows, weight, a, b, h)
            ctx.scaling, ctx.shape = scaling, x.shape
            return out.view(*x.shape[:-1], weight.shape[0])

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            rows, weight, a, b, h = ctx.saved_tensors
            g = grad.reshape(-1, grad.shape[-1]).to(weight.dtype)
            grad_h = (g @ b).mul_(ctx.scaling)  # [tokens, r]
            grad_x = None
            if ctx.needs_input_grad[0]:
                grad_x = (g @ weight).addmm_(grad_h, a).view(ctx.shape)
            grad_a = (grad_h.t() @ rows).float() if ctx.needs_input_grad[2] else None
            grad_b = (g.t() @ h).mul_(ctx.scaling).float() if ctx.needs_input_grad[3] else None
            return grad_x, None, grad_a, grad_b, None

    return _LoraLinear


@functools.cache
def rms_norm_function() -> Any:
    """Llama's RMSNorm with a frozen weight as one autograd node."""
    import torch

    class _RMSNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, eps: float) -> Any:
            xf = x.float()
            scale = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True).add_(eps))
            ctx.save_for_backward(x, weight, scale)
            return weight * (xf * scale).to(x.dtype)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            x, weight, scale = ctx.saved_tensors
            normed = x.float() * scale  # a new tensor even when x is fp32 (changed in place below)
            grad_normed = (grad * weight).float()
            dot = (grad_normed * normed).mean(-1, keepdim=True)
            grad_x = grad_normed.sub_(normed.mul_(dot)).mul_(scale)
            return grad_x.to(x.dtype), None, None

    return _RMSNorm
