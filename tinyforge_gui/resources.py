"""One place that finds bundled files: icons, stylesheets and example datasets.

Works from a source checkout, an installed wheel (files copied next to the package by the
build) and a PyInstaller bundle (``sys._MEIPASS``). Override with ``TINYFORGE_RESOURCE_ROOT``.
"""

from __future__ import annotations

import logging
import os
import sys
from functools import lru_cache
from pathlib import Path

logger = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def _roots() -> tuple[Path, ...]:
    """Candidate folders that may hold ``resources/`` and ``examples/``, best first."""
    roots: list[Path] = []
    override = os.environ.get("TINYFORGE_RESOURCE_ROOT")
    if override:
        roots.append(Path(override))
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        roots.append(Path(bundle))
    roots.append(_PACKAGE_DIR.parent)  # a source checkout: repo root
    roots.append(_PACKAGE_DIR)  # a wheel that ships resources inside the package
    roots.append(Path(sys.prefix) / "share" / "tinyforge-studio")  # data-files installs
    return tuple(roots)


def find(*parts: str) -> Path | None:
    """The first existing ``root/parts...`` among the known roots, else None."""
    for root in _roots():
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    logger.debug("resource not found: %s", "/".join(parts))
    return None


def resource_path(*parts: str) -> Path | None:
    """A file under ``resources/`` (e.g. ``resource_path("icons", "train.svg")``)."""
    return find("resources", *parts)


def example_path(name: str = "sample_qna.jsonl") -> Path | None:
    """A bundled example dataset under ``examples/``."""
    return find("examples", name)


def icon_path(name: str) -> str:
    """Path of ``resources/icons/<name>.svg`` as a string ("" when missing, Qt shows no icon)."""
    path = resource_path("icons", f"{name}.svg")
    return str(path) if path else ""


def app_icon_path() -> str:
    path = resource_path("tinyforge.svg")
    return str(path) if path else ""
