"""Benchmark the real export of the starter model: every precision against torch eager.

Exports smollm2-135m-instruct through ``export_real`` (with ``--train``: after the default
LoRA recipe on examples/customer_support.jsonl, in a child process as the app runs it; with
``--model DIR``: an existing training output; else the base model laid out as a training
output) and prints one JSON object: per candidate (fp32, dynamic int8, block-wise int8 and
int4) its size, median ms per generated token, speed-up over torch eager (same greedy loop
with a KV cache, same run), teacher-forced agreement and greedy match with the trained model,
and whether it passed the gate; which one is served and why; and the goals: the served
precision answers like the fine-tuned torch model on >= 90% of inputs and is >= 1.3x faster
per token than torch eager.

The same export writes the GGUF files (``--no-gguf`` leaves them out): per file its size,
agreement, greedy match and tokens/s in the runtime that checked it (llama.cpp when
llama-cpp-python is installed), and Q8_0's tokens/s over torch eager's on the same parity
inputs; goals: the recommended GGUF answers like torch on >= 90% of inputs, and the GGUF
stage adds <= 90 s to the export.

    python benchmarks/export_latency.py --train [--max-new-tokens 32] [--keep DIR] [--no-gguf]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from core.jsonio import utc_now_iso, write_json_atomic  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "sample_qna.jsonl"
SUPPORT = REPO / "examples" / "customer_support.jsonl"
GOAL_SPEEDUP = 1.3
GOAL_MATCH = 0.9
GOAL_GGUF_SECONDS = 90
GGUF_STAGE = "writing and checking GGUF files"
PROMPTS = [
    "How do I reset my password?",
    "What is your refund policy?",
    "How can I contact support?",
    "Where can I find my order history?",
]


def starter_as_training_output(out: Path) -> Path:
    """Lay the base starter model out as a training output (manifest + model/), no training."""
    from transformers import AutoConfig, AutoTokenizer

    from core.models.prompting import build_prompt_format
    from core.models.starter import STARTER_NAME, ensure_starter_folder

    source = ensure_starter_folder()
    model_dir = out / "model"
    model_dir.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_file():
            (model_dir / item.name).symlink_to(item)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    config = AutoConfig.from_pretrained(str(source))
    fmt = build_prompt_format(tokenizer, "causal", decoder_start_token_id=getattr(config, "decoder_start_token_id", None))
    fmt.save(model_dir)
    write_json_atomic(
        out / "model_manifest.json",
        {
            "model_type": "tinyforge_hf",
            "n_records": 0,
            "created_time": utc_now_iso(),
            "base_model": STARTER_NAME,
            "architecture": "causal",
            "model_dir": "model",
            "notes": "base starter model, not fine-tuned (benchmark)",
        },
    )
    return out


def starter_after_lora(out: Path, steps: int | None) -> Path:
    """The default LoRA recipe on the support dataset (real training), in a child process as
    the app runs it, so training's threads and memory do not skew the timings."""
    from core.training.child_supervisor import run_training_subprocess
    from core.training.config import LoraSettings, TrainConfig

    config = TrainConfig(
        data_path=str(SUPPORT), output_dir=str(out), base_model="smollm2-135m-instruct",
        lora=LoraSettings(enabled=True), max_steps=steps or -1, device="cpu",
    )
    run_training_subprocess(config)
    return out


