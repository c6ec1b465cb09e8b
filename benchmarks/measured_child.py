"""A command in a child process, measured: its wall time and its peak RSS from the kernel.

``wait4`` hands back the child's own ``ru_maxrss``, so nothing samples beside it (a sampler
polling the process tree takes CPU from what it measures on a 2-core machine).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def run_measured(command: list[str], cwd: Path, env: dict[str, str], name: str) -> tuple[float, int]:
    """``(seconds, peak RSS in MiB)`` of ``command``; exits with a line naming ``name`` if it fails."""
    started = time.time()
    child = subprocess.Popen(command, cwd=cwd, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.time() - started
    if status != 0:
        raise SystemExit(f"{name}: training failed (status {status})")
    return seconds, round(usage.ru_maxrss / 1024)  # Linux reports KiB
