"""The trainer entry point: a dry run (checks the data, writes a placeholder), and real
fine-tuning with transformers + PEFT.

Run as ``python core/training/train.py``, ``python -m core.training.train`` or
``foremforge train`` with TinyForgeAI's flags (``--data``, ``--out``, ``--dry-run``,
``--use-lora``; kept so its users' commands still work) plus the options of a real run.
"""

from __future__ import annotations

import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, get_args  # noqa: E402

from pydantic import ValidationError  # noqa: E402

from core.events import (  # noqa: E402
    ArtifactWritten,
    Cancelled,
    CancelToken,
    EventCallback,
    Finished,
    Log,
    StageStarted,
    noop,
)
from core.failures import print_error  # noqa: E402
from core.jsonio import utc_now_iso, write_json_atomic  # noqa: E402
from core.run_layout import EVALUATION_FILE, MODEL_STUB_FILE  # noqa: E402
from core.staging import locked_output  # noqa: E402
from core.training.config import DEFAULT_BASE_MODEL, LoraSettings, TrainConfig  # noqa: E402
from core.training.dataset import DatasetError, validate_file  # noqa: E402
from core.training.outputs import check_output_dir  # noqa: E402
from core.training.peft_adapter import apply_lora, get_default_lora_config, validate_lora_config  # noqa: E402

log = logging.getLogger(__name__)

STUB_FILENAME = MODEL_STUB_FILE  # core.run_layout owns the name

__all__ = ["STUB_FILENAME", "add_train_arguments", "config_from_args", "main", "run_training"]


def run_training(
    data_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    dry_run: bool = False,
    use_lora: bool = False,
    lora_config: dict[str, Any] | None = None,
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
    config: TrainConfig | None = None,
) -> dict[str, Any]:
    """Train on ``data_path`` and write the result under ``output_dir``.

    A dry run validates the whole dataset and writes the placeholder ``model_stub.json``
    (returned). A real run fine-tunes with transformers + PEFT and returns its training
    report. Bad data raises ``DatasetError`` before anything is written.
    """
    emit = on_event or noop
    if config is None:
        lora = LoraSettings(enabled=use_lora)
        if lora_config:
            clean = validate_lora_config(lora_config)
            lora = LoraSettings(enabled=use_lora, r=clean["r"], alpha=clean["alpha"], target_modules=clean["target_modules"])
        config = TrainConfig(data_path=str(data_path), output_dir=str(output_dir), dry_run=dry_run, lora=lora)
    if not config.dry_run:
        return _run_real(config, emit, cancel)
    check_output_dir(config.output_dir)  # before the scan: a bad --out fails at once
    return _run_dry(config, emit, cancel)


def _check_dataset(config: TrainConfig, emit: EventCallback, cancel: CancelToken | None) -> dict[str, Any]:
    """Scan the whole dataset; raise the first problem as a ``DatasetError``."""
    emit(StageStarted("validate", f"checking {config.data_path}"))
    report = validate_file(config.data_path, on_event=emit, cancel=cancel, columns=config.columns)
    if not report.valid:
        raise DatasetError.from_report(config.data_path, report)
    summary = {
        "n_records": report.n_records,
        "avg_input_len": report.avg_input_len,
        "avg_output_len": report.avg_output_len,
    }
    message = (
        f"Dataset summary: {summary['n_records']} records, average input {summary['avg_input_len']:.2f} "
        f"tokens, average output {summary['avg_output_len']:.2f} tokens"
    )
    log.info(message)
    emit(Log(message))
    for warning in report.warnings[:20]:
        emit(Log(f"line {warning.line}: {warning.message}", level="warning"))
    return summary


def _run_dry(config: TrainConfig, emit: EventCallback, cancel: CancelToken | None) -> dict[str, Any]:
    summary = _check_dataset(config, emit, cancel)
    if cancel is not None:
        cancel.raise_if_cancelled()
    emit(StageStarted("train", "dry run: writing the stub artifact"))
    stub: dict[str, Any] = {
        "model_type": "tinyforge_stub",
        "n_records": summary["n_records"],
        "created_time": utc_now_iso(),
        "notes": "dry-run artifact",
    }
    if config.lora.enabled:
        stub = apply_lora(stub, _seed_lora_config(config.lora))
        emit(Log(f"LoRA applied (dry run): {stub['lora_config']}"))
    out = Path(config.output_dir)
    with locked_output(out):  # a concurrent run into the same folder is refused
        _refuse_a_real_output(out)
        path = write_json_atomic(out / STUB_FILENAME, stub)
    log.info("Wrote %s", path)
    emit(ArtifactWritten(str(path)))
    emit(Finished("completed", {"model_path": str(path), **stub}))
    return stub


