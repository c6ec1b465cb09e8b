"""``foremforge``: the command line of TinyForge (init, validate, train, export, predict, evaluate, serve)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from core import __version__
from core.failures import print_error

log = logging.getLogger(__name__)

_MAX_PROBLEMS_SHOWN = 20


def _validate(args: argparse.Namespace) -> int:
    from core.console import ConsoleReporter
    from core.events import Cancelled
    from core.sigint import cancel_on_sigint
    from core.training.dataset import ONE_BLAS_THREAD, DatasetError, validate_file
    from core.training.formats import parse_columns

    try:
        columns = parse_columns(args.columns) or None
    except ValueError as exc:
        return print_error(exc)
    if "numpy" not in sys.modules:
        # numpy loads later for the merge (sorts, no BLAS): without OpenBLAS's thread pool, which
        # would spin on the cores the scan workers use. A value the user set is kept.
        os.environ.update({k: v for k, v in ONE_BLAS_THREAD.items() if k not in os.environ})
    reporter = ConsoleReporter(quiet=args.quiet)
    try:
        with cancel_on_sigint() as token:
            # This process has no other thread: the scan may fork its workers, which then skip
            # Python's start-up and imports.
            report = validate_file(args.data, on_event=reporter, cancel=token, columns=columns, fork_workers=True)
    except (DatasetError, OSError) as exc:  # missing, a folder, FIFO, device, link loop, unreadable
        reporter.close()
        return print_error(exc)
    except Cancelled:
        reporter.close()
        print("Cancelled.", file=sys.stderr)
        return 130
    finally:
        reporter.close()
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


def _init(args: argparse.Namespace) -> int:
    from core.scaffold import run_init

    def ask(prompt: str) -> str | None:
        try:
            return input(prompt)
        except EOFError:
            return None

    try:
        root = Path.cwd()
    except FileNotFoundError:
        print("Error: the current folder no longer exists; cd into a folder and run init again", file=sys.stderr)
        return 1
    return run_init(root, args.yes, sys.stdout, sys.stderr, ask)


def _train(args: argparse.Namespace) -> int:
    from core.training.train import run_train_command

    return run_train_command(args)


def _export(args: argparse.Namespace) -> int:
    from core.exporter.builder import run_export_command

    return run_export_command(args)


def _is_service_dir(path: Path) -> bool:
    from core.run_layout import MODEL_METADATA_FILE, ONNX_DIR

    return (path / MODEL_METADATA_FILE).is_file() and (path / ONNX_DIR).is_dir()


def _predict(args: argparse.Namespace) -> int:
    model_dir = Path(args.model).expanduser()
    if not model_dir.exists():
        print(f"Error: model folder not found: {model_dir}", file=sys.stderr)
        return 1
    if (args.input is None) == (args.data is None):
        print("Error: give --input TEXT or --data FILE.jsonl (one of them)", file=sys.stderr)
        return 2
    from core.run_layout import MODEL_METADATA_FILE, MODEL_STUB_FILE

    try:
        is_service = _is_service_dir(model_dir)
        if is_service:
            metadata = json.loads((model_dir / MODEL_METADATA_FILE).read_text(encoding="utf-8"))
            if metadata.get("model_stub", False):
                print(f"Error: {model_dir} holds dry-run placeholders, not a model; train for real first", file=sys.stderr)
                return 1
        elif (model_dir / MODEL_STUB_FILE).is_file():
            print(f"Error: {model_dir} holds a dry-run stub, not a model; train without --dry-run", file=sys.stderr)
            return 1
        from core.answer_commands import answerer, run_predict_file

        answer = answerer(model_dir, is_service, args.precision, args.max_new_tokens)
        if args.data is not None:
            return run_predict_file(answer, Path(args.data))
        if not args.input.strip():
            print("Error: the input text is empty", file=sys.stderr)
            return 1
        print(answer(args.input))
    except (ValueError, OSError) as exc:
        return print_error(exc)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from core.answer_commands import run_evaluate

    try:
        return run_evaluate(args)
    except (ValueError, OSError) as exc:
        return print_error(exc)


def _serve(args: argparse.Namespace) -> int:
    from core.exporter.serve import serve, serve_dry_run

    if not 0 < args.port < 65536:
        print(f"Error: --port must be between 1 and 65535, not {args.port}", file=sys.stderr)
        return 1
    try:
        if args.dry_run:
            print(serve_dry_run(args.service, host=args.host, port=args.port, api_key=args.api_key))
            return 0
        serve(args.service, host=args.host, port=args.port, api_key=args.api_key)
    except (ValueError, OSError) as exc:
        return print_error(exc)
    return 0


class _Parser(argparse.ArgumentParser):
    """No prefix matching (``--mod`` is not ``--model-path``: aliases are explicit), and usage
    errors say ``Error:`` like every other error of the command line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"Error: {message}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``command`` given, only that command's options are built.

    Building ``train``/``export`` options imports their modules, which ``validate`` on a
    large file should not pay for at start-up.
    """
    parser = _Parser(
        prog="foremforge", description="TinyForge: fine-tune small language models on question/answer pairs and conversations."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def subcommand(name: str, summary: str) -> argparse.ArgumentParser:
        """A subcommand whose ``--help`` opens with what it does (its line in the list, as a sentence)."""
        return commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")

    init = subcommand("init", "create a project layout in the current folder (never overwrites)")
    init.add_argument("--yes", "-y", action="store_true", help="create without asking")
    init.set_defaults(handler=_init)

    validate = subcommand("validate", "check a dataset (JSONL, CSV, TSV, JSON) and report every problem")
    validate.add_argument("--data", required=True, help="dataset to check: JSONL (any format in the README), CSV, TSV or a JSON array")
    validate.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    validate.add_argument("--quiet", action="store_true", help="no progress output")
    validate.add_argument("--columns", default=None, metavar="question=Q,answer=A[,system=S]",
                          help="your file's names for the question and answer when they fit no format")
    validate.add_argument("--base-model", default=None, metavar="MODEL",
                          help="also count tokens as this base model sees them (the starter, tiny-causal, a folder)")
    validate.add_argument("--max-length", type=int, default=256, help="token limit to compare against (default 256)")
    validate.set_defaults(handler=_validate)

    train = subcommand("train", "fine-tune a model (or --dry-run to validate and write a stub)")
    if command in (None, "train"):
        from core.training.train import add_train_arguments

        add_train_arguments(train)
    train.set_defaults(handler=_train)

    export = subcommand("export", "build a service folder (and ONNX graphs) from a trained model")
    if command in (None, "export"):
        from core.exporter.builder import add_export_arguments

        add_export_arguments(export)
    export.set_defaults(handler=_export)

    predict = subcommand("predict", "answer one input with a trained model or an exported service")
    predict.add_argument("--model", required=True,
                         help="training output folder, an exported service folder, or a GGUF file of one "
                              "(answered by llama.cpp)")
    predict.add_argument("--input", default=None, help="the question to answer")
    predict.add_argument("--data", default=None, help="answer every record of this JSONL file (one JSON line each)")
    predict.add_argument("--max-new-tokens", type=int, default=None,
                         help="longest answer in tokens (default: the model's, 128 unless set at training)")
    predict.add_argument("--precision", default=None,
                         help="ONNX precision for a service folder: fp32, int8, int8_block, int4_block "
                              "(default: the export's served precision)")
    predict.set_defaults(handler=_predict)

    evaluate = subcommand("evaluate", "score a trained model against references, beside its base model")
    from core.answer_commands import add_evaluate_arguments

    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    serve = subcommand("serve", "run an exported service folder")
    serve.add_argument(
        "--service", "--dir", "-d", dest="service", required=True,
        help="the exported service folder (--dir is TinyForgeAI's spelling)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", "-p", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--api-key", default=None, metavar="KEY",
        help="require 'Authorization: Bearer KEY' on every route but /health (default: $TINYFORGE_API_KEY; "
        "prefer the variable, a command line is visible to other users)",
    )
    serve.add_argument("--dry-run", action="store_true", help="print the uvicorn command and the service folder; start nothing")
    serve.set_defaults(handler=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
