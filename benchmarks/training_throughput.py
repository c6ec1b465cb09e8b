"""Training throughput: our trainer against a plain HF Trainer script, in one run; prints JSON.

Same model (``tiny-causal``, and ``bench-causal-3m``: the same architecture widened so compute
dominates; same seed), same records, same hyper-parameters. The baseline is
the obvious script: every example padded to ``max_length``, default collator, random sampling.
Ours pads each batch to its longest example and groups examples of similar length. Both count
"tokens" the same way: real (non-pad) tokens of the training examples times the epochs,
divided by the wall time of ``trainer.train()``. Goal: at least 1.2x.

The starter-model part (a few LoRA steps of SmolLM2-135M-Instruct on the sample data) runs in
a child process so its peak RSS is its own.

    python benchmarks/training_throughput.py            # everything
    python benchmarks/training_throughput.py --no-starter
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SAMPLE = ROOT / "examples" / "sample_qna.jsonl"
GOAL = 1.2


def make_records(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Question/answer pairs of varied length (like real data), built from the sample."""
    base = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    records = []
    for i in range(n):
        rec = base[i % len(base)]
        reps = rng.choice([1, 1, 1, 2, 2, 3])
        records.append({"input": f"{rec['input']} (case {i})", "output": " ".join([rec["output"]] * reps)})
    return records


def build_bench_model(folder: Path, seed: int = 0) -> Path:
    """``tiny-causal`` widened (about 3.5M parameters) so compute, not per-step overhead, dominates."""
    import torch
    from transformers import AutoModelForCausalLM

    from core.models.tiny import build_byte_tokenizer, tiny_config

    config = tiny_config("tiny-causal")
    config.hidden_size, config.intermediate_size, config.num_hidden_layers = 256, 688, 4
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    build_byte_tokenizer("causal").save_pretrained(folder)
    return folder


def _load(base: str, seed: int) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.models.tiny import build_tiny_model

    if base == "tiny-causal":
        return build_tiny_model(base, seed=seed)
    return AutoModelForCausalLM.from_pretrained(base, use_safetensors=True), AutoTokenizer.from_pretrained(base)


def run_ours(data: Path, out: Path, hp: dict[str, Any], base: str) -> dict[str, Any]:
    from core.models.prompting import build_prompt_format, encode_example
    from core.models.tiny import build_byte_tokenizer
    from core.training.config import TrainConfig
    from core.training.hf_train import run_real_training

    config = TrainConfig(data_path=str(data), output_dir=str(out), base_model=base,
                         epochs=hp["epochs"], learning_rate=hp["lr"], batch_size=hp["batch_size"],
                         max_length=hp["max_length"], seed=hp["seed"], eval_split=0.0, device="cpu",
                         logging_steps=hp["logging_steps"])
    report = run_real_training(config)
    tokenizer = build_byte_tokenizer("causal")
    fmt = build_prompt_format(tokenizer, "causal", hp["max_length"])
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    tokens = sum(len(encode_example(tokenizer, fmt, r["input"], r["output"], hp["max_length"]).input_ids)
                 for r in records) * hp["epochs"]
    seconds = report["train_seconds"]
    return {"seconds": round(seconds, 3), "tokens": tokens, "tokens_per_second": round(tokens / seconds, 1),
            "final_loss": _last_loss(report["log_history"])}


def run_baseline(data: Path, out: Path, hp: dict[str, Any], base: str) -> dict[str, Any]:
    """The plain script: static padding to max_length, default collator, default sampler."""
    import torch
    import transformers
    from transformers import PrinterCallback, Trainer, TrainingArguments, default_data_collator

    transformers.set_seed(hp["seed"])
    model, tokenizer = _load(base, hp["seed"])
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    texts = [f"Question: {r['input']}\nAnswer: {r['output']}{tokenizer.eos_token}" for r in records]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=hp["max_length"])
    rows = []
    for ids, mask in zip(enc["input_ids"], enc["attention_mask"], strict=True):
        labels = [t if m else -100 for t, m in zip(ids, mask, strict=True)]
        rows.append({"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask),
                     "labels": torch.tensor(labels)})
    args = TrainingArguments(output_dir=str(out), num_train_epochs=hp["epochs"], learning_rate=hp["lr"],
                             per_device_train_batch_size=hp["batch_size"], logging_steps=hp["logging_steps"],
                             save_strategy="no", report_to="none", disable_tqdm=True, seed=hp["seed"],
                             use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=default_data_collator)
    trainer.remove_callback(PrinterCallback)  # keep stdout for the JSON result
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokens = int(sum(sum(mask) for mask in enc["attention_mask"])) * hp["epochs"]
    return {"seconds": round(seconds, 3), "tokens": tokens, "tokens_per_second": round(tokens / seconds, 1),
            "final_loss": _last_loss(trainer.state.log_history)}


def _last_loss(history: list[dict[str, Any]]) -> float | None:
    losses = [h["loss"] for h in history if "loss" in h]
    return round(float(losses[-1]), 4) if losses else None


def run_starter(out: Path, steps: int) -> dict[str, Any]:
    """A few LoRA steps of the starter model on the sample data (run in its own process)."""
    import resource

    from core.training.config import LoraSettings, TrainConfig
    from core.training.hf_train import run_real_training
    from core.training.predict import predict

    start = time.perf_counter()
    config = TrainConfig(data_path=str(SAMPLE), output_dir=str(out), lora=LoraSettings(enabled=True),
                         max_steps=steps, learning_rate=2e-4, device="cpu", seed=0)
    report = run_real_training(config)
    answer = predict(out, "How do I reset my password?", max_new_tokens=24)
    return {
        "base_model": report["base_model"],
        "steps": report["global_step"],
        "train_seconds": report["train_seconds"],
        "tokens_per_second": report["tokens_per_second"],
        "total_seconds_incl_load_and_save": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "sample_answer": answer,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--starter-steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both tiny runs")
    parser.add_argument("--no-starter", action="store_true")
    parser.add_argument("--starter-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tinyforge-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.starter_only:
            print(json.dumps(run_starter(tmp / "starter", args.starter_steps)))
            return 0
        import torch

        torch.set_num_threads(args.threads)
        hp = {"threads": args.threads, "epochs": args.epochs, "lr": 1e-3, "batch_size": args.batch_size,
              "max_length": args.max_length, "seed": 0, "logging_steps": 10}
        data = tmp / "bench.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in make_records(args.records)), encoding="utf-8")
        bench_model = build_bench_model(tmp / "bench-causal-3m")
        result: dict[str, Any] = {
            "benchmark": "training_throughput",
            "records": args.records,
            "hyperparameters": hp,
            "token_count": "real (non-pad) tokens of the training examples x epochs",
            "goal": GOAL,
            "models": {},
        }
        for label, base in (("tiny-causal", "tiny-causal"), ("bench-causal-3m", str(bench_model))):
            baseline = run_baseline(data, tmp / f"baseline-{label}", hp, base)
            ours = run_ours(data, tmp / f"ours-{label}", hp, base)
            speedup = round(ours["tokens_per_second"] / baseline["tokens_per_second"], 2)
            result["models"][label] = {"baseline_static_padding": baseline, "ours_dynamic_padding_grouped": ours,
                                       "speedup": speedup, "meets_goal": speedup >= GOAL}
        if not args.no_starter:
            proc = subprocess.run([sys.executable, __file__, "--starter-only", "--starter-steps",
                                   str(args.starter_steps)], capture_output=True, text=True, cwd=ROOT)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            result["starter_lora"] = json.loads(lines[-1]) if proc.returncode == 0 and lines else {
                "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
