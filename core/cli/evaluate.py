"""``foremforge evaluate``: score a trained model against references, beside its base model.

Prints the means of each split and the verdict (``--json``: the whole evaluation).
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial

from core.console import CommandConsole, run_command

SUMMARY = "score a trained model against references, beside its base model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.run_layout import TRAINING_REPORT_FILE

    parser.add_argument("--model", required=True, help=f"training output folder (with {TRAINING_REPORT_FILE})")
    parser.add_argument("--data", default=None,
                        help="JSONL file to evaluate on (default: the run's held-out records and a training sample)")
    parser.add_argument("--json", action="store_true", help="print the whole evaluation as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    return run_command(partial(_evaluate, args), cancelled="Cancelled: nothing was written.")


def _evaluate(args: argparse.Namespace, console: CommandConsole) -> int:
    from core.training.evaluate import evaluate_folder

    reporter = console.progress(quiet=args.quiet or args.json)
    with console.cancellable() as token:
        result = evaluate_folder(args.model, args.data, on_event=reporter, cancel=token)
    console.close()
    if args.json:  # the file's content, and where it was written
        content = result.to_json() | ({"path": str(result.path)} if result.path is not None else {})
        sys.stdout.write(json.dumps(content, ensure_ascii=False) + "\n")
        return 0
    for name, means in result.splits.items():
        print(f"{name}: {means.n} records, ROUGE-L fine-tuned {means.tuned_rouge_l} vs base "
              f"{means.base_rouge_l}, exact {means.tuned_exact} vs {means.base_exact}, "
              f"loss {means.loss} (perplexity {means.perplexity})")
    print(result.verdict)
    if result.path is not None:
        print(f"wrote {result.path}")
    return 0
