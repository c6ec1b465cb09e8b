"""``foremforge predict``: answer one input (``--input``) or every record of a file (``--data``)
with a trained model, an exported service folder or a GGUF file of one.

``--data`` loads the model once and prints one JSON line per record as soon as it is answered
(``line``, ``input``, ``output``, and ``reference`` when the record has one), so a long file
shows progress and can be piped.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.console import CommandConsole, run_command

if TYPE_CHECKING:
    from core.answering import Answer

SUMMARY = "answer one input with a trained model or an exported service"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="training output folder, an exported service folder, or a GGUF file of one "
                             "(answered by llama.cpp)")
    parser.add_argument("--input", default=None, help="the question to answer")
    parser.add_argument("--data", default=None, help="answer every record of this JSONL file (one JSON line each)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="longest answer in tokens (default: the model's, 128 unless set at training)")
    parser.add_argument("--precision", default=None,
                        help="ONNX precision for a service folder: fp32, int8, int8_block, int4_block "
                             "(default: the export's served precision)")


def run(args: argparse.Namespace) -> int:
    # Answering cannot stop at a step: Ctrl-C interrupts at once (no cancel token).
    return run_command(partial(_predict, args))


def _predict(args: argparse.Namespace, console: CommandConsole) -> int:
    model_dir = Path(args.model).expanduser()
    if not model_dir.exists():
        print(f"Error: model folder not found: {model_dir}", file=sys.stderr)
        return 1
    if (args.input is None) == (args.data is None):
        print("Error: give --input TEXT or --data FILE.jsonl (one of them)", file=sys.stderr)
        return 2
    from core.answering import answerer
    from core.run_layout import MODEL_METADATA_FILE, MODEL_STUB_FILE

    is_service = _is_service_dir(model_dir)
    if is_service:
        metadata = json.loads((model_dir / MODEL_METADATA_FILE).read_text(encoding="utf-8"))
        if metadata.get("model_stub", False):
            print(f"Error: {model_dir} holds dry-run placeholders, not a model; train for real first", file=sys.stderr)
            return 1
    elif (model_dir / MODEL_STUB_FILE).is_file():
        print(f"Error: {model_dir} holds a dry-run stub, not a model; train without --dry-run", file=sys.stderr)
        return 1
    answer = answerer(model_dir, is_service, args.precision, args.max_new_tokens)
    if args.data is not None:
        return _predict_file(answer, Path(args.data))
    if not args.input.strip():
        print("Error: the input text is empty", file=sys.stderr)
        return 1
    print(answer(args.input))
    return 0


def _is_service_dir(path: Path) -> bool:
    from core.run_layout import MODEL_METADATA_FILE, ONNX_DIR

    return (path / MODEL_METADATA_FILE).is_file() and (path / ONNX_DIR).is_dir()


def _predict_file(answer: Answer, data: Path) -> int:
    """Answer every record of ``data``; one JSON object per line on stdout."""
    from core.answering import question_records
    from core.training.formats import NO_CONTEXT

    for number, record in question_records(data):
        context = record.get("context", NO_CONTEXT)
        row: dict[str, Any] = {"line": number, "input": record["input"],
                               "output": answer(str(record["input"]), context)}
        if "output" in record:
            row["reference"] = record["output"]
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return 0
