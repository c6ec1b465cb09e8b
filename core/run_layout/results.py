"""What every result file of a run shares: its base model, how it is written and how it is read.

:class:`_Result` (every field optional, unknown keys kept) is the base of the file models;
:func:`write_result` writes the fields a writer set, in the model's order. :func:`read_object`
and :func:`parse` turn a missing, unreadable, non-JSON or ill-shaped file into one
:class:`RunFileError`; :func:`_tolerant` reads an input model nested in a result file
(``run.json``'s options, the training report's config) without failing the whole file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, WrapValidator

from core.jsonio import write_json_atomic

logger = logging.getLogger(__name__)


class RunFileError(ValueError):
    """A run folder's file is missing, unreadable, not JSON, or not what it should hold.

    A ``ValueError``, so callers that caught the JSON errors of a plain ``json.load`` still do.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class _Result(BaseModel):
    """A result file's model: every field optional, unknown keys kept (older and newer files)."""

    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict[str, Any]:
        """What the file holds: the fields set (by the writer, or read), in JSON types."""
        return self.model_dump(mode="json", exclude_unset=True)


def write_result(path: str | os.PathLike[str], result: _Result) -> Path:
    """Write ``result`` (:meth:`_Result.to_json`) to ``path`` atomically."""
    return write_json_atomic(path, result.to_json())


def _known_fields(model: type[BaseModel], data: Any) -> Any:
    """``data`` without the keys ``model`` does not know (recursively): an older or newer
    run.json's options still read with today's strict input models."""
    if not isinstance(data, dict):
        return data
    known: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in data:
            continue
        value = data[name]
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            value = _known_fields(info.annotation, value)
        known[name] = value
    return known


def _tolerant(model: type[BaseModel]) -> WrapValidator:
    """Validate a nested input model leniently: unknown keys dropped, and a value that still
    does not validate reads as None (the rest of the file stays readable)."""

    def validate(value: Any, handler: Callable[[Any], Any]) -> Any:
        if value is None or isinstance(value, model):
            return value
        try:
            return handler(_known_fields(model, value))
        except ValidationError as exc:
            logger.warning("ignoring %s that does not validate: %s", model.__name__, _first_error(exc))
            return None

    return WrapValidator(validate)


# --------------------------------------------------------------------------- readers


M = TypeVar("M", bound=BaseModel)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err.get("loc", ()))
    return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))


def read_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`RunFileError` when it is missing, unreadable or not one."""
    target = Path(path)
    try:
        with open(target, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as exc:
        raise RunFileError(target, "no such file") from exc
    except IsADirectoryError as exc:
        raise RunFileError(target, "a folder, not a file") from exc
    except OSError as exc:
        raise RunFileError(target, f"cannot read it ({(exc.strerror or type(exc).__name__).lower()})") from exc
    except UnicodeDecodeError as exc:
        raise RunFileError(target, "not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise RunFileError(target, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    if not isinstance(data, dict):
        raise RunFileError(target, f"not a JSON object (a {type(data).__name__})")
    return data


def parse(model: type[M], data: Any, path: str | os.PathLike[str]) -> M:
    """``data`` (read from ``path``) as ``model``; :class:`RunFileError` when it does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RunFileError(path, f"not a valid {model.__name__}: {_first_error(exc)}") from exc


def _read(model: type[M], path: Path) -> M:
    return parse(model, read_object(path), path)


def _first_file(*candidates: Path) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)