def _refuse_a_real_output(out: Path) -> None:
    """A dry run never writes its placeholder beside a real trained model: ``predict`` would
    then refuse the model and ``export`` serve it, each taking the folder for another thing."""
    from core.run_layout import MODEL_MANIFEST_FILE, TRAINING_REPORT_FILE
    from core.training.errors import TrainingError

    real = [name for name in (MODEL_MANIFEST_FILE, TRAINING_REPORT_FILE) if (out / name).exists()]
    if real:
        raise TrainingError(f"{out} holds a real training output ({real[0]}); a dry run would mix its "
                            "placeholder into it: choose another --out")


def _seed_lora_config(lora: LoraSettings) -> dict[str, Any]:
    """A dry run's ``lora_config`` (TinyForgeAI's shape; its defaults fill what is unset);
    alpha stays an int when it is whole."""
    seed = get_default_lora_config()
    alpha_value = lora.alpha if lora.alpha is not None else seed["alpha"]
    alpha: float | int = int(alpha_value) if float(alpha_value).is_integer() else alpha_value
    return {"r": lora.r or seed["r"], "alpha": alpha, "target_modules": list(lora.target_modules or seed["target_modules"])}


def _run_real(config: TrainConfig, emit: EventCallback, cancel: CancelToken | None) -> dict[str, Any]:
    try:
        from core.training.hf_train import run_real_training
    except ImportError as exc:  # pragma: no cover - only before the real trainer exists
        raise RuntimeError(
            "Real training is not available in this build; use --dry-run to validate and write the stub."
        ) from exc
    return run_real_training(config, on_event=emit, cancel=cancel)


# --------------------------------------------------------------------------- command line


def _default(name: str, model: type[Any] = TrainConfig) -> Any:
    """A flag's default: the config field's own (written once, in core.train_config_defaults)."""
    return model.model_fields[name].default


def _choices(name: str) -> list[str]:
    """The values a ``Literal`` field of ``TrainConfig`` accepts, in order."""
    return list(get_args(TrainConfig.model_fields[name].annotation))


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """TinyForgeAI's flags (kept for its users) plus the options of a real run (shared by
    ``foremforge train``)."""
    parser.add_argument("--data", required=True, help="training data: JSONL ({input, output}, messages, "
                        "conversations, prompt/completion or instruction rows), CSV, TSV or a JSON array")
    parser.add_argument("--out", required=True, help="output folder for the model artifacts")
    parser.add_argument("--dry-run", action="store_true", help=f"validate the data and write {MODEL_STUB_FILE} only")
    parser.add_argument("--use-lora", action="store_true", help="train a LoRA adapter (default: full fine-tune)")
    lora = parser.add_argument_group("LoRA")
    lora.add_argument("--lora-r", type=int, default=_default("r", LoraSettings),
                      help="LoRA rank (default: the recipe's 16 for a real run, TinyForgeAI's 8 for a dry run)")
    lora.add_argument("--lora-alpha", type=float, default=_default("alpha", LoraSettings),
                      help="LoRA scaling alpha (default: 2 x rank for a real run, TinyForgeAI's 16 for a dry run)")
    lora.add_argument("--lora-dropout", type=float, default=_default("dropout", LoraSettings),
                      help="LoRA dropout (default: the recipe's 0; dropout costs a third of a CPU training step)")
    lora.add_argument(
        "--lora-targets",
        default=None,
        help="comma-separated module names (default: q,v in a dry run; every linear projection in a real run)",
    )
    parser.add_argument("--columns", default=None, metavar="question=Q,answer=A[,system=S]",
                        help="your file's names for the question and answer (CSV/TSV headers or JSON keys) when "
                             "they fit none of the formats listed in the README")
    real = parser.add_argument_group("real training")
    real.add_argument("--base-model", default=_default("base_model"), help=f"model name, hub id or folder (default {DEFAULT_BASE_MODEL}; also tiny-causal, tiny-seq2seq)")
    real.add_argument("--epochs", type=float, default=_default("epochs"),
                      help="passes over the data (default: the recipe's, at least 40 optimizer steps in all)")
    real.add_argument("--max-steps", type=int, default=_default("max_steps"),
                      help="stop after this many optimiser steps (-1: use --epochs)")
    real.add_argument("--lr", type=float, default=_default("learning_rate"),
                      help="learning rate (default: the recipe's, 2e-3 with LoRA, 1e-4 for full fine-tuning)")
    real.add_argument("--batch-size", type=int, default=_default("batch_size"))
    real.add_argument("--grad-accum", type=int, default=_default("grad_accum"), help="gradient accumulation steps")
    real.add_argument("--max-length", type=int, default=_default("max_length"), help="maximum tokens per record")
    real.add_argument("--eval-split", type=float, default=_default("eval_split"),
                      help="held-out share: with variants, of each question's phrasings (default: one phrasing "
                           "per question); with --no-variants, of the records (default 0.1 with >= 10 records)")
    variants = real.add_mutually_exclusive_group()
    variants.add_argument("--variants", type=int, default=_default("variants"), metavar="N",
                          help="rephrasings a local model writes for each question before training, besides cheap "
                               "surface variants (default: the recipe's 4; 0 is --no-variants)")
    variants.add_argument("--no-variants", dest="variants", action="store_const", const=0,
                          help="train on your records only and hold out whole records for the evaluation")
    real.add_argument("--variant-generator", default=_default("variant_generator"), metavar="MODEL",
                      help="the model that writes the rephrasings (default: the base model)")
    real.add_argument("--eval-data", default=_default("eval_data_path"), metavar="FILE",
                      help="your own evaluation JSONL (questions in your customers' words), scored after training")
    real.add_argument("--loss-on", choices=_choices("loss_on"), default=_default("loss_on"),
                      help="conversations: train every assistant answer (all, default) or only the last")
    real.add_argument("--seed", type=int, default=_default("seed"))
    real.add_argument("--device", choices=_choices("device"), default=_default("device"))
    real.add_argument("--precision", choices=_choices("precision"), default=_default("precision"))
    real.add_argument("--resume", action="store_true", help="continue from the checkpoint of a cancelled run in --out")
    parser.add_argument("--quiet", action="store_true", help="print only warnings and errors")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from core.training.formats import parse_columns
    targets = None
    if args.lora_targets is not None:
        targets = [name.strip() for name in args.lora_targets.split(",") if name.strip()]
        if not targets:
            raise ValueError("--lora-targets must name at least one module, e.g. q,v")
    elif args.dry_run:
        targets = ["q", "v"]
    lora = LoraSettings(
        enabled=args.use_lora, r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout, target_modules=targets
    )
    return TrainConfig(
        data_path=args.data,
        output_dir=args.out,
        dry_run=args.dry_run,
        base_model=args.base_model,
        lora=lora,
        epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        eval_split=args.eval_split,
        variants=args.variants,
        variant_generator=args.variant_generator,
        eval_data_path=args.eval_data,
        columns=parse_columns(args.columns) or None,
        loss_on=args.loss_on,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        resume=args.resume,
    )


