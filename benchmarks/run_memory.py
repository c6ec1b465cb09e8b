"""Peak memory of a whole default training run: batches in parts against whole batches; prints JSON.

The starter model is fine-tuned with the default recipe (``foremforge train --use-lora``: question
variants, training, evaluation) on ``benchmarks/data/harbor_support.jsonl`` (36 support records)
twice, alternating: with whole batches (``TINYFORGE_STEP_TOKENS=0``, what every run did before)
and with today's default, where a CPU run's batch longer than the activation budget trains in
parts (``core/training/step_parts.py``). Each run is its own process; its peak RSS is the
kernel's (``wait4``'s ``ru_maxrss``), so nothing samples beside it. The variants cache is
shared and filled before the first timed run, so both sides train the same pairs.

Goal: a whole default run <= 2 GB (2048 MiB) of peak RSS.

    python benchmarks/run_memory.py                 # a warm-up and two whole runs: about 17 minutes on 2 cores
    python benchmarks/run_memory.py --max-steps 20  # a quicker look at the training's peak
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from measured_child import run_measured

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "harbor_support.jsonl"
GOAL_MIB = 2048
SIDES = {"whole_batches": "0", "ours": ""}  # TINYFORGE_STEP_TOKENS; empty: the run decides


def run(name: str, step_tokens: str, work: Path, max_steps: int) -> dict[str, Any]:
    """One default run in a child process: its peak RSS, wall time and training report."""
    out = work / name
    env = {**os.environ, "TINYFORGE_VARIANTS_CACHE": str(work / "variants-cache"), "HF_HUB_OFFLINE": "1"}
    env.pop("TINYFORGE_STEP_TOKENS", None)
    if step_tokens:
        env["TINYFORGE_STEP_TOKENS"] = step_tokens
    command = [sys.executable, "-m", "core.cli", "train", "--data", str(DATA), "--out", str(out), "--use-lora",
               "--quiet"]
    if max_steps > 0:
        command += ["--max-steps", str(max_steps)]
    seconds, peak_mib = run_measured(command, ROOT, env, name)
    report = json.loads((out / "training_report.json").read_text(encoding="utf-8"))
    evaluation = report.get("evaluation") or {}
    return {
        "peak_rss_mib": peak_mib,
        "wall_s": round(seconds, 1),
        "train_s": report.get("train_seconds"),
        "steps": report.get("global_step"),
        "step_parts": report.get("step_parts"),
        "train_loss": report.get("train_loss"),
        "verdict": evaluation.get("verdict"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=-1, help="shorter runs (default: the recipe's)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tinyforge-run-memory-") as tmp:
        work = Path(tmp)
        run("warm-up", "0", work, 1)  # writes the variants both sides share; not counted
        results = {name: run(name, tokens, work, args.max_steps) for name, tokens in SIDES.items()}
    whole, ours = results["whole_batches"], results["ours"]
    summary = {
        **results,
        "peak_ratio": round(ours["peak_rss_mib"] / whole["peak_rss_mib"], 3),
        "train_time_ratio": round(ours["train_s"] / whole["train_s"], 3) if whole["train_s"] else None,
        "goal_mib": GOAL_MIB,
        "within_goal": ours["peak_rss_mib"] <= GOAL_MIB,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
