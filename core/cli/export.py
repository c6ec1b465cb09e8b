"""``foremforge export``: build a service folder (and ONNX graphs, GGUF files) from a trained model.

Also ``python core/exporter/builder.py`` and ``python -m core.exporter.builder`` (TinyForgeAI's
script, :func:`script_main`): the same flags (``--model`` and ``--out`` are TinyForgeAI's
spellings), the same run and the same summary. The building is
:func:`core.exporter.service_build.build_service`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from core.console import CommandConsole, run_command

if TYPE_CHECKING:
    from core.run_layout import ExportReport, ModelMetadata

SUMMARY = "build a service folder (and ONNX graphs) from a trained model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.run_layout import MODEL_STUB_FILE

    # --model and --out: TinyForgeAI's spellings, accepted on purpose.
    parser.add_argument(
        "--model-path", "--model", dest="model_path", required=True,
        help=f"{MODEL_STUB_FILE}, a training output folder or a run folder",
    )
    parser.add_argument("--output-dir", "--out", dest="output_dir", required=True, help="service folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--export-onnx", action="store_true", help="export ONNX graphs (placeholders for a dry run)")
    parser.add_argument("--quantize", choices=["int8", "none"], default="int8", help="int8 dynamic quantization (default int8)")
    parser.add_argument("--gguf", action="store_true",
                        help="also write gguf/: F16, Q8_0 and Q4_0 files for llama.cpp and Ollama, a Modelfile, "
                             "each checked against the trained model (Llama-family models)")
    parser.add_argument("--quiet", action="store_true", help="print only warnings and errors")


def run(args: argparse.Namespace) -> int:
    """Run ``export`` from parsed arguments on the terminal (:func:`core.console.run_command`)."""
    return run_command(partial(_export, args), cancelled="Cancelled: the output folder was not changed.")


def _export(args: argparse.Namespace, console: CommandConsole) -> int:
    from core.exporter.service_build import build_service

    reporter = console.progress(quiet=args.quiet)
    with console.cancellable() as token:
        report = build_service(
            args.model_path,
            args.output_dir,
            overwrite=args.overwrite,
            export_onnx=args.export_onnx,
            quantize=args.quantize,
            on_event=reporter,
            cancel=token,
            gguf=args.gguf,
        )
    console.close()
    if not args.quiet:
        _print_summary(Path(args.output_dir).expanduser().absolute(), report)
    return 0


def _print_summary(target: Path, report: ExportReport | ModelMetadata) -> None:
    """Where the service went, on stdout (the lines TinyForgeAI's ``export`` printed)."""
    from core.run_layout import MODEL_METADATA_FILE, ExportReport

    print("Export summary:")
    print(f"  microservice: {target}")
    print(f"  metadata: {target / MODEL_METADATA_FILE}")
    if not isinstance(report, ExportReport):
        return
    print(f"  onnx_path: {report.onnx_path}")
    print(f"  quantized_path: {report.quantized_path}")
    if report.served_precision:
        print(f"  served_precision: {report.served_precision} ({report.served_reason or ''})")
    if report.gguf:
        gguf = report.gguf
        print(f"  gguf: {gguf.folder} (recommended {gguf.recommended}, checked in {gguf.checked_in})")


def build_parser() -> argparse.ArgumentParser:
    """The parser of TinyForgeAI's script ``builder.py`` (argparse's own usage errors, as before)."""
    parser = argparse.ArgumentParser(
        prog="builder.py", description="Build a service folder from a trained model.", allow_abbrev=False
    )
    add_arguments(parser)
    return parser


def script_main(argv: Sequence[str] | None = None) -> int:
    """``python core/exporter/builder.py`` and ``python -m core.exporter.builder``."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run(build_parser().parse_args(argv))
