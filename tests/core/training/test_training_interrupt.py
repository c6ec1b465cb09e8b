"""Ctrl-C during ``foremforge train``: the last line says only what is true on disk.

Before, a cancel before the first training step printed both "nothing was written" (the
trainer's log) and "a checkpoint was saved ... continue with --resume" (the command line).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.cli import train as train_command
from core.events import CancelToken, Progress
from tests.core.training_helpers import ROOT, SAMPLE

SAVED = "a checkpoint was saved"
NOTHING = "nothing was written"


def _patch_cancel(monkeypatch: pytest.MonkeyPatch, token: CancelToken) -> None:
    """The command's Ctrl-C token is ``token`` (what the SIGINT handler would set)."""

    @contextlib.contextmanager
    def fake_cancel_on_sigint(given: CancelToken | None = None) -> Iterator[CancelToken]:
        yield token

    monkeypatch.setattr("core.sigint.cancel_on_sigint", fake_cancel_on_sigint)


def _args(out: Path, *extra: str) -> list[str]:
    return ["--data", str(SAMPLE), "--out", str(out), "--base-model", "tiny-causal", "--device", "cpu",
            "--seed", "0", *extra]


def test_cancel_before_the_first_step_says_nothing_was_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    token = CancelToken()
    token.cancel()  # Ctrl-C pressed while the dataset was being checked
    _patch_cancel(monkeypatch, token)
    out = tmp_path / "out"
    code = train_command.run(train_command.build_parser().parse_args(_args(out)))
    err = capsys.readouterr().err
    assert code == 130
    assert NOTHING in err and SAVED not in err and "--resume" not in err, err
    assert not out.exists()


def test_cancel_after_a_step_names_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    token = CancelToken()
    _patch_cancel(monkeypatch, token)
    from core import console

    class CancelAfterFirstStep(console.ConsoleReporter):
        def __call__(self, event: object) -> None:
            super().__call__(event)  # type: ignore[arg-type]
            if isinstance(event, Progress) and event.stage == "train" and event.step >= 1:
                token.cancel()

    monkeypatch.setattr(console, "ConsoleReporter", CancelAfterFirstStep)
    out = tmp_path / "out"
    code = train_command.run(train_command.build_parser().parse_args(_args(out, "--max-steps", "50", "--batch-size", "1")))
    err = capsys.readouterr().err
    assert code == 130
    assert SAVED in err and NOTHING not in err, err
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and str(checkpoints[-1]) in err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_real_ctrl_c_early_never_claims_both(tmp_path: Path) -> None:
    """A real SIGINT as soon as the dataset check starts: one true statement, matching the disk."""
    out = tmp_path / "out"
    code, err = _train_and_signal(_args(out, "--max-steps", "400"), lambda line: line.startswith("== validate"),
                                  signal.SIGINT)
    assert code == 130, err
    assert "Traceback" not in err
    assert (SAVED in err) != (NOTHING in err), err
    has_checkpoint = any((out / "checkpoints").glob("checkpoint-*"))
    assert has_checkpoint == (SAVED in err), err


def test_sigterm_saves_a_checkpoint_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM (``timeout``, ``docker stop``, systemd) at a training step: a checkpoint and a clean
    exit, so ``--resume`` continues; before, the process died with 143 and nothing to resume."""
    out = tmp_path / "out"

    def training(line: str) -> bool:
        return line.startswith("train: ") and "/2000" in line and not line.startswith("train: 0/")

    code, err = _train_and_signal(_args(out, "--max-steps", "2000", "--no-variants"), training, signal.SIGTERM)
    assert code == 130, err
    assert SAVED in err and "Traceback" not in err, err
    assert any((out / "checkpoints").glob("checkpoint-*")), err


def _train_and_signal(args: list[str], when: Callable[[str], bool], signum: int) -> tuple[int, str]:
    """Run ``foremforge train ARGS``, send ``signum`` at the first stderr line ``when`` accepts;
    return the exit code and everything it wrote to stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "train", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if when(line):
                proc.send_signal(signum)
                break
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(lines) + rest


def test_cancel_during_the_evaluation_keeps_the_model_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Before, Ctrl-C while evaluating exited 0 and published silently without evaluation.json."""
    token = CancelToken()
    _patch_cancel(monkeypatch, token)
    from core import console

    class CancelWhenEvaluating(console.ConsoleReporter):
        def __call__(self, event: object) -> None:
            super().__call__(event)  # type: ignore[arg-type]
            if getattr(event, "stage", "") == "evaluate":
                token.cancel()

    monkeypatch.setattr(console, "ConsoleReporter", CancelWhenEvaluating)
    out = tmp_path / "out"
    code = train_command.run(train_command.build_parser().parse_args(_args(out, "--max-steps", "2", "--no-variants")))
    err = capsys.readouterr().err
    assert code == 130, err
    assert "Cancelled during the evaluation: the trained model was saved" in err and "foremforge evaluate" in err
    assert (out / "model" / "model.safetensors").is_file() and not (out / "evaluation.json").exists()
    report = json.loads((out / "training_report.json").read_text())
    assert report["status"] == "completed" and report["evaluation_cancelled"] is True
