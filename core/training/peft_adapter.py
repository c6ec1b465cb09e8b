"""TinyForgeAI's LoRA hook (kept for its users): records a LoRA configuration on a model description.

``apply_lora`` works on the dry-run model dictionary (``model_stub.json``). Real LoRA
training with PEFT lives in :mod:`core.training.hf_train`; both share this validation.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from core.jsonio import utc_now_iso

__all__ = ["apply_lora", "get_default_lora_config", "validate_lora_config"]


def get_default_lora_config() -> dict[str, Any]:
    """TinyForgeAI's defaults, kept for dry runs: rank 8, alpha 16, attention query and value projections."""
    return {"r": 8, "alpha": 16, "target_modules": ["q", "v"]}


def validate_lora_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return a clean copy of ``config`` or raise ``ValueError`` saying what is wrong."""
    if not isinstance(config, Mapping):
        raise ValueError(f"LoRA config must be a dict, got {type(config).__name__}")
    merged = {**get_default_lora_config(), **dict(config)}
    r, alpha, modules = merged["r"], merged["alpha"], merged["target_modules"]
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"LoRA rank 'r' must be an integer >= 1, got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"LoRA 'alpha' must be a number > 0, got {alpha!r}")
    if isinstance(modules, str):
        modules = [name.strip() for name in modules.split(",")]
    if (
        not isinstance(modules, (list, tuple))
        or not modules
        or not all(isinstance(name, str) and name.strip() for name in modules)
    ):
        raise ValueError(f"LoRA 'target_modules' must be a non-empty list of module names, got {modules!r}")
    merged["target_modules"] = [name.strip() for name in modules]
    return merged


def apply_lora(model: dict[str, Any], config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return a copy of ``model`` marked with LoRA metadata; ``model`` itself is untouched.

    Applying it again refreshes ``lora_timestamp`` and keeps the recorded config unless a
    new one is given.
    """
    if model is None or not isinstance(model, dict):
        raise ValueError(f"apply_lora: model must be a non-None dictionary, got {type(model).__name__}")
    patched = copy.deepcopy(model)
    if config is not None:
        lora_config = validate_lora_config(config)
    elif patched.get("lora_applied") and isinstance(patched.get("lora_config"), dict):
        lora_config = patched["lora_config"]
    else:
        lora_config = get_default_lora_config()
    patched["lora_applied"] = True
    patched["lora_config"] = lora_config
    patched["lora_timestamp"] = utc_now_iso()
    return patched
