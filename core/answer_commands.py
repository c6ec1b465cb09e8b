"""``foremforge predict --data FILE`` and ``foremforge evaluate``: answer or score a whole file.

Both load the model once. ``predict --data`` prints one JSON line per record as soon as it is
answered (``line``, ``input``, ``output``, and ``reference`` when the record has one), so a long
file shows progress and can be piped. ``evaluate`` prints the verdict and the means (or the
whole evaluation with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["add_evaluate_arguments", "answerer", "run_evaluate", "run_predict_file"]


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


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
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


def run_predict_file(answer: Answer, data: Path) -> int:
    """Answer every record of ``data``; one JSON object per line on stdout."""
    from core.training.formats import NO_CONTEXT

    for number, record in _records(data):
        context = record.get("context", NO_CONTEXT)
        row: dict[str, Any] = {"line": number, "input": record["input"],
                               "output": answer(str(record["input"]), context)}
        if "output" in record:
            row["reference"] = record["output"]
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="training output folder (with training_report.json)")
    parser.add_argument("--data", default=None,
                        help="JSONL file to evaluate on (default: the run's held-out records and a training sample)")
    parser.add_argument("--json", action="store_true", help="print the whole evaluation as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run_evaluate(args: argparse.Namespace) -> int:
    from core.console import ConsoleReporter
    from core.events import Cancelled
    from core.sigint import cancel_on_sigint
    from core.training.evaluate import evaluate_output

    reporter = ConsoleReporter(quiet=args.quiet or args.json)
    try:
        with cancel_on_sigint() as token:
            result = evaluate_output(args.model, args.data, on_event=reporter, cancel=token)
    except Cancelled:
        reporter.close()
        print("Cancelled: nothing was written.", file=sys.stderr)
        return 130
    finally:
        reporter.close()
    if args.json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        return 0
    for name, means in result["splits"].items():
        print(f"{name}: {means['n']} records, ROUGE-L fine-tuned {means['tuned_rouge_l']} vs base "
              f"{means['base_rouge_l']}, exact {means['tuned_exact']} vs {means['base_exact']}, "
              f"loss {means['loss']} (perplexity {means['perplexity']})")
    print(result["verdict"])
    if result.get("path"):
        print(f"wrote {result['path']}")
    return 0
