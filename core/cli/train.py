"""``foremforge train``: fine-tune a model, or ``--dry-run`` to check the data and write a stub.

Also ``python core/training/train.py`` and ``python -m core.training.train`` (TinyForgeAI's
script, :func:`script_main`): TinyForgeAI's flags (``--data``, ``--out``, ``--dry-run``,
``--use-lora``, kept for its users) plus the options of a real run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from core.console import CommandConsole, run_command

if TYPE_CHECKING:
    from core.training.config import TrainConfig

SUMMARY = "fine-tune a model (or --dry-run to validate and write a stub)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """TinyForgeAI's flags (kept for its users) plus the options of a real run; each default is
    the config field's own (written once, in core.options_defaults)."""
    from core.run_layout import MODEL_STUB_FILE
    from core.training.config import DEFAULT_BASE_MODEL, LoraSettings, TrainConfig

    def default(name: str, model: type[Any] = TrainConfig) -> Any:
        return model.model_fields[name].default

    def choices(name: str) -> list[str]:
        """The values a ``Literal`` field of ``TrainConfig`` accepts, in order."""
        return list(get_args(TrainConfig.model_fields[name].annotation))

    parser.add_argument("--data", required=True, help="training data: JSONL ({input, output}, messages, "
                        "conversations, prompt/completion or instruction rows), CSV, TSV or a JSON array")
    parser.add_argument("--out", required=True, help="output folder for the model artifacts")
    parser.add_argument("--dry-run", action="store_true", help=f"validate the data and write {MODEL_STUB_FILE} only")
    parser.add_argument("--use-lora", action="store_true", help="train a LoRA adapter (default: full fine-tune)")
    lora = parser.add_argument_group("LoRA")
    lora.add_argument("--lora-r", type=int, default=default("r", LoraSettings),
                      help="LoRA rank (default: the recipe's 16 for a real run, TinyForgeAI's 8 for a dry run)")
    lora.add_argument("--lora-alpha", type=float, default=default("alpha", LoraSettings),
                      help="LoRA scaling alpha (default: 2 x rank for a real run, TinyForgeAI's 16 for a dry run)")
    lora.add_argument("--lora-dropout", type=float, default=default("dropout", LoraSettings),
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
    real.add_argument("--base-model", default=default("base_model"), help=f"model name, hub id or folder (default {DEFAULT_BASE_MODEL}; also tiny-causal, tiny-seq2seq)")
    real.add_argument("--epochs", type=float, default=default("epochs"),
                      help="passes over the data (default: the recipe's, at least 40 optimizer steps in all)")
    real.add_argument("--max-steps", type=int, default=default("max_steps"),
                      help="stop after this many optimiser steps (-1: use --epochs)")
    real.add_argument("--lr", type=float, default=default("learning_rate"),
                      help="learning rate (default: the recipe's, 2e-3 with LoRA, 1e-4 for full fine-tuning)")
    real.add_argument("--batch-size", type=int, default=default("batch_size"))
    real.add_argument("--grad-accum", type=int, default=default("grad_accum"), help="gradient accumulation steps")
    real.add_argument("--max-length", type=int, default=default("max_length"), help="maximum tokens per record")
    real.add_argument("--eval-split", type=float, default=default("eval_split"),
                      help="held-out share: with variants, of each question's phrasings (default: one phrasing "
                           "per question); with --no-variants, of the records (default 0.1 with >= 10 records)")
    variants = real.add_mutually_exclusive_group()
    variants.add_argument("--variants", type=int, default=default("variants"), metavar="N",
                          help="rephrasings a local model writes for each question before training, besides cheap "
                               "surface variants (default: the recipe's 4; 0 is --no-variants)")
    variants.add_argument("--no-variants", dest="variants", action="store_const", const=0,
                          help="train on your records only and hold out whole records for the evaluation")
    real.add_argument("--variant-generator", default=default("variant_generator"), metavar="MODEL",
                      help="the model that writes the rephrasings (default: the base model)")
    real.add_argument("--eval-data", default=default("eval_data_path"), metavar="FILE",
                      help="your own evaluation JSONL (questions in your customers' words), scored after training")
    real.add_argument("--loss-on", choices=choices("loss_on"), default=default("loss_on"),
                      help="conversations: train every assistant answer (all, default) or only the last")
    real.add_argument("--seed", type=int, default=default("seed"))
    real.add_argument("--device", choices=choices("device"), default=default("device"))
    real.add_argument("--precision", choices=choices("precision"), default=default("precision"))
    real.add_argument("--resume", action="store_true", help="continue from the checkpoint of a cancelled run in --out")
    parser.add_argument("--quiet", action="store_true", help="print only warnings and errors")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from core.training.config import LoraSettings, TrainConfig
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


def run(args: argparse.Namespace) -> int:
    """Run ``train`` from parsed arguments: a bad option exits 2, a user error is one clear
    line and exit 1, any other failure one line saying training failed."""
    return run_command(partial(_train, args), cancelled="Cancelled: nothing was written.", errors=(Exception,),
                       doing="training failed", bad_input=(ValueError, RuntimeError, OSError))


def _train(args: argparse.Namespace, console: CommandConsole) -> int:
    from pydantic import ValidationError

    from core.events import Log
    from core.failures import EXIT_CANCELLED
    from core.run_layout import EVALUATION_FILE
    from core.training.run import run_training

    reporter = console.progress(quiet=args.quiet)
    try:
        config = config_from_args(args)
    except (ValidationError, ValueError) as exc:
        reporter(Log(f"invalid option: {_first_error(exc)}", level="error"))
        return 2
    with console.cancellable() as token:
        result = run_training(config.data_path, config.output_dir, config=config, on_event=reporter, cancel=token)
    console.close()
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
        return EXIT_CANCELLED
    if status == "failed":
        return 1
    if result.get("evaluation_cancelled"):
        print(f"Cancelled during the evaluation: the trained model was saved in {config.output_dir}, without "
              f"{EVALUATION_FILE}; `foremforge evaluate --model {config.output_dir}` computes it.", file=sys.stderr)
        return EXIT_CANCELLED
    if config.dry_run and not args.quiet:
        _print_dry_run_summary(config, result)
    return 0


def _print_dry_run_summary(config: TrainConfig, stub: dict[str, Any]) -> None:
    """The result of a dry run on stdout (the lines TinyForgeAI's ``train`` printed)."""
    from core.run_layout import MODEL_STUB_FILE

    print("dry-run complete: the data was checked and a stub artifact written; no model was trained")
    print(f"  n_records: {stub.get('n_records')}")
    print(f"  artifact: {Path(config.output_dir).expanduser().absolute() / MODEL_STUB_FILE}")
    if stub.get("lora_applied"):
        print(f"  LoRA: {stub.get('lora_config')}")


def _first_error(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err.get("loc", ()))
        return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))
    return str(exc)


def build_parser() -> argparse.ArgumentParser:
    """The parser of TinyForgeAI's script ``train.py`` (argparse's own usage errors, as before)."""
    parser = argparse.ArgumentParser(
        prog="train.py", description="Fine-tune a small language model on a JSONL dataset (or dry-run it).",
        allow_abbrev=False,
    )
    add_arguments(parser)
    return parser


def script_main(argv: Sequence[str] | None = None) -> int:
    """``python core/training/train.py`` and ``python -m core.training.train``."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run(build_parser().parse_args(argv))
