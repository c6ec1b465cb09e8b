"""``foremforge validate``: check a dataset and report every problem (``--json``: the report)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from typing import Any

from core.console import CommandConsole, run_command

SUMMARY = "check a dataset (JSONL, CSV, TSV, JSON) and report every problem"

_MAX_PROBLEMS_SHOWN = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset to check: JSONL (any format in the README), CSV, TSV or a JSON array")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--columns", default=None, metavar="question=Q,answer=A[,system=S]",
                        help="your file's names for the question and answer when they fit no format")
    parser.add_argument("--base-model", default=None, metavar="MODEL",
                        help="also count tokens as this base model sees them (the starter, tiny-causal, a folder)")
    parser.add_argument("--max-length", type=int, default=256, help="token limit to compare against (default 256)")


def run(args: argparse.Namespace) -> int:
    """Exit 0 for a valid dataset, 1 for an invalid one or one that cannot be read."""
    return run_command(partial(_validate, args), cancelled="Cancelled.")


def _validate(args: argparse.Namespace, console: CommandConsole) -> int:
    from core.training.dataset import ONE_BLAS_THREAD, validate_file
    from core.training.formats import parse_columns

    columns = parse_columns(args.columns) or None
    if "numpy" not in sys.modules:
        # numpy loads later for the merge (sorts, no BLAS): without OpenBLAS's thread pool, which
        # would spin on the cores the scan workers use. A value the user set is kept.
        os.environ.update({k: v for k, v in ONE_BLAS_THREAD.items() if k not in os.environ})
    reporter = console.progress(quiet=args.quiet)
    with console.cancellable() as token:
        # This process has no other thread: the scan may fork its workers, which then skip
        # Python's start-up and imports.
        report = validate_file(args.data, on_event=reporter, cancel=token, columns=columns, fork_workers=True)
    console.close()
    if args.json:
        sys.stdout.write(json.dumps(report.model_dump(mode="json"), ensure_ascii=False) + "\n")
        return 0 if report.valid else 1
    out = sys.stdout
    out.write(
        f"{args.data}: {report.n_records} records, avg input {report.avg_input_len:.2f} tokens, "
        f"avg output {report.avg_output_len:.2f} tokens, {report.file_size} bytes, sha256 {report.sha256[:12]}\n"
    )
    for line in _format_summary(args, report, columns):
        out.write(f"  {line}\n")
    for problem in report.problems[:_MAX_PROBLEMS_SHOWN]:
        out.write(f"  line {problem.line}: {problem.message}\n" if problem.line else f"  {problem.message}\n")
    if report.n_problems > _MAX_PROBLEMS_SHOWN:
        out.write(f"  ... and {report.n_problems - _MAX_PROBLEMS_SHOWN} more problems (use --json for the list)\n")
    if report.n_warnings:
        kinds: dict[str, int] = {}
        for warning in report.warnings:
            kinds[warning.kind] = kinds.get(warning.kind, 0) + 1
        summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        kept = f"; the first {len(report.warnings)} are listed by kind" if len(report.warnings) < report.n_warnings else ""
        out.write(f"  {report.n_warnings} warnings ({summary}{kept}; use --json for the list)\n")
    problems = "problem" if report.n_problems == 1 else "problems"
    out.write("valid\n" if report.valid else f"invalid: {report.n_problems} {problems}\n")
    return 0 if report.valid else 1


def _format_summary(args: argparse.Namespace, report: Any, columns: dict[str, str] | None) -> list[str]:
    """The detected format in words, and with ``--base-model`` the token lengths the model sees."""
    from core.training.dataset_preview import format_lines

    lines = format_lines(report, columns)
    if not args.base_model or not report.valid:
        return lines
    from core.training.dataset import iter_conversations
    from core.training.dataset_preview import preview_format, token_stats

    found = preview_format(args.base_model, args.max_length)
    if found is None:
        return lines + [f"token lengths: the tokenizer of {args.base_model!r} is not on this machine yet "
                        "(the starter model is prepared by its first training)"]
    tokenizer, fmt = found
    stats = token_stats((c for _, _, c in iter_conversations(args.data, columns)), tokenizer, fmt, args.max_length)
    return lines + ([stats.line()] if stats else [])