def run_train_command(args: argparse.Namespace) -> int:
    """Run ``train`` from parsed arguments; user errors become one clear line and exit 1."""
    from core.console import ConsoleReporter
    from core.sigint import cancel_on_sigint

    reporter = ConsoleReporter(quiet=args.quiet)
    try:
        config = config_from_args(args)
    except (ValidationError, ValueError) as exc:
        reporter(Log(f"invalid option: {_first_error(exc)}", level="error"))
        return 2
    try:
        with cancel_on_sigint() as token:
            result = run_training(config.data_path, config.output_dir, config=config, on_event=reporter, cancel=token)
    except Cancelled:
        reporter.close()
        print("Cancelled: nothing was written.", file=sys.stderr)
        return 130
    except Exception as exc:  # the boundary: core raised, the one error line is said here
        reporter.close()
        return print_error(exc, doing="training failed", bad_input=(ValueError, RuntimeError, OSError))
    finally:
        reporter.close()
    status = result.get("status", "completed")
    if status == "cancelled":
        # Only a cancel after a training step leaves a checkpoint; say what actually happened.
        checkpoint = result.get("checkpoint")
        if checkpoint:
            print(f"Cancelled: a checkpoint was saved in {Path(config.output_dir) / checkpoint}; "
                  "continue with --resume.", file=sys.stderr)
        elif "global_step" in result:
            print(f"Cancelled at step {result['global_step']}: no checkpoint could be saved, so --resume "
                  f"cannot continue; the report is in {config.output_dir}.", file=sys.stderr)
        else:
            print("Cancelled before the first training step: nothing was written.", file=sys.stderr)
        return 130
    if status == "failed":
        return 1
    if result.get("evaluation_cancelled"):
        print(f"Cancelled during the evaluation: the trained model was saved in {config.output_dir}, without "
              f"{EVALUATION_FILE}; `foremforge evaluate --model {config.output_dir}` computes it.", file=sys.stderr)
        return 130
    if config.dry_run and not args.quiet:
        _print_dry_run_summary(config, result)
    return 0


def _print_dry_run_summary(config: TrainConfig, stub: dict[str, Any]) -> None:
    """The result of a dry run on stdout (the lines TinyForgeAI's ``train`` printed)."""
    print("dry-run complete: the data was checked and a stub artifact written; no model was trained")
    print(f"  n_records: {stub.get('n_records')}")
    print(f"  artifact: {Path(config.output_dir).expanduser().absolute() / STUB_FILENAME}")
    if stub.get("lora_applied"):
        print(f"  LoRA: {stub.get('lora_config')}")


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err.get("loc", ()))
        return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))
    return str(exc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py", description="Fine-tune a small language model on a JSONL dataset (or dry-run it).",
        allow_abbrev=False,
    )
    add_train_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return run_train_command(build_parser().parse_args(argv))
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
