"""One error channel: core raises, each boundary (run executor, training child, CLI) reports once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core import runs
from core.events import Cancelled, CancelToken, Event, EventCallback
from core.failures import EXIT_CANCELLED, describe
from core.training.child_main import EVENT_MARKER, EXIT_BAD_INPUT, EXIT_FAILED
from core.training.config import TrainConfig
from core.training.errors import TrainingError, TrainingProcessError
from tests.core.training_helpers import ROOT, SAMPLE, tiny_config

# ----------------------------------------------------------------------------- the translation


def test_describe_words_a_failure_once_for_every_boundary() -> None:
    try:
        raise TrainingError("unknown base model 'x'")
    except TrainingError as error:
        bad = describe(error, doing="training failed", bad_input=(TrainingError,))
    assert (bad.message, bad.bad_input, bad.exit_code) == ("unknown base model 'x'", True, 1)
    assert "Traceback" in bad.details and "TrainingError" in bad.details
    crash = describe(RuntimeError("disk on fire"), doing="training failed", bad_input=(TrainingError,))
    assert crash.message == "training failed: RuntimeError: disk on fire" and not crash.bad_input
    assert describe(RuntimeError("disk on fire")).message == "disk on fire"  # no doing: as it is
    assert describe(KeyError()).message == "KeyError"
    missing = FileNotFoundError(2, "No such file or directory", "/data/x.jsonl")
    assert describe(missing).message == "file not found: /data/x.jsonl"
    cancelled = describe(Cancelled("cancelled by the user"))
    assert cancelled.cancelled and cancelled.exit_code == EXIT_CANCELLED


def test_long_messages_are_cut_only_for_the_record() -> None:
    failure = describe(ValueError("x" * 1000))
    assert failure.message == "x" * 1000 and failure.event().message == "x" * 1000
    assert len(failure.headline) == 401 and failure.event(short=True).message == failure.headline


def test_an_exception_carrying_details_keeps_them() -> None:
    error = TrainingProcessError("the training process was killed by SIGKILL", -9, stderr_tail="tail line")
    assert describe(error).details == "tail line"
    error = TrainingProcessError("exited with code 1", 1, stderr_tail="tail", details="child traceback")
    assert describe(error).details == "child traceback"


# ----------------------------------------------------------------------------- the run executor


def _options(tmp_path: Path) -> runs.RunOptions:
    return runs.RunOptions(actions=["train"], train=TrainConfig(data_path=str(SAMPLE), output_dir=str(tmp_path)))


def _failed(run: runs.RunFolder) -> list[dict[str, Any]]:
    lines = run.events_file.read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == "failed"]


def _run_stage(tmp_path: Path, fn: Any) -> tuple[runs.RunFolder, list[Event]]:
    run = runs.create_run(tmp_path / "runs", _options(tmp_path))
    seen: list[Event] = []
    assert runs.execute_run(run, [runs.Stage("train", "model", fn, staged=False)], seen.append) == "failed"
    return run, seen


def test_a_failing_training_is_reported_once_by_the_run(tmp_path: Path) -> None:
    from core.training.hf_train import run_real_training

    def stage(run: runs.RunFolder, out: Path, emit: EventCallback, cancel: CancelToken) -> dict[str, Any]:
        return run_real_training(tiny_config(out, base="no-such-model"), on_event=emit, cancel=cancel)

    run, seen = _run_stage(tmp_path, stage)
    assert [e.kind for e in seen].count("failed") == 1, "core reported and the run reported again"
    assert len(_failed(run)) == 1
    assert "unknown base model 'no-such-model'" in runs.open_run(run.path).record.error.message


def test_a_failing_training_child_is_reported_once_by_the_run(tmp_path: Path) -> None:
    from core.training.child_supervisor import run_training_subprocess

    def stage(run: runs.RunFolder, out: Path, emit: EventCallback, cancel: CancelToken) -> dict[str, Any]:
        return run_training_subprocess(tiny_config(out, base="no-such-model"), emit, cancel)

    run, seen = _run_stage(tmp_path, stage)
    failed = [e for e in seen if e.kind == "failed"]
    assert len(failed) == 1, "the child's Failed was relayed and the run reported again"
    assert "unknown base model 'no-such-model'" in failed[0].message
    assert len(_failed(run)) == 1


# ----------------------------------------------------------------------------- the training child


def _child(config_path: Path) -> tuple[int, list[dict[str, Any]]]:
    result = subprocess.run(
        [sys.executable, "-m", "core.training.child_main", "train", str(config_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    events = [json.loads(line[len(EVENT_MARKER):]) for line in result.stdout.splitlines()
              if line.startswith(EVENT_MARKER)]
    return result.returncode, events


def test_the_child_reports_bad_input_once_with_its_exit_code(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(tiny_config(tmp_path / "out", base="no-such-model").model_dump_json(), encoding="utf-8")
    code, events = _child(config)
    failed = [e for e in events if e["kind"] == "failed"]
    assert code == EXIT_BAD_INPUT
    assert len(failed) == 1 and "unknown base model 'no-such-model'" in failed[0]["message"]


def test_the_child_reports_an_unreadable_config_once(tmp_path: Path) -> None:
    code, events = _child(tmp_path / "missing.json")
    assert code == EXIT_BAD_INPUT
    assert [e["kind"] for e in events] == ["failed"]
    assert events[0]["message"].startswith(f"cannot read the training config {tmp_path / 'missing.json'}")


def test_the_child_words_a_crash_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.training import child_main

    def crash(config_path: str, send: Any, token: Any) -> None:
        raise RuntimeError("disk on fire")

    sent: list[str] = []
    monkeypatch.setattr(child_main.signal, "signal", lambda *args: None)  # keep pytest's Ctrl-C handler
    monkeypatch.setattr(child_main, "_train", crash)
    monkeypatch.setattr(child_main, "_event_channel", lambda: _Channel(sent))
    assert child_main.main(["train", "c.json"]) == EXIT_FAILED
    events = [json.loads(line[len(EVENT_MARKER):]) for line in "".join(sent).splitlines()]
    assert [(e["kind"], e["message"]) for e in events] == [("failed", "training failed: RuntimeError: disk on fire")]
    assert "Traceback" in events[0]["details"]


class _Channel:
    def __init__(self, sink: list[str]) -> None:
        self.sink = sink

    def write(self, text: str) -> None:
        self.sink.append(text)

    def flush(self) -> None:
        pass


# ----------------------------------------------------------------------------- the command line


def test_cli_says_a_training_crash_in_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.cli import main
    from core.training import hf_train

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(hf_train, "_train", broken)
    code = main(["train", "--data", str(SAMPLE), "--out", str(tmp_path / "out"), "--base-model", "tiny-causal",
                 "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and errors == ["Error: disk on fire"], err


def test_cli_bad_input_message_and_exit_code_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import main

    code = main(["train", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o"), "--dry-run",
                 "--quiet"])
    lines = capsys.readouterr().err.splitlines()
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("Error: file not found: ") and lines[0].endswith("none.jsonl"), lines
    code = main(["train", "--data", str(SAMPLE), "--out", str(tmp_path / "o"), "--base-model", "no-such-model",
                 "--quiet"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(errors) == 1 and "unknown base model 'no-such-model'" in errors[0], err


def test_cli_cancel_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import main
    from core.training import run

    def cancelled(*args: Any, **kwargs: Any) -> None:
        raise Cancelled("cancelled by the user")

    monkeypatch.setattr(run, "run_training", cancelled)
    assert main(["train", "--data", str(SAMPLE), "--out", str(tmp_path / "o"), "--dry-run"]) == 130
    assert "Cancelled: nothing was written." in capsys.readouterr().err


# Every command, and the library function its work calls (the test makes it raise).
_COMMAND_WORK = {
    "init": (["init", "--yes"], "core.scaffold.run_init"),
    "validate": (["validate", "--data", str(SAMPLE)], "core.training.dataset.validate_file"),
    "train": (["train", "--data", str(SAMPLE), "--out", "OUT", "--dry-run"], "core.training.run.run_training"),
    "export": (["export", "--model-path", str(SAMPLE), "--output-dir", "OUT"], "core.exporter.service_build.build_service"),
    "predict": (["predict", "--model", "MODEL", "--input", "hello"], "core.answering.answerer"),
    "evaluate": (["evaluate", "--model", "MODEL"], "core.training.evaluate.evaluate_folder"),
    "serve": (["serve", "--service", "MODEL"], "core.exporter.serve.serve"),
}
# What a cancelled command says: as TinyForgeAI's scripts and the command line always did.
_CANCELLED = {"validate": "Cancelled.", "train": "Cancelled: nothing was written.",
              "export": "Cancelled: the output folder was not changed.", "evaluate": "Cancelled: nothing was written."}


def test_the_work_list_names_every_command() -> None:
    from core.cli.foremforge import COMMANDS

    assert set(_COMMAND_WORK) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(_COMMAND_WORK))
@pytest.mark.parametrize("raised", ["cancelled", "second ctrl-c", "bad input"])
def test_every_command_ends_through_the_one_console(command: str, raised: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Cancel, a second Ctrl-C and a user error in any command's work: the same words and exit
    codes (core.console.run_command), and no traceback."""
    from core.cli import main

    argv, work = _COMMAND_WORK[command]
    error = {"cancelled": Cancelled("cancelled by the user"), "second ctrl-c": KeyboardInterrupt(),
             "bad input": ValueError("the bad thing")}[raised]

    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(work, fail)
    monkeypatch.chdir(tmp_path)
    code = main([str(tmp_path) if a == "MODEL" else str(tmp_path / "out") if a == "OUT" else a for a in argv])
    err = capsys.readouterr().err
    expected = {"cancelled": (130, _CANCELLED.get(command, "Cancelled.") + "\n"),
                "second ctrl-c": (130, "\nInterrupted.\n"),
                "bad input": (1, "Error: the bad thing\n")}[raised]
    assert (code, err[-len(expected[1]):]) == expected, err
    assert "Traceback" not in err


def test_the_console_block_is_written_once() -> None:
    """Only core.console makes a command's progress reporter, installs its Ctrl-C handler and says
    'Interrupted.': every command and TinyForgeAI's scripts get them from there."""
    import ast

    found = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.func.attr if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else (
                node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else None)
            if name in ("ConsoleReporter", "cancel_on_sigint") or (
                    isinstance(node, ast.Constant) and node.value == "\nInterrupted."):
                found.append((path.relative_to(ROOT).as_posix(), name or node.value))
    assert found == [("core/console.py", "ConsoleReporter"), ("core/console.py", "cancel_on_sigint"),
                     ("core/console.py", "\nInterrupted.")]
