"""The LoRA module names of a base model from its ``config.json`` and a table, without torch.

The window lists a model's LoRA-capable modules while the user picks targets; building the model
on the meta device (:func:`core.models.registry.lora_candidate_modules`) would pull torch and
transformers (~400 MB) into the window's process for that alone. This module answers from the
name (tiny models, the starter), a local folder's ``config.json`` or the local Hugging Face cache's
copy of it, and a table per ``model_type`` that ``tests/core/models/test_lora_modules.py`` checks
against the torch path for every family, so the two never drift apart.

A ``model_type`` not in the table, or a hub id not in the local cache, gives no names and says
why (:attr:`LoraModules.unknown_reason`): the names are read when training loads the model, which
checks the chosen targets and names the modules that exist. No child process is started for it.
Stdlib only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.models.hf_cache import cached_snapshot
from core.models.registry import BUILTIN_MODELS, BaseModelError
from core.models.starter import STARTER_NAME
from core.models.tiny import TINY_CAUSAL, TINY_SEQ2SEQ

logger = logging.getLogger(__name__)

__all__ = ["FAMILIES", "Family", "LoraModules", "lora_modules", "lora_modules_from_config"]


@dataclass(frozen=True)
class Family:
    """One ``model_type``'s module names as ``AutoModelFor{CausalLM,Seq2SeqLM}`` builds them.

    ``linear``: the linear projections of the transformer blocks in model order (the head left
    out), what :func:`core.models.registry.linear_projection_modules` returns; ``other``: the
    other LoRA-capable modules (embeddings, the output head, GPT-2's ``Conv1D``).
    """

    architecture: str  # causal | seq2seq
    linear: tuple[str, ...]
    other: tuple[str, ...]


_LLAMA_LIKE = Family("causal", ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                     ("embed_tokens", "lm_head"))
_FUSED_QKV = Family("causal", ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
                    ("word_embeddings", "lm_head"))
_T5 = Family("seq2seq", ("q", "k", "v", "o", "wi", "wo"), ("shared", "embed_tokens", "relative_attention_bias", "lm_head"))
_BART = Family("seq2seq", ("k_proj", "v_proj", "q_proj", "out_proj", "fc1", "fc2"),
               ("shared", "embed_tokens", "embed_positions", "lm_head"))

FAMILIES: dict[str, Family] = {
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "olmo", "olmo2",
                     "stablelm", "granite", "smollm3", "cohere"), _LLAMA_LIKE),
    "phi": Family("causal", ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"), ("embed_tokens", "lm_head")),
    "phi3": Family("causal", ("o_proj", "qkv_proj", "gate_up_proj", "down_proj"), ("embed_tokens", "lm_head")),
    "starcoder2": Family("causal", ("q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"), ("embed_tokens", "lm_head")),
    # GPT-2's attention and MLP are transformers' Conv1D, not torch Linear: no "linear projection".
    "gpt2": Family("causal", (), ("c_attn", "c_fc", "c_proj", "wte", "wpe", "lm_head")),
    "gpt_neox": Family("causal", ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"), ("embed_in", "lm_head")),
    "gptj": Family("causal", ("k_proj", "v_proj", "q_proj", "out_proj", "fc_in", "fc_out"), ("wte", "lm_head")),
    "falcon": _FUSED_QKV,
    "bloom": _FUSED_QKV,
    "opt": Family("causal", ("k_proj", "v_proj", "q_proj", "out_proj", "fc1", "fc2"),
                  ("embed_tokens", "embed_positions", "lm_head")),
    "t5": _T5,
    "mt5": _T5,
    "bart": _BART,
    "mbart": _BART,
}

# What a config.json may leave out (transformers writes only the values that differ from the
# defaults); the same defaults as T5Config / MT5Config.
_FEED_FORWARD_DEFAULT = {"t5": "relu", "mt5": "gated-gelu"}


@dataclass(frozen=True)
class LoraModules:
    """A base model's LoRA candidates (sorted) and linear projections (model order).

    ``unknown_reason`` is "" when the names are known; otherwise both lists are empty and it says
    why (shown as "module names unknown until training").
    """

    base_model: str
    architecture: str  # causal | seq2seq | "" when not known without loading the model
    model_type: str
    modules: tuple[str, ...] = ()
    default: tuple[str, ...] = ()
    unknown_reason: str = ""


def lora_modules(name: str) -> LoraModules:
    """The LoRA module names of base model ``name`` (tiny model, starter, local folder or hub id
    in the local HF cache); raise :class:`BaseModelError` for a name that cannot be a base model."""
    name = (name or "").strip()
    if not name:
        raise BaseModelError("no base model named")
    if name == TINY_CAUSAL:
        return lora_modules_from_config(name, {"model_type": "llama"})
    if name == TINY_SEQ2SEQ:  # a T5 with the default (relu, not gated) feed-forward
        return lora_modules_from_config(name, {"model_type": "t5", "is_encoder_decoder": True})
    if name == STARTER_NAME:  # SmolLM2 is a Llama; before its conversion there is no config.json
        return lora_modules_from_config(name, {"model_type": "llama"})
    path = Path(name).expanduser()
    if path.is_absolute() or name.startswith((".", "~")) or path.exists():
        if not path.is_dir():
            raise BaseModelError(f"base model folder not found: {path}")
        if not (path / "config.json").is_file():
            raise BaseModelError(f"{path} is not a Hugging Face model folder (no config.json)")
        return lora_modules_from_config(name, _read_json(path / "config.json", name))
    if name.count("/") == 1 and all(name.split("/")):
        snapshot = cached_snapshot(name)
        if snapshot is None:
            return LoraModules(name, "", "", unknown_reason="not in the local Hugging Face cache")
        return lora_modules_from_config(name, _read_json(snapshot / "config.json", name))
    known = ", ".join(sorted(BUILTIN_MODELS))
    raise BaseModelError(
        f"unknown base model {name!r}: use one of {known}, a local model folder, or a hub id "
        "(owner/name) that is in the local Hugging Face cache"
    )


def lora_modules_from_config(name: str, config: dict[str, Any]) -> LoraModules:
    """The names for a parsed ``config.json``: from :data:`FAMILIES`, adjusted for the few
    settings that add or rename modules (T5's gated feed-forward, OPT's embedding projections)."""
    model_type = str(config.get("model_type") or "")
    family = FAMILIES.get(model_type)
    if family is None:
        return LoraModules(name, _architecture_guess(config), model_type,
                           unknown_reason=f"model_type {model_type or '(none)'!r} is not in the table")
    if family.architecture == "seq2seq" and config.get("is_encoder_decoder") is False:
        return LoraModules(name, "causal", model_type,
                           unknown_reason=f"a decoder-only {model_type!r} is not in the table")
    linear = list(family.linear)
    if model_type in _FEED_FORWARD_DEFAULT:
        gated = str(config.get("feed_forward_proj") or _FEED_FORWARD_DEFAULT[model_type]).split("-")[0] == "gated"
        if gated:
            linear[linear.index("wi"):linear.index("wi") + 1] = ["wi_0", "wi_1"]
    if model_type == "opt":
        hidden = config.get("hidden_size") or 768
        if (config.get("word_embed_proj_dim") or hidden) != hidden:
            linear = ["project_out", "project_in", *linear]
    return LoraModules(name, family.architecture, model_type, tuple(sorted({*linear, *family.other})), tuple(linear))


def _read_json(path: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BaseModelError(f"cannot read the config of base model {name!r}: {error}") from error
    if not isinstance(data, dict):
        raise BaseModelError(f"cannot read the config of base model {name!r}: {path} is not a JSON object")
    return data


def _architecture_guess(config: dict[str, Any]) -> str:
    """causal / seq2seq for a model_type outside the table, from ``is_encoder_decoder`` and
    ``architectures``; "" when neither says."""
    if config.get("is_encoder_decoder"):
        return "seq2seq"
    architectures = [str(a) for a in config.get("architectures") or []]
    return "causal" if any(a.endswith("ForCausalLM") for a in architectures) else ""
