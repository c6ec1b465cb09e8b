"""Find a model's snapshot in the local Hugging Face cache with the standard library alone.

``huggingface_hub`` finds the same folder but costs the window ~20 MB (httpx, asyncio, ssl,
yaml, tqdm) for a lookup that reads two small files; the window only needs to know where a
cached ``config.json`` or ``tokenizer.json`` is. Nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["cached_snapshot", "hub_cache_dir"]


def hub_cache_dir() -> Path:
    """The hub cache as ``huggingface_hub`` finds it: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``,
    else ``$XDG_CACHE_HOME/huggingface/hub`` or ``~/.cache/huggingface/hub``."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def cached_snapshot(repo_id: str, needs: str = "config.json") -> Path | None:
    """The snapshot folder of model ``repo_id`` (``owner/name``) that holds ``needs``: the one
    the ``main`` ref points at, else the newest; None when the cache has none."""
    repo = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if ref.is_file():
        try:
            folder = repo / "snapshots" / ref.read_text(encoding="utf-8").strip()
        except OSError:
            folder = None
        if folder is not None and (folder / needs).is_file():
            return folder
    found = [p.parent for p in (repo / "snapshots").glob(f"*/{needs}") if p.is_file()]
    return max(found, key=lambda p: (p / needs).stat().st_mtime) if found else None
