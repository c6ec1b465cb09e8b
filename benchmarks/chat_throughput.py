"""Chat-format validation throughput: ``foremforge validate`` on a ``messages`` file against the
seed's reference loop on an ``input``/``output`` file of the same size, in the same run.

Generates two JSONL files of the same size (~360 MB) from the same texts: TinyForgeAI's
``{"input", "output"}`` rows (500k), and OpenAI/TRL ``messages`` rows (a system message on a
third of them, an earlier user/assistant exchange on a quarter; longer rows, so fewer of them).
Times, best of ``--repeat``, interleaved:

- the baseline: the seed's ``summarize_dataset(stream_jsonl(...))`` loop on the input/output
  file (``json.loads`` per line, the key check, whitespace token counts);
- ours: the real CLI ``python -m core.cli validate --data F --json`` on the messages file, as a
  subprocess: its wall time from a plain run, its peak RSS (process tree) from a second run
  sampled with psutil (sampling every 10 ms takes CPU the scan needs on a small machine); and
  ``validate_file`` in this process.

Prints a JSON summary with the ratio and pass/fail per goal (>= 2x, peak RSS <= 200 MB).
Run: ``python benchmarks/chat_throughput.py [--records N] [--repeat R] [--dir D]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.dataset_throughput import _text, reference_summary, run_subprocess_measured  # noqa: E402

GOAL_SPEEDUP = 2.0
GOAL_RSS_MB = 200.0


def _rows(n_records: int, seed: int) -> Any:
    """(question, answer) texts like the input/output benchmark's."""
    rng = random.Random(seed)
    for i in range(n_records):
        unicode = rng.random() < 0.3
        question = f"#{i} " + _text(rng, rng.randint(20, 60), unicode)
        yield rng, question, _text(rng, rng.randint(40, 100), unicode and rng.random() < 0.8)


def _write(path: Path, lines: Any, limit_bytes: int | None = None) -> None:
    """Write JSONL lines; stop at ``limit_bytes`` (files of equal size, whatever the row shape)."""
    size = 0
    with open(path, "wb") as f:
        for line in lines:
            f.write(line + b"\n")
            size += len(line) + 1
            if limit_bytes is not None and size >= limit_bytes:
                break


def generate(io_path: Path, chat_path: Path, n_records: int, seed: int = 1) -> None:
    """The input/output file, then a messages file of the same size from the same texts (a row
    of it is longer, so it holds fewer rows)."""
    _write(io_path, (orjson.dumps({"input": q, "output": a}) for _, q, a in _rows(n_records, seed)))

    def chat_lines() -> Any:
        for rng, question, answer in _rows(2 * n_records, seed):
            messages = []
            if rng.random() < 0.33:
                messages.append({"role": "system", "content": "You answer for the support desk."})
            if rng.random() < 0.25:
                messages += [{"role": "user", "content": "Hello"},
                             {"role": "assistant", "content": "Hi! How can I help?"}]
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            yield orjson.dumps({"messages": messages})

    _write(chat_path, chat_lines(), io_path.stat().st_size)


def _warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500_000, help="records to generate")
    parser.add_argument("--repeat", type=int, default=2, help="timing runs per variant (best is kept)")
    parser.add_argument("--dir", help="folder for the generated files (kept there; default: a temp folder)")
    args = parser.parse_args(argv)

    from core.training.dataset import validate_file

    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tinyforge-chat-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    io_path, chat_path = folder / f"io-{args.records}.jsonl", folder / f"messages-{args.records}.jsonl"
    try:
        if not (io_path.exists() and chat_path.exists()):
            generate(io_path, chat_path, args.records)
        repo = Path(__file__).resolve().parent.parent
        env = dict(os.environ)
        env["PYTHONPATH"] = str(repo) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cli_cmd = [sys.executable, "-m", "core.cli", "validate", "--data", str(chat_path), "--json"]
        times: dict[str, list[float]] = {"reference_input_output": [], "cli_validate_messages": [],
                                         "validate_file_messages": []}
        runs: list[dict[str, Any]] = []
        report: Any = None
        for path in (io_path, chat_path):
            _warm(path)
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            reference = reference_summary(str(io_path))
            times["reference_input_output"].append(time.perf_counter() - t0)
            # Timed on its own: the RSS sampler (psutil over the process tree every 10 ms) would
            # take CPU from the scan on a 2-core machine. The sampled run gives the peak RSS.
            t0 = time.perf_counter()
            timed = subprocess.run(cli_cmd, env=env, capture_output=True, check=False)
            times["cli_validate_messages"].append(time.perf_counter() - t0)
            run = run_subprocess_measured(cli_cmd, env)
            run["stdout"] = timed.stdout if timed.returncode in (0, 1) else run["stdout"]
            runs.append(run)
            t0 = time.perf_counter()
            report = validate_file(chat_path)
            times["validate_file_messages"].append(time.perf_counter() - t0)
        best = {k: min(v) for k, v in times.items()}
        cli_report = json.loads(runs[-1]["stdout"])
        ratio = best["reference_input_output"] / best["cli_validate_messages"]
        peak = max(r["peak_rss_tree_mb"] for r in runs)
        goals = {
            "cli_validate_messages_2x": ratio >= GOAL_SPEEDUP,
            "cli_peak_rss_tree_200mb": peak <= GOAL_RSS_MB,
            "every_row_read_as_messages": cli_report["format_counts"] == {"messages": cli_report["n_records"]}
            and cli_report["valid"] and report.valid,
        }
        summary = {
            "benchmark": "chat_throughput",
            "files_mb": {"input_output": round(io_path.stat().st_size / 1e6, 1),
                         "messages": round(chat_path.stat().st_size / 1e6, 1)},
            "records": {"input_output": reference["n_records"], "messages": cli_report["n_records"]},
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "times_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "best_s": {k: round(v, 3) for k, v in best.items()},
            "ratio_cli_messages_vs_reference": round(ratio, 2),
            "ratio_validate_file_messages_vs_reference": round(best["reference_input_output"]
                                                               / best["validate_file_messages"], 2),
            "cli_peak_rss_tree_mb": round(peak, 1),
            "cli": " ".join(cli_cmd),
            "goals": goals,
            "all_passed": all(goals.values()),
        }
        print(json.dumps(summary, indent=2))
        return 0 if summary["all_passed"] else 1
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
