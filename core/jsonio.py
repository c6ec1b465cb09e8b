"""Atomic file writes: a crash never leaves half an artifact behind."""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to a temp file beside ``path`` and rename it into place.

    The file gets the usual mode (0644 under umask 022), not ``mkstemp``'s 0600, so a service
    folder copied to another user (a container) can still read it.
    """
    target = Path(path)
    created = _make_parents(target.parent)
    try:
        fd, tmp = _create_temp(target)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        _remove_if_empty(created)  # a full disk leaves no empty folders behind either
        if exc.filename is None:  # write() and fsync() name no file: say which one it was
            raise OSError(exc.errno, f"{exc.strerror or exc} (writing {target})", str(target)) from exc
        raise
    return target


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, deepest first."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()  # only an empty folder goes
        except OSError:
            return


def _create_temp(target: Path) -> tuple[int, str]:
    """A new temp file beside ``target``, created with 0666 minus the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Pretty-print ``data`` as JSON into ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def utc_now_iso() -> str:
    """The current time as ISO 8601 UTC with offset, e.g. ``2025-01-15T12:00:00+00:00``."""
    from datetime import datetime

    return datetime.now(UTC).isoformat(timespec="seconds")
