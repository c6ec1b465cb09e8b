"""Answering questions with a model in any of its forms (a training output, an exported service
folder, a GGUF file of one), and reading a file of questions to answer (``foremforge predict
--data``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["Answer", "answerer", "question_records"]


Answer = Callable[..., str]  # answer(question, context=NO_CONTEXT) -> the model's answer


def answerer(model_dir: Path, is_service: bool, precision: str | None,
             max_new_tokens: int | None) -> Answer:
    """A function answering a question, asked after an optional :class:`Context` (a system
    message and earlier turns), with the model in ``model_dir`` (a training output, a service
    folder or a GGUF file of one), loaded once."""
    from core.training.formats import NO_CONTEXT, Context

    def messages(question: str, context: Context) -> list[tuple[str, str]]:
        head = [("system", context.system)] if context.system is not None else []
        return head + list(context.history) + [("user", question)]

    if model_dir.suffix == ".gguf" and model_dir.is_file():
        from core.exporter.gguf_predict import gguf_answerer

        return gguf_answerer(model_dir, max_new_tokens)
    if is_service:
        from core.exporter.onnx_predict import load_generator

        generator = load_generator(model_dir, precision)

        def answer_onnx(text: str, context: Context = NO_CONTEXT) -> str:
            if context == NO_CONTEXT:
                return str(generator.generate(text, max_new_tokens))
            return str(generator.complete(messages(text, context), max_new_tokens).text)

        return answer_onnx
    from transformers.utils import logging as hf_logging

    from core.training.predict import generate_answer, load_for_predict

    hf_logging.disable_progress_bar()
    model, tokenizer, fmt = load_for_predict(model_dir)
    return lambda text, context=NO_CONTEXT: generate_answer(model, tokenizer, fmt, text, max_new_tokens, context)


def question_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every record of ``path`` (see :func:`_read_records`), after the whole file was checked:
    a bad line is reported before any answer is spent."""
    for _ in _read_records(path):
        pass
    yield from _read_records(path)


def _read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of every record: a string ``input`` (``output``, the reference, is
    optional here), or a conversation in any dataset format, which may end on the question to
    answer; raises DatasetError naming the line of the first bad one. Lines end at ``\n``
    only: a ``\r`` is JSON whitespace inside a record, as the dataset scan reads it."""
    from core.training.dataset_scan import (
        EMPTY_FILE,
        INVALID_JSON,
        MISSING_FIELD,
        DatasetError,
        check_dataset_path,
    )
    from core.training.formats import FormatProblem, question_row

    check_dataset_path(path)
    found = False
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.decode("utf-8", "replace").removeprefix("\ufeff") if number == 1 else raw.decode("utf-8", "replace")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DatasetError(path, number, INVALID_JSON, f"invalid JSON ({exc})") from None
            if not isinstance(record, dict):
                raise DatasetError(path, number, MISSING_FIELD, 'a record needs a string "input"')
            if not isinstance(record.get("input"), str):
                try:
                    record = question_row(record)
                except FormatProblem as p:
                    raise DatasetError(path, number, p.kind, f'a record needs a string "input" or a conversation: '
                                                             f"{p.message}") from None
            found = True
            yield number, record
    if not found:
        raise DatasetError(path, None, EMPTY_FILE, "the file holds no records")
