"""Write a loaded Llama-family torch model as GGUF files llama.cpp loads (arch ``llama``).

The tensors are renamed as llama.cpp's ``convert_hf_to_gguf.py`` names them, the q/k
projections get its rotary permutation (HF orders each head's rotary pairs as two halves,
llama.cpp interleaves them), and each file type is quantized with the ``gguf`` package:
1-D tensors (norms) stay F32 as llama.cpp keeps them, rows whose length is not a multiple of
the 32-weight block stay F16. Tensors are converted and written one at a time (the file's
header and tensor table first), so memory holds one tensor beyond the model and cancel is
polled between tensors.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.events import CancelToken
from core.exporter.errors import ExportError
from core.exporter.gguf_vocab import GgufVocab

logger = logging.getLogger(__name__)

__all__ = ["FILE_TYPES", "LlamaHparams", "TensorPlan", "gguf_file_name", "llama_hparams", "llama_tensors",
           "permute_rotary", "write_gguf"]

FILE_TYPES = ("F16", "Q8_0", "Q4_0")  # what the gguf package quantizes, largest first
SUPPORTED_MODELS = "Llama-family models (model_type llama or mistral, e.g. SmolLM2, Llama 3.x)"
PROMPT_FORMAT_KEY = "tinyforge.prompt_format"  # our prompt format, so a lone .gguf can answer like predict
_MODEL_TYPES = ("llama", "mistral")  # llama.cpp loads both as arch "llama"
_BLOCK = 32  # Q8_0 and Q4_0 quantize rows in blocks of 32 weights
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_LAYER_TENSORS = {
    "self_attn.q_proj.weight": "attn_q",
    "self_attn.k_proj.weight": "attn_k",
    "self_attn.v_proj.weight": "attn_v",
    "self_attn.o_proj.weight": "attn_output",
    "mlp.gate_proj.weight": "ffn_gate",
    "mlp.up_proj.weight": "ffn_up",
    "mlp.down_proj.weight": "ffn_down",
    "input_layernorm.weight": "attn_norm",
    "post_attention_layernorm.weight": "ffn_norm",
}
_GLOBAL_TENSORS = {"model.embed_tokens.weight": "token_embd", "model.norm.weight": "output_norm",
                   "lm_head.weight": "output"}


@dataclass(frozen=True)
class LlamaHparams:
    """The ``llama.*`` hyper-parameters of a GGUF file, read off the HF config."""

    context_length: int
    embedding_length: int
    block_count: int
    feed_forward_length: int
    head_count: int
    head_count_kv: int
    head_dim: int
    rope_freq_base: float
    rms_eps: float
    vocab_size: int
    tied_embeddings: bool
    rope_linear_factor: float | None = None  # rope_type "linear": positions divided by it
    rope_factors: tuple[float, ...] | None = None  # rope_type "llama3": per-frequency factors (rope_freqs)


@dataclass(frozen=True)
class TensorPlan:
    """One tensor of the file: its GGUF name, its shape and how to get its float32 array."""

    name: str
    shape: tuple[int, ...]
    load: Callable[[], np.ndarray]


def gguf_file_name(file_type: str) -> str:
    return f"model-{file_type}.gguf"


def llama_hparams(config: Any) -> LlamaHparams:
    """The hyper-parameters of a Llama-family config; :class:`ExportError` for anything else."""
    model_type = str(getattr(config, "model_type", ""))
    if model_type not in _MODEL_TYPES:
        raise ExportError(f"GGUF export supports {SUPPORTED_MODELS}; this model is {model_type or 'unknown'!r}")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ExportError(f"GGUF export supports {SUPPORTED_MODELS} without biases; this {model_type} has them")
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "linear", "llama3"):
        raise ExportError(f"GGUF export supports plain, linear and Llama 3 rotary embeddings; this model's are "
                          f"{rope_type!r}")
    heads = int(config.num_attention_heads)
    hidden = int(config.hidden_size)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    theta = float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))
    return LlamaHparams(
        context_length=int(config.max_position_embeddings),
        embedding_length=hidden,
        block_count=int(config.num_hidden_layers),
        feed_forward_length=int(config.intermediate_size),
        head_count=heads,
        head_count_kv=int(getattr(config, "num_key_value_heads", None) or heads),
        head_dim=head_dim,
        rope_freq_base=theta,
        rms_eps=float(config.rms_norm_eps),
        vocab_size=int(config.vocab_size),
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        rope_linear_factor=float(rope["factor"]) if rope_type == "linear" else None,
        rope_factors=_llama3_rope_factors(rope, theta, head_dim) if rope_type == "llama3" else None,
    )


def _llama3_rope_factors(rope: dict[str, Any], theta: float, head_dim: int) -> tuple[float, ...]:
    """Llama 3.1's per-frequency rotary factors, which llama.cpp reads from ``rope_freqs.weight``
    (``LlamaModel.generate_extra_tensors``): long wavelengths stretched by ``factor``, short ones
    kept, those between blended."""
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old_context = float(rope.get("original_max_position_embeddings", 8192))
    wavelengths = 2 * math.pi * theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    smooth = (old_context / wavelengths - low) / (high - low)
    blended = 1 / ((1 - smooth) / factor + smooth)
    factors = np.where(wavelengths < old_context / high, 1.0, np.where(wavelengths > old_context / low, factor, blended))
    return tuple(float(f) for f in factors)


def permute_rotary(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF's q/k projection rows in llama.cpp's rotary order (``LlamaModel.permute``)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def llama_tensors(model: Any, hparams: LlamaHparams) -> list[TensorPlan]:
    """Every tensor of ``model``, named and laid out as llama.cpp reads it. Unknown tensors are
    refused before anything is written."""
    plan: list[TensorPlan] = []
    unknown: list[str] = []
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and hparams.tied_embeddings:
            continue  # llama.cpp reuses token_embd when there is no output tensor
        match = _LAYER.match(name)
        base = _LAYER_TENSORS.get(match.group(2)) if match else _GLOBAL_TENSORS.get(name)
        if base is None:
            unknown.append(name)
            continue
        gguf_name = f"blk.{match.group(1)}.{base}.weight" if match else f"{base}.weight"
        heads = {"attn_q": hparams.head_count, "attn_k": hparams.head_count_kv}.get(base)
        plan.append(TensorPlan(gguf_name, tuple(tensor.shape), _loader(tensor, heads)))
    if unknown:
        raise ExportError(f"GGUF export supports {SUPPORTED_MODELS}; this model also has "
                          f"{', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}")
    if hparams.rope_factors is not None:
        factors = np.array(hparams.rope_factors, dtype=np.float32)
        plan.append(TensorPlan("rope_freqs.weight", factors.shape, lambda: factors))
    return plan


def _loader(tensor: Any, heads: int | None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        array = tensor.detach().float().cpu().numpy()
        return permute_rotary(array, heads) if heads else array

    return load


def _tensor_type(gguf_name: str, shape: tuple[int, ...], file_type: str, hparams: LlamaHparams) -> Any:
    """The GGML type of one tensor in a file of ``file_type``."""
    from gguf import GGMLQuantizationType as Q

    if len(shape) < 2:
        return Q.F32
    if file_type == "F16" or shape[-1] % _BLOCK:
        return Q.F16
    if file_type == "Q4_0":
        # The output projection decides every token: llama.cpp's own Q4_0 keeps it at higher
        # precision (Q6_K, which this package cannot write); Q8_0 is the nearest it can.
        is_output = gguf_name == "output.weight" or (gguf_name == "token_embd.weight" and hparams.tied_embeddings)
        return Q.Q8_0 if is_output else Q.Q4_0
    return Q.Q8_0


def write_gguf(
    path: Path,
    file_type: str,
    tensors: list[TensorPlan],
    hparams: LlamaHparams,
    vocab: GgufVocab,
    model_name: str,
    prompt_format: dict[str, Any],
    cancel: CancelToken | None = None,
) -> None:
    """Write one GGUF file of ``file_type`` (one of :data:`FILE_TYPES`) at ``path``."""
    import gguf

    types = [_tensor_type(t.name, t.shape, file_type, hparams) for t in tensors]
    writer = gguf.GGUFWriter(str(path), arch="llama")
    try:
        _write_metadata(writer, file_type, hparams, vocab, model_name, prompt_format)
        for tensor, qtype in zip(tensors, types, strict=True):
            nbytes = int(np.prod(gguf.quant_shape_to_byte_shape(tensor.shape, qtype)))
            writer.add_tensor_info(tensor.name, tensor.shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor, qtype in zip(tensors, types, strict=True):
            if cancel is not None:
                cancel.raise_if_cancelled()
            writer.write_tensor_data(gguf.quants.quantize(tensor.load(), qtype))
    finally:
        writer.close()


def _write_metadata(writer: Any, file_type: str, hparams: LlamaHparams, vocab: GgufVocab, model_name: str,
                    prompt_format: dict[str, Any]) -> None:
    import gguf

    writer.add_type("model")
    writer.add_name(model_name)
    writer.add_context_length(hparams.context_length)
    writer.add_embedding_length(hparams.embedding_length)
    writer.add_block_count(hparams.block_count)
    writer.add_feed_forward_length(hparams.feed_forward_length)
    writer.add_head_count(hparams.head_count)
    writer.add_head_count_kv(hparams.head_count_kv)
    writer.add_rope_dimension_count(hparams.head_dim)
    if hparams.head_dim * hparams.head_count != hparams.embedding_length:
        writer.add_key_length(hparams.head_dim)
        writer.add_value_length(hparams.head_dim)
    writer.add_rope_freq_base(hparams.rope_freq_base)
    if hparams.rope_linear_factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(hparams.rope_linear_factor)
    writer.add_layer_norm_rms_eps(hparams.rms_eps)
    writer.add_vocab_size(hparams.vocab_size)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{file_type}"))
    if file_type != "F16":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    if vocab.bos_id is not None:
        writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    if vocab.unk_id is not None:
        writer.add_unk_token_id(vocab.unk_id)
    if vocab.pad_id is not None:
        writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    writer.add_add_space_prefix(False)
    writer.add_chat_template(vocab.chat_template)
    writer.add_string(PROMPT_FORMAT_KEY, json.dumps(prompt_format))
