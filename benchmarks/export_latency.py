"""Benchmark the real export of the starter model: sizes and per-token latency, torch vs ONNX.

Exports smollm2-135m-instruct (the base starter model, laid out as a training output; or, with
``--train``, after a short LoRA run on the sample dataset) through ``export_real`` and prints
one JSON object: graph sizes, median milliseconds per generated token for torch eager, ONNX
fp32 and ONNX int8 (all measured in the same run, same greedy loop with a KV cache), the ratios
and whether the goals hold (int8 >= 2x faster per token than torch, int8 <= 0.35x fp32 size).

    python benchmarks/export_latency.py [--train] [--max-new-tokens 32] [--keep DIR]
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
GOAL_SPEEDUP = 2.0
GOAL_SIZE_RATIO = 0.35
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


def starter_after_lora(out: Path, steps: int) -> Path:
    """A short LoRA run of the starter model on the sample dataset (real training), in a child
    process as the app runs it, so training's threads and memory do not skew the timings."""
    from core.training.child import run_training_subprocess
    from core.training.config import LoraSettings, TrainConfig

    config = TrainConfig(
        data_path=str(SAMPLE), output_dir=str(out), base_model="smollm2-135m-instruct",
        lora=LoraSettings(enabled=True), max_steps=steps, batch_size=3, device="cpu", precision="fp32",
    )
    run_training_subprocess(config)
    return out


def summarize(report: dict[str, Any], seconds: float, source: str) -> dict[str, Any]:
    """The latency/size table and the goals."""
    latency, sizes = report["latency"], report["sizes"]
    torch_ms = latency["torch"]["median_ms_per_token"]
    fp32_ms = latency["onnx_fp32"]["median_ms_per_token"]
    int8_ms = latency.get("onnx_int8", {}).get("median_ms_per_token")
    speedup = latency.get("speedup_int8_vs_torch")
    ratio = sizes.get("int8_to_fp32_ratio")
    return {
        "model": report.get("base_model"),
        "source": source,
        "exporter": report.get("exporter"),
        "sizes_mb": {
            "onnx_fp32": round(sizes["fp32_bytes"] / 1e6, 1),
            "onnx_int8": round(sizes.get("int8_bytes", 0) / 1e6, 1),
            "int8_to_fp32_ratio": ratio,
        },
        "ms_per_token": {"torch_eager": torch_ms, "onnx_fp32": fp32_ms, "onnx_int8": int8_ms},
        "prefill_ms": {
            "torch_eager": latency["torch"]["median_prefill_ms"],
            "onnx_fp32": latency["onnx_fp32"]["median_prefill_ms"],
            "onnx_int8": latency.get("onnx_int8", {}).get("median_prefill_ms"),
        },
        "speedup_vs_torch": {"onnx_fp32": latency.get("speedup_fp32_vs_torch"), "onnx_int8": speedup},
        "tokens_timed_per_backend": latency["torch"]["n_tokens_timed"],
        "threads": {"torch": latency.get("torch_threads"), "cpu_count": os.cpu_count()},
        "parity": {
            "fp32_max_abs_logit_diff": report["parity"]["fp32"]["max_abs_logit_diff"],
            "fp32_generation_match_rate": report["parity"]["fp32"]["generation_match_rate"],
            "int8_generation_match_rate": report["parity"].get("int8", {}).get("generation_match_rate"),
            "int8_mean_token_agreement": report["parity"].get("int8", {}).get("mean_token_agreement"),
        },
        "self_test_passed": report["self_test"].get("passed"),
        "goals": {
            f"int8_at_least_{GOAL_SPEEDUP:g}x_faster_than_torch": bool(speedup and speedup >= GOAL_SPEEDUP),
            f"int8_at_most_{GOAL_SIZE_RATIO:g}x_fp32_size": bool(ratio and ratio <= GOAL_SIZE_RATIO),
        },
        "warnings": report.get("warnings", []),
        "export_seconds": round(seconds, 1),
        "durations_s": report.get("durations_s"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="export after a short LoRA run instead of the base model")
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--exporter", choices=["auto", "dynamo", "torchscript"], default="auto")
    parser.add_argument("--keep", type=Path, default=None, help="keep the service folder here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from core.exporter.onnx_export import export_real

    work = Path(tempfile.mkdtemp(prefix="tinyforge-bench-"))
    try:
        trained = work / "trained"
        if args.train:
            starter_after_lora(trained, args.train_steps)
            source = f"LoRA fine-tune, {args.train_steps} steps on {SAMPLE.name}"
        else:
            starter_as_training_output(trained)
            source = "base starter model (no fine-tune)"
        service = args.keep or (work / "service")
        started = time.perf_counter()
        report = export_real(
            trained, service, overwrite=args.keep is not None, parity_inputs=PROMPTS,
            max_new_tokens=args.max_new_tokens, exporter=args.exporter,
        )
        table = summarize(report, time.perf_counter() - started, source)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(table, indent=2))
    return 0 if all(table["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
