"""The table of LoRA module names (core.models.lora_modules) says what the torch path says.

Every family in the table is built by transformers from its default config (meta device, no
weights, offline), saved as a model folder, and read back through the table: the names must be
exactly those :func:`core.models.registry.lora_candidate_modules` and
:func:`~core.models.registry.linear_projection_modules` return, so the table cannot drift.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.models.hf_cache import cached_snapshot
from core.models.lora_modules import FAMILIES, lora_modules
from core.models.registry import (
    BaseModelError,
    _architecture_of,
    linear_projection_modules,
    load_model_config,
    lora_candidate_modules,
    resolve_base_model,
)

ROOT = Path(__file__).resolve().parents[3]

# Settings that add or rename modules; each is checked like a family's default.
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("t5", {"feed_forward_proj": "gated-gelu"}),  # flan-t5, t5 v1.1
    ("mt5", {"feed_forward_proj": "relu"}),
    ("opt", {"word_embed_proj_dim": 512}),  # opt-350m: project_in / project_out
    ("opt", {"hidden_size": 512, "num_attention_heads": 8, "word_embed_proj_dim": 512}),
    ("llama", {"tie_word_embeddings": True, "mlp_bias": True, "attention_bias": True}),
    ("falcon", {"new_decoder_architecture": True}),
]


def _torch_names(config: Any, name: str) -> tuple[str, list[str], list[str]]:
    architecture = _architecture_of(config, name)
    return architecture, lora_candidate_modules(config, architecture), linear_projection_modules(config, architecture)


@pytest.mark.parametrize(("model_type", "settings"), [(t, {}) for t in sorted(FAMILIES)] + VARIANTS,
                         ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()))
def test_table_matches_the_meta_device_model(tmp_path: Path, model_type: str, settings: dict[str, Any]) -> None:
    from transformers import AutoConfig

    config = AutoConfig.for_model(model_type, num_hidden_layers=2, **settings)
    config.save_pretrained(tmp_path)  # what a model folder holds: only the values that differ from the defaults
    architecture, modules, default = _torch_names(config, model_type)
    light = lora_modules(str(tmp_path))
    assert light.unknown_reason == ""
    assert (light.architecture, light.model_type) == (architecture, model_type)
    assert list(light.modules) == modules
    assert list(light.default) == default


@pytest.mark.parametrize("name", ["tiny-causal", "tiny-seq2seq", "smollm2-135m-instruct"])
def test_builtin_models_match_the_torch_path(name: str) -> None:
    light = lora_modules(name)
    try:
        spec = resolve_base_model(name)
    except BaseModelError:  # the starter not installed here: its stand-in config is a Llama
        spec = None
    if spec is not None:
        config = load_model_config(spec)
        assert (light.architecture, light.model_type) == (spec.architecture, spec.model_type)
        assert list(light.modules) == lora_candidate_modules(config, spec.architecture)
        assert list(light.default) == linear_projection_modules(config, spec.architecture)
    assert light.unknown_reason == "" and "lm_head" in light.modules


def test_hub_id_is_read_from_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert cached_snapshot("acme/tiny-t5") is None
    missing = lora_modules("acme/tiny-t5")
    assert missing.modules == () and "not in the local Hugging Face cache" in missing.unknown_reason
    repo = tmp_path / "models--acme--tiny-t5"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123", encoding="utf-8")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text(
        json.dumps({"model_type": "t5", "feed_forward_proj": "gated-gelu", "is_encoder_decoder": True}), encoding="utf-8")
    assert cached_snapshot("acme/tiny-t5") == repo / "snapshots" / "abc123"
    found = lora_modules("acme/tiny-t5")
    assert found.architecture == "seq2seq" and "wi_0" in found.default and "wi" not in found.modules


def test_unknown_model_type_says_so_and_bad_names_fail(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "rwkv", "architectures": ["RwkvForCausalLM"]}),
                                          encoding="utf-8")
    unknown = lora_modules(str(tmp_path))
    assert unknown.modules == () and unknown.default == () and unknown.architecture == "causal"
    assert "'rwkv' is not in the table" in unknown.unknown_reason
    with pytest.raises(BaseModelError, match="unknown base model"):
        lora_modules("no-such-model")
    with pytest.raises(BaseModelError, match="no config.json"):
        lora_modules(str(tmp_path / ".."))  # a folder, not a model folder
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BaseModelError, match="cannot read the config"):
        lora_modules(str(tmp_path))


def test_reading_module_names_loads_no_torch(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}), encoding="utf-8")
    code = (
        "import sys\n"
        "from core.models.lora_modules import lora_modules\n"
        f"names = [lora_modules(n).modules for n in ('tiny-causal', 'tiny-seq2seq', 'smollm2-135m-instruct', {str(tmp_path)!r})]\n"
        "print([m for m in ('torch', 'transformers', 'huggingface_hub') if m in sys.modules], len(names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[] 4"
