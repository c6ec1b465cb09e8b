"""Scale-out: two CPU processes under torchrun (gloo); only rank 0 writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.jsonio import read_json
from tests.core.training_helpers import ROOT, SAMPLE


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path) -> None:
    out = tmp_path / "X"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "core.training.train",
           "--data", str(SAMPLE), "--out", str(out), "--base-model", "tiny-causal", "--max-steps", "4"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = read_json(out / "training_report.json")
    assert report["status"] == "completed" and report["world_size"] == 2 and report["global_step"] == 4
    assert (out / "model" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X"], "no temp folder left"