def summarize(report: dict[str, Any], seconds: float, source: str) -> dict[str, Any]:
    """Every candidate in one table, the served one, and the goals."""
    latency = report["latency"]
    torch_ms = latency["torch"]["median_ms_per_token"]
    served = report["served_precision"]
    table = {
        precision: {
            "size_mb": round((row.get("size_bytes") or 0) / 1e6, 1),
            "ms_per_token": row.get("ms_per_token"),
            "speedup_vs_torch": row.get("speedup_vs_torch"),
            "teacher_forced_agreement": row.get("teacher_forced_agreement"),
            "greedy_match": row.get("generation_match_rate"),
            "passed_gate": row.get("passed"),
            "served": row.get("served"),
        }
        for precision, row in report["candidates"].items()
    }
    served_row = report["candidates"][served]
    match = 1.0 if served == "fp32" else float(served_row.get("generation_match_rate") or 0.0)
    speedup = float(served_row.get("speedup_vs_torch") or 0.0)
    return {
        "model": report.get("base_model"),
        "source": source,
        "parity_inputs": f"{report['parity']['n_inputs']} ({report['parity']['inputs_source']})",
        "torch_eager_ms_per_token": torch_ms,
        "candidates": table,
        "served_precision": served,
        "served_reason": report.get("served_reason"),
        "gate": report.get("gate"),
        "threads": {"torch": latency.get("torch_threads"), "cpu_count": os.cpu_count()},
        "self_test_passed": report["self_test"].get("passed"),
        "goals": {
            f"served_answers_like_torch_on_{GOAL_MATCH:.0%}_of_inputs": match >= GOAL_MATCH,
            f"served_at_least_{GOAL_SPEEDUP:g}x_faster_than_torch": speedup >= GOAL_SPEEDUP,
        },
        "warnings": report.get("warnings", []),
        "export_seconds": round(seconds, 1),
        "durations_s": report.get("durations_s"),
    }


def summarize_gguf(report: dict[str, Any], summary: dict[str, Any]) -> None:
    """The GGUF files beside the ONNX candidates: Q8_0 against torch eager, and the goals."""
    gguf = report.get("gguf")
    if not gguf:
        return
    files = {row["file"]: {key: row.get(key) for key in ("size_mb", "agreement", "exact_match", "tokens_per_s",
                                                         "passed", "recommended")} for row in gguf["files"]}
    torch_tokens_per_s = 1000.0 / summary["torch_eager_ms_per_token"]
    q8 = next((row for row in gguf["files"] if row.get("file_type") == "Q8_0"), None)
    q8_speed = (q8 or {}).get("tokens_per_s")
    ratio = round(q8_speed / torch_tokens_per_s, 2) if q8_speed else None
    recommended = next((row for row in gguf["files"] if row.get("recommended")), None)
    stage_s = (report.get("durations_s") or {}).get(GGUF_STAGE)
    summary["gguf"] = {
        "checked_in": gguf.get("checked_in"),
        "files": files,
        "recommended": gguf.get("recommended"),
        "torch_eager_tokens_per_s": round(torch_tokens_per_s, 1),
        "q8_0_tokens_per_s": q8_speed,
        "q8_0_speedup_vs_torch": ratio,
        "tokenizer_same_ids": (gguf.get("tokenization") or {}).get("passed"),
        "stage_seconds": stage_s,
    }
    match = float((recommended or {}).get("exact_match") or 0.0)
    summary["goals"][f"gguf_recommended_answers_like_torch_on_{GOAL_MATCH:.0%}_of_inputs"] = match >= GOAL_MATCH
    summary["goals"][f"gguf_adds_at_most_{GOAL_GGUF_SECONDS}_s"] = stage_s is not None and stage_s <= GOAL_GGUF_SECONDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true",
                        help="export after the default LoRA recipe on customer_support.jsonl")
    parser.add_argument("--train-steps", type=int, default=None, help="cap the training steps (default: the recipe's)")
    parser.add_argument("--model", type=Path, default=None, help="export this training output instead")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto")
    parser.add_argument("--keep", type=Path, default=None, help="keep the service folder here")
    parser.add_argument("--no-gguf", dest="gguf", action="store_false", help="leave the GGUF files out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from core.exporter.onnx_export import export_real

    work = Path(tempfile.mkdtemp(prefix="tinyforge-bench-"))
    try:
        trained = work / "trained"
        if args.model is not None:
            trained = args.model
            source = f"training output {args.model}"
        elif args.train:
            starter_after_lora(trained, args.train_steps)
            source = f"LoRA recipe on {SUPPORT.name}" + (f", {args.train_steps} steps" if args.train_steps else "")
        else:
            starter_as_training_output(trained)
            source = "base starter model (no fine-tune)"
        service = args.keep or (work / "service")
        started = time.perf_counter()
        report = export_real(
            trained, service, overwrite=args.keep is not None,
            parity_inputs=None if (args.train or args.model) else PROMPTS,
            max_new_tokens=args.max_new_tokens, exporter=args.exporter, gguf=args.gguf,
        ).to_json()  # as export_report.json holds it
        table = summarize(report, time.perf_counter() - started, source)
        summarize_gguf(report, table)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(table, indent=2))
    return 0 if all(table["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
