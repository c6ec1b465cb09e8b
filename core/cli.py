"""``foremforge``: the command line of TinyForge (validate, train, export, predict, serve)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from core import __version__

log = logging.getLogger(__name__)

_MAX_PROBLEMS_SHOWN = 20


def _validate(args: argparse.Namespace) -> int:
    from core.console import ConsoleReporter
    from core.events import Cancelled
    from core.sigint import cancel_on_sigint
    from core.training.dataset import DatasetError, validate_file

    reporter = ConsoleReporter(quiet=args.quiet)
    try:
        with cancel_on_sigint() as token:
            report = validate_file(args.data, on_event=reporter, cancel=token)
    except FileNotFoundError as exc:
        reporter.close()
        print(f"error: file not found: {exc.filename or exc}", file=sys.stderr)
        return 1
    except (DatasetError, OSError) as exc:  # a folder, FIFO, device, link loop, unreadable file
        reporter.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
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
    for problem in report.problems[:_MAX_PROBLEMS_SHOWN]:
        out.write(f"  line {problem.line}: {problem.message}\n")
    if report.n_problems > _MAX_PROBLEMS_SHOWN:
        out.write(f"  ... and {report.n_problems - _MAX_PROBLEMS_SHOWN} more problems (use --json for the list)\n")
    if report.n_warnings:
        kinds: dict[str, int] = {}
        for warning in report.warnings:
            kinds[warning.kind] = kinds.get(warning.kind, 0) + 1
        summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        out.write(f"  {report.n_warnings} warnings ({summary})\n")
    out.write("valid\n" if report.valid else f"invalid: {report.n_problems} problems\n")
    return 0 if report.valid else 1


def _train(args: argparse.Namespace) -> int:
    from core.training.train import run_train_command

    return run_train_command(args)


def _export(args: argparse.Namespace) -> int:
    from core.exporter.builder import run_export_command

    return run_export_command(args)


def _is_service_dir(path: Path) -> bool:
    return (path / "model_metadata.json").is_file() and (path / "onnx").is_dir()


def _predict(args: argparse.Namespace) -> int:
    model_dir = Path(args.model).expanduser()
    if not model_dir.exists():
        print(f"error: model folder not found: {model_dir}", file=sys.stderr)
        return 1
    try:
        if _is_service_dir(model_dir):
            metadata = json.loads((model_dir / "model_metadata.json").read_text(encoding="utf-8"))
            if metadata.get("model_stub", False):
                print(f"error: {model_dir} holds dry-run placeholders, not a model; train for real first", file=sys.stderr)
                return 1
            from core.exporter.onnx_predict import predict_onnx

            answer = predict_onnx(model_dir, args.input, precision=args.precision or "int8", max_new_tokens=args.max_new_tokens)
        else:
            if (model_dir / "model_stub.json").is_file():
                print(f"error: {model_dir} holds a dry-run stub, not a model; train without --dry-run", file=sys.stderr)
                return 1
            from transformers.utils import logging as hf_logging

            from core.training.predict import predict

            hf_logging.disable_progress_bar()  # keep stdout/stderr to the answer and real errors
            answer = predict(model_dir, args.input, max_new_tokens=args.max_new_tokens)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(answer)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from core.exporter.serve import serve

    try:
        serve(args.service, host=args.host, port=args.port)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``command`` given, only that command's options are built.

    Building ``train``/``export`` options imports their modules, which ``validate`` on a
    large file should not pay for at start-up.
    """
    parser = argparse.ArgumentParser(
        prog="foremforge", description="TinyForge: fine-tune small language models on JSONL question/answer pairs."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a JSONL dataset and report every problem")
    validate.add_argument("--data", required=True, help="JSONL dataset to check")
    validate.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    validate.add_argument("--quiet", action="store_true", help="no progress output")
    validate.set_defaults(handler=_validate)

    train = commands.add_parser("train", help="fine-tune a model (or --dry-run to validate and write a stub)")
    if command in (None, "train"):
        from core.training.train import add_train_arguments

        add_train_arguments(train)
    train.set_defaults(handler=_train)

    export = commands.add_parser("export", help="build a service folder (and ONNX graphs) from a trained model")
    if command in (None, "export"):
        from core.exporter.builder import add_export_arguments

        add_export_arguments(export)
    export.set_defaults(handler=_export)

    predict = commands.add_parser("predict", help="answer one input with a trained model or an exported service")
    predict.add_argument("--model", required=True, help="training output folder, or an exported service folder")
    predict.add_argument("--input", required=True, help="the question to answer")
    predict.add_argument("--max-new-tokens", type=int, default=128, help="longest answer in tokens (default 128)")
    predict.add_argument("--precision", choices=["int8", "fp32"], default=None, help="ONNX precision for a service folder (default int8)")
    predict.set_defaults(handler=_predict)

    serve = commands.add_parser("serve", help="run an exported service folder")
    serve.add_argument("--service", required=True, help="the exported service folder")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
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
