"""The parent's side of a real training in a child process: start it, relay its events, stop it.

Runs in the calling process (the GUI's run, ``core.runs``, the estimate), so a crash or
out-of-memory of the training cannot take the caller down. The child runs
:mod:`core.training.child_main`; its JSON-line events are relayed to ``on_event`` in
the calling thread. Cancel asks politely (SIGINT, or CTRL_BREAK on Windows: the child saves a
checkpoint and reports cancelled), then kills the child after ``grace_seconds``. A child that
dies without finishing raises :class:`TrainingProcessError` naming the exit code and the last
lines of its stderr; a bad-input error in the child is re-raised here as :class:`TrainingError`.
The child's own ``Failed`` event becomes that exception, not a relayed event: the caller's
boundary reports the failure, once.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from core.events import CancelToken, Event, EventCallback, Failed, Finished, Log, event_from_dict, noop
from core.training.child_main import EVENT_MARKER, EXIT_BAD_INPUT
from core.training.config import TrainConfig
from core.training.errors import TrainingError, TrainingProcessError
from core.training.outputs import remove_stale_staging

logger = logging.getLogger(__name__)

__all__ = ["TrainingProcessError", "child_command", "run_training_subprocess"]

_STDERR_TAIL = 30
_POLL_SECONDS = 0.1


def child_command(config_path: str | os.PathLike[str]) -> list[str]:
    """The command line of the training child (the app itself when frozen by PyInstaller)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--training-child", "train", str(config_path)]
    return [sys.executable, "-m", "core.training.child_main", "train", str(config_path)]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not getattr(sys, "frozen", False):  # make ``core`` importable from a plain checkout too
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # the child is a single process, whatever the parent is
    return env


def run_training_subprocess(
    config: TrainConfig,
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
    grace_seconds: float = 5.0,
) -> dict[str, Any]:
    """Train in a child process and return its training report (status completed or cancelled)."""
    emit = on_event or noop
    fd, config_path = tempfile.mkstemp(prefix="tinyforge-train-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(config.model_dump_json(indent=2))
    try:
        return _supervise(config_path, emit, cancel, grace_seconds)
    finally:
        Path(config_path).unlink(missing_ok=True)


def _supervise(config_path: str, emit: EventCallback, cancel: CancelToken | None,
               grace_seconds: float) -> dict[str, Any]:
    windows = sys.platform == "win32"
    proc = subprocess.Popen(
        child_command(config_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_child_env(),
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
        creationflags=subprocess.CREATE_NEW_PROCESS_GROUP if windows else 0,  # type: ignore[attr-defined]
    )
    events: queue.Queue[Event | None] = queue.Queue()
    tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
    readers = [
        threading.Thread(target=_read_events, args=(proc.stdout, events), daemon=True),
        threading.Thread(target=_read_stderr, args=(proc.stderr, tail), daemon=True),
    ]
    for thread in readers:
        thread.start()
    finished: Finished | None = None
    failed: Failed | None = None
    asked_at: float | None = None
    killed = False
    stdout_open = True
    while stdout_open or proc.poll() is None:
        if cancel is not None and cancel.cancelled:
            if asked_at is None:
                asked_at = time.monotonic()
                emit(Log("cancel: asking the training process to stop", "warning"))
                _ask_to_stop(proc, windows)
            elif not killed and time.monotonic() - asked_at > grace_seconds and proc.poll() is None:
                emit(Log(f"the training process did not stop within {grace_seconds:g} s: killing it", "warning"))
                proc.kill()
                killed = True
        try:
            event = events.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            continue
        if event is None:
            stdout_open = False
            continue
        if isinstance(event, Finished):
            finished = event
        elif isinstance(event, Failed):
            failed = event  # raised below, as an exception
            continue
        emit(event)
    code = proc.wait()
    for thread in readers:
        thread.join(timeout=5)
    if finished is not None and code == 0:
        return dict(finished.result)
    if asked_at is not None and failed is None:
        report = {"status": "cancelled", "exit_code": code, "killed": killed,
                  "message": "the training process was stopped before it could report"}
        emit(Finished("cancelled", report))
        return report
    stderr_tail = "\n".join(tail)
    remove_stale_staging(Path(json.loads(Path(config_path).read_text(encoding="utf-8"))["output_dir"]))
    if failed is not None and code == EXIT_BAD_INPUT:
        raise TrainingError(failed.message)
    message = _describe_exit(code, failed)
    if stderr_tail:
        message += "\nlast lines of its error output:\n" + "\n".join(list(tail)[-8:])
    details = failed.details if failed is not None and failed.details else stderr_tail
    raise TrainingProcessError(message, exit_code=code, stderr_tail=stderr_tail, details=details)


def _ask_to_stop(proc: subprocess.Popen[str], windows: bool) -> None:
    if proc.poll() is not None:
        return
    try:
        if windows:
            proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            proc.send_signal(signal.SIGINT)
    except OSError:  # it ended meanwhile
        pass


def _describe_exit(code: int, failed: Failed | None) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        what = f"the training process was killed by {name}{hint}"
    elif code == 0:
        what = "the training process ended without reporting a result"
    else:
        what = f"the training process exited with code {code}"
    if failed is not None:
        what += f": {failed.message}"
    return what


def _read_events(stream: IO[str] | None, out: queue.Queue[Event | None]) -> None:
    """Parse marked lines into events; anything else the child printed becomes a debug log."""
    try:
        for line in stream or ():
            line = line.rstrip("\n")
            if line.startswith(EVENT_MARKER):
                try:
                    out.put(event_from_dict(json.loads(line[len(EVENT_MARKER):])))
                except (ValueError, TypeError) as error:
                    logger.warning("bad event line from the training process: %s", error)
            elif line.strip():
                out.put(Log(line, "debug"))
    finally:
        out.put(None)


def _read_stderr(stream: IO[str] | None, tail: collections.deque[str]) -> None:
    for line in stream or ():
        line = line.rstrip("\n")
        if line.strip():
            tail.append(line)
            logger.debug("training process: %s", line)
