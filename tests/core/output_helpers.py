"""Helpers for the output-safety tests: folder snapshots, a dry-run stub, a failing rename."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest


def snapshot(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under ``folder``: relative path -> (mode, bytes of a file)."""
    return {
        p.relative_to(folder).as_posix(): (stat.S_IMODE(p.lstat().st_mode), p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def write_stub(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stub = folder / "model_stub.json"
    stub.write_text(json.dumps({"model_type": "tinyforge_stub", "n_records": 3}), encoding="utf-8")
    return stub


def hidden_beside(folder: Path) -> list[str]:
    """Hidden entries beside ``folder`` that belong to it (staging folders, lock files)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def fail_rename_into(monkeypatch: pytest.MonkeyPatch, target: Path) -> Callable[[], int]:
    """Make renaming a staging folder (``*.partial``) onto ``target`` fail like a full disk;
    every other rename works. Returns a counter of the failures."""
    real = os.rename
    failures = [0]

    def rename(src: os.PathLike[str] | str, dst: os.PathLike[str] | str, *args: object, **kwargs: object) -> None:
        if Path(dst) == target and str(src).endswith(".partial"):
            failures[0] += 1
            raise OSError(errno.ENOSPC, "No space left on device (injected)", str(dst))
        real(src, dst, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", rename)
    return lambda: failures[0]


def usual_modes() -> tuple[int, int]:
    """(file mode, folder mode) a plain open()/mkdir() gives under the current umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask, 0o777 & ~mask
