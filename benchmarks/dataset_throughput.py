"""Dataset throughput: our validation and streaming against the seed's loop, in the same run.

Generates ~350 MB of JSONL (500k records: ASCII and non-ASCII text, escaped newlines inside
strings, metadata on some rows, some blank lines) unless ``--path`` names an existing file,
then times:

- the reference: the seed's ``summarize_dataset(stream_jsonl(...))`` (text-mode lines,
  ``json.loads`` per stripped line, key check, ``len(s.split())`` counts);
- ours: ``summarize_dataset(stream_jsonl(...))``, ``validate_file`` in this process, and the
  real CLI ``python -m core.cli validate --data F --json`` as a subprocess: timed in a plain
  run, its peak RSS (process tree, sampled with psutil, plus ``getrusage(RUSAGE_CHILDREN)``)
  from a second run, since the sampler takes CPU from the scan on a small machine.

Prints a JSON summary with times (best of ``--repeat``), ratios, RSS and pass/fail per goal.
Run: ``python benchmarks/dataset_throughput.py [--path F] [--records N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

GOAL_VALIDATE_SPEEDUP = 2.5
GOAL_STREAM_SPEEDUP = 1.2
GOAL_RSS_MB = 200.0

_ASCII_WORDS = (
    "order shipping refund account password invoice billing package delivery tracking the a to and of "
    "is your we you please can my for on with this that it be have not are at as customer support "
    "ticket email address card payment charge subscription plan upgrade cancel return label warehouse "
    "courier delay damaged replacement warranty store credit discount code"
).split()
_UNICODE_WORDS = (
    "café naïve façade résumé Müller straße größe übermäßig déjà São Paulo Ελληνικά παραγγελία "
    "доставка заказ возврат 注文 配送 返金 アカウント 订单 退款 😀 ✓ €20 ½ 100\u00a0kg 東京\u3000駅"
).split(" ")


def _text(rng: random.Random, n: int, unicode: bool) -> str:
    words = rng.choices(_ASCII_WORDS, k=n)
    if unicode:
        for _ in range(max(1, n // 6)):
            words[rng.randrange(n)] = rng.choice(_UNICODE_WORDS)
    if rng.random() < 0.3:
        words[rng.randrange(n)] += "\n"  # written as an escaped \\n inside the JSON string
    if rng.random() < 0.1:
        words[rng.randrange(n)] += "\t "
    return " ".join(words)


def generate(path: Path, n_records: int, seed: int = 1) -> None:
    """Write ``n_records`` realistic-looking records (~700 bytes each) to ``path``."""
    rng = random.Random(seed)
    categories = ["billing", "shipping", "account", "returns", "orders"]
    with open(path, "wb") as f:
        buf: list[bytes] = []
        for i in range(n_records):
            unicode = rng.random() < 0.3
            rec: dict[str, Any] = {
                "input": f"#{i} " + _text(rng, rng.randint(20, 60), unicode),
                "output": _text(rng, rng.randint(40, 100), unicode and rng.random() < 0.8),
            }
            if rng.random() < 0.25:
                rec["metadata"] = {"category": rng.choice(categories), "id": i}
            line = orjson.dumps(rec)
            if i % 2:  # half the rows in the spaced style of json.dumps
                line = line.replace(b'":', b'": ').replace(b',"', b', "')
            buf.append(line)
            if rng.random() < 0.01:
                buf.append(b"")
            if len(buf) >= 10_000:
                f.write(b"\n".join(buf) + b"\n")
                buf = []
        if buf:
            f.write(b"\n".join(buf) + b"\n")


def reference_summary(path: str) -> dict[str, Any]:
    """The seed's loop: what ``summarize_dataset(stream_jsonl(path))`` did before."""
    n = in_tokens = out_tokens = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if "input" not in rec or "output" not in rec:
                raise ValueError("missing input/output")
            n += 1
            in_tokens += len(rec["input"].split())
            out_tokens += len(rec["output"].split())
    return {
        "n_records": n,
        "avg_input_len": in_tokens / n if n else 0.0,
        "avg_output_len": out_tokens / n if n else 0.0,
    }


