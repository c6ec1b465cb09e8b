"""How long the real export takes, stage by stage, and its peak memory: before and after, one run.

Exports one trained starter model three times, each in a fresh child process so memory and
threads are measured alone:

- **before**: the export code of ``--baseline-rev`` (default: the commit before the export-speed
  work), checked out into a temp folder with ``git archive``;
- **first**: today's code with an empty ONNX graph cache (the first export of a base model);
- **cached**: today's code again, with the graph cache the first export filled.

Prints each stage's seconds (from the export's own ``durations_s``), the total, the export
process's peak RSS (``VmHWM``), the ratios and the goals: <= 120 s the first time, <= 60 s with a
cached graph, peak RSS <= 2.5 GB. ``--gguf`` adds the GGUF files to every export (they count
in the same budget). The model: ``--model DIR`` (a training output), else the default LoRA recipe
on benchmarks/data/harbor_support.jsonl, trained here first (not timed).

    python benchmarks/export_time.py [--model DIR] [--gguf] [--baseline-rev REV | --no-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / "data" / "harbor_support.jsonl"
BASELINE_REV = "5d74264"  # main before the export-speed work (issue 24)
GOAL_FIRST_S, GOAL_CACHED_S, GOAL_RSS_GB = 120.0, 60.0, 2.5


def _child(args: argparse.Namespace) -> int:
    """One export with the code under ``--code-root``; its figures as JSON into ``--result``."""
    sys.path.insert(0, str(args.code_root))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import inspect

    from core.events import Progress
    from core.exporter.onnx_export import export_real

    options: dict[str, Any] = {"gguf": args.gguf}
    if "graph_cache" in inspect.signature(export_real).parameters:
        options["graph_cache"] = args.graph_cache
    sampler = _StagePeaks()

    def on_event(event: Any) -> None:
        if isinstance(event, Progress) and event.stage == "export":
            sampler.stage = event.message

    started = time.perf_counter()
    threading.Thread(target=sampler.run, daemon=True).start()
    exported = export_real(args.model, args.service, overwrite=True, on_event=on_event, **options)
    seconds = time.perf_counter() - started
    # The report as export_report.json holds it (older commits returned that dict, newer the ExportReport).
    report = exported if isinstance(exported, dict) else exported.to_json()
    result = {
        "seconds": round(seconds, 1),
        "stages": report.get("durations_s", {}),
        "stage_peak_rss_gb": {stage: round(peak / 2**30, 2) for stage, peak in sampler.peaks.items()},
        "peak_rss_gb": round(_peak_rss_bytes() / 2**30, 2),
        "served": report.get("served_precision"),
        "fp32_passed": (report.get("parity", {}).get("fp32") or {}).get("passed"),
        "self_test_passed": (report.get("self_test") or {}).get("passed"),
        "graph": report.get("graph_source"),
        "gguf_recommended": (report.get("gguf") or {}).get("recommended"),
        "code": str(Path(sys.modules["core"].__file__).parent),
    }
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")
    return 0


class _StagePeaks:
    """The highest resident set seen during each stage (sampled every 50 ms)."""

    def __init__(self) -> None:
        self.stage = "starting"
        self.peaks: dict[str, int] = {}

    def run(self) -> None:
        while True:
            rss = _rss_bytes()
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), rss)
            time.sleep(0.05)


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _peak_rss_bytes() -> int:
    """This process's peak resident set (``VmHWM``), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run_child(code_root: Path, model: Path, service: Path, cache: Path, gguf: bool, label: str) -> dict[str, Any]:
    result = service.parent / f"{label}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--code-root", str(code_root),
               "--model", str(model), "--service", str(service), "--graph-cache", str(cache),
               "--result", str(result)] + (["--gguf"] if gguf else [])
    print(f"export ({label}) ...", file=sys.stderr, flush=True)
    subprocess.run(command, check=True, cwd=str(REPO))  # relative data paths of the run resolve alike
    return json.loads(result.read_text(encoding="utf-8"))


def _baseline_code(rev: str, into: Path) -> Path:
    """The ``core`` package as it was at ``rev`` (``git archive``), under ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "core"], check=True, capture_output=True).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _train(out: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from core.training.child_supervisor import run_training_subprocess
    from core.training.config import LoraSettings, TrainConfig

    print(f"training the starter on {DATA.name} (default LoRA recipe) ...", file=sys.stderr, flush=True)
    run_training_subprocess(TrainConfig(data_path=str(DATA), output_dir=str(out), base_model="smollm2-135m-instruct",
                                        lora=LoraSettings(enabled=True), device="cpu"))
    return out


def _table(runs: dict[str, dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for run in runs.values():
        names += [n for n in run["stages"] if n not in names]
    width = max(len(n) for n in names + ["peak RSS (GB)"])
    lines = [f"{'stage':<{width}}  " + "  ".join(f"{label:>8}" for label in runs)]
    for name in names:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{run['stages'].get(name, 0.0):8.1f}" for run in runs.values()))
    lines.append(f"{'total (s)':<{width}}  " + "  ".join(f"{run['seconds']:8.1f}" for run in runs.values()))
    lines.append(f"{'peak RSS (GB)':<{width}}  " + "  ".join(f"{run['peak_rss_gb']:8.2f}" for run in runs.values()))
    lines.append("peak RSS by stage (GB)")
    for name in names:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{run['stage_peak_rss_gb'].get(name, 0.0):8.2f}"
                                                   for run in runs.values()))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a training output to export (default: train one first)")
    parser.add_argument("--gguf", action="store_true", help="also write and check the GGUF files")
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help="the code to compare against (a git revision)")
    parser.add_argument("--no-baseline", action="store_true", help="only today's code (first and cached)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--code-root", type=Path, default=REPO, help=argparse.SUPPRESS)
    parser.add_argument("--service", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--graph-cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)

    work = Path(tempfile.mkdtemp(prefix="tinyforge-export-time-"))
    try:
        model = args.model.resolve() if args.model else _train(work / "trained")
        cache = work / "graph-cache"
        runs: dict[str, dict[str, Any]] = {}
        if not args.no_baseline:
            code = _baseline_code(args.baseline_rev, work / "baseline")
            runs["before"] = _run_child(code, model, work / "service-before", cache, args.gguf, "before")
        runs["first"] = _run_child(REPO, model, work / "service-first", cache, args.gguf, "first")
        runs["cached"] = _run_child(REPO, model, work / "service-cached", cache, args.gguf, "cached")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(_table(runs)))
    goals = {
        f"first export <= {GOAL_FIRST_S:g} s": runs["first"]["seconds"] <= GOAL_FIRST_S,
        f"cached-graph export <= {GOAL_CACHED_S:g} s": runs["cached"]["seconds"] <= GOAL_CACHED_S,
        f"peak RSS <= {GOAL_RSS_GB:g} GB": max(r["peak_rss_gb"] for k, r in runs.items() if k != "before") <= GOAL_RSS_GB,
        "served precision and self-test still pass": all(r["fp32_passed"] and r["self_test_passed"] for r in runs.values()),
    }
    summary: dict[str, Any] = {"gguf": args.gguf, "runs": runs, "goals": goals}
    if "before" in runs:
        summary["speedup_first"] = round(runs["before"]["seconds"] / runs["first"]["seconds"], 2)
        summary["speedup_cached"] = round(runs["before"]["seconds"] / runs["cached"]["seconds"], 2)
        summary["rss_ratio_cached"] = round(runs["cached"]["peak_rss_gb"] / runs["before"]["peak_rss_gb"], 2)
    print(json.dumps(summary, indent=2))
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