def _cpu_now() -> float:
    """CPU seconds of this process and of its waited-for children (the scan workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


CPU_TIMES: dict[str, list[float]] = {}


def _timed(fn: Any, *args: Any, name: str = "") -> tuple[float, Any]:
    c0 = _cpu_now()
    t0 = time.perf_counter()
    result = fn(*args)
    wall = time.perf_counter() - t0
    if name:
        CPU_TIMES.setdefault(name, []).append(_cpu_now() - c0)
    return wall, result


def run_subprocess_measured(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd``; wall time, stdout, and peak RSS of its main process and of its whole tree."""
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    ps = psutil.Process(proc.pid)
    peak_main = peak_tree = 0
    out_chunks: list[bytes] = []
    import threading

    def drain() -> None:
        assert proc.stdout is not None
        out_chunks.append(proc.stdout.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            main_rss = ps.memory_info().rss
            tree = main_rss
            for child in ps.children(recursive=True):
                try:
                    tree += child.memory_info().rss
                except psutil.Error:
                    pass
            peak_main = max(peak_main, main_rss)
            peak_tree = max(peak_tree, tree)
        except psutil.Error:
            pass
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    reader.join()
    stderr = proc.stderr.read() if proc.stderr else b""
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "wall_s": wall,
        "returncode": proc.returncode,
        "stdout": b"".join(out_chunks),
        "stderr": stderr[-2000:].decode("utf-8", "replace"),
        "peak_rss_main_mb": peak_main / 2**20,
        "peak_rss_tree_mb": peak_tree / 2**20,
        # ru_maxrss (KiB on Linux) is the largest single descendant so far; only meaningful if it grew.
        "rusage_children_maxrss_mb": (after / 1024) if after > before else None,
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["n_records"] == b["n_records"]
        and abs(a["avg_input_len"] - b["avg_input_len"]) <= 1e-6
        and abs(a["avg_output_len"] - b["avg_output_len"]) <= 1e-6
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", help="JSONL file to use (generated there when missing)")
    parser.add_argument("--records", type=int, default=500_000, help="records to generate")
    parser.add_argument("--repeat", type=int, default=2, help="timing runs per variant (best is kept)")
    parser.add_argument("--keep", action="store_true", help="keep the generated temp file")
    args = parser.parse_args(argv)

    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo))
    from core.training.dataset import stream_jsonl, summarize_dataset, validate_file

    tmpdir: str | None = None
    if args.path:
        path = Path(args.path)
    else:
        tmpdir = tempfile.mkdtemp(prefix="tinyforge-bench-")
        path = Path(tmpdir) / "dataset.jsonl"
    generated_s = None
    if not path.exists():
        generated_s, _ = _timed(generate, path, args.records)
    data = str(path)
    size = path.stat().st_size
    load_start = round(os.getloadavg()[0], 2)
    try:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(repo) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        has_cli = importlib.util.find_spec("core.cli") is not None
        cli_cmd = [sys.executable, "-m", "core.cli", "validate", "--data", data, "--json"]
        times: dict[str, list[float]] = {"reference": [], "stream_summarize": [], "validate_file": [], "cli_validate": []}
        ref = ours_stream = ours_validate = None
        cli_runs: list[dict[str, Any]] = []
        # Warm the page cache once so no variant pays for the first disk read.
        with open(data, "rb") as f:
            while f.read(16 << 20):
                pass
        for _ in range(max(1, args.repeat)):  # interleaved, so background load hits all alike
            t, ref = _timed(reference_summary, data, name="reference")
            times["reference"].append(t)
            t, ours_stream = _timed(lambda: summarize_dataset(stream_jsonl(data)), name="stream_summarize")
            times["stream_summarize"].append(t)
            t, ours_validate = _timed(validate_file, data, name="validate_file")
            times["validate_file"].append(t)
            if has_cli:
                # Timed in a plain run: the RSS sampler (psutil over the process tree every 10 ms)
                # takes CPU the scan needs on a 2-core machine. A second, sampled run gives the RSS.
                c0 = _cpu_now()
                t0 = time.perf_counter()
                subprocess.run(cli_cmd, env=env, capture_output=True, check=False)
                times["cli_validate"].append(time.perf_counter() - t0)
                CPU_TIMES.setdefault("cli_validate", []).append(_cpu_now() - c0)
                cli_runs.append(run_subprocess_measured(cli_cmd, env))
        assert ref is not None and ours_stream is not None and ours_validate is not None
        best = {k: min(v) for k, v in times.items() if v}
        validate_summary = {
            "n_records": ours_validate.n_records,
            "avg_input_len": ours_validate.avg_input_len,
            "avg_output_len": ours_validate.avg_output_len,
        }
        cli_summary: dict[str, Any] | None = None
        cli_rss: dict[str, Any] = {}
        if cli_runs:
            last = cli_runs[-1]
            try:
                report = json.loads(last["stdout"])
                cli_summary = {k: report[k] for k in ("n_records", "avg_input_len", "avg_output_len")}
            except (ValueError, KeyError):
                cli_summary = None
            cli_rss = {
                "peak_rss_main_mb": round(max(r["peak_rss_main_mb"] for r in cli_runs), 1),
                "peak_rss_tree_mb": round(max(r["peak_rss_tree_mb"] for r in cli_runs), 1),
                "rusage_children_maxrss_mb": last["rusage_children_maxrss_mb"],
                "returncode": last["returncode"],
            }
            if cli_summary is None:
                cli_rss["stderr"] = last["stderr"]
        ratios = {
            "validate_file_vs_reference": best["reference"] / best["validate_file"],
            "stream_summarize_vs_reference": best["reference"] / best["stream_summarize"],
        }
        if "cli_validate" in best:
            ratios["cli_validate_vs_reference"] = best["reference"] / best["cli_validate"]
        goals = {
            "validate_file_2.5x": ratios["validate_file_vs_reference"] >= GOAL_VALIDATE_SPEEDUP,
            "stream_summarize_1.2x": ratios["stream_summarize_vs_reference"] >= GOAL_STREAM_SPEEDUP,
            "identical_figures": _same(ref, ours_stream) and _same(ref, validate_summary)
            and (cli_summary is None or _same(ref, cli_summary)),
        }
        if has_cli:
            goals["cli_validate_2.5x"] = ratios["cli_validate_vs_reference"] >= GOAL_VALIDATE_SPEEDUP
            goals["cli_peak_rss_tree_200mb"] = cli_rss["peak_rss_tree_mb"] <= GOAL_RSS_MB
            goals["cli_figures_present"] = cli_summary is not None
        summary = {
            "benchmark": "dataset_throughput",
            "file": {"path": data, "bytes": size, "mb": round(size / 1e6, 1), "generated_s": generated_s},
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "repeat": args.repeat,
            "times_s": {k: [round(x, 3) for x in v] for k, v in times.items() if v},
            "best_s": {k: round(v, 3) for k, v in best.items()},
            "throughput_mb_s": {k: round(size / 1e6 / v, 1) for k, v in best.items()},
            "ratios": {k: round(v, 2) for k, v in ratios.items()},
            # CPU seconds (all processes): how much work each variant does, whatever the load.
            "cpu_s": {k: [round(x, 3) for x in v] for k, v in CPU_TIMES.items()},
            "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
            "cli": {"command": " ".join(cli_cmd), **cli_rss} if has_cli else "core/cli not found",
            "figures": {"reference": ref, "stream_summarize": ours_stream, "validate_file": validate_summary,
                        "cli": cli_summary,
                        "validate_problems": ours_validate.n_problems, "validate_warnings": ours_validate.n_warnings},
            "goals": goals,
            "all_passed": all(goals.values()),
        }
        print(json.dumps(summary, indent=2))
        return 0 if summary["all_passed"] else 1
    finally:
        if tmpdir and not args.keep:
            shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
