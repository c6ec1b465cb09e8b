"""The training child process's entry: run one real training from a config JSON, events as JSON lines.

Runs in the child only. Started by :func:`core.training.child_supervisor.run_training_subprocess`
as ``python -m core.training.child_main train CONFIG.json`` or, in the packaged app, as
``<app> --training-child train CONFIG.json`` (the app's entry point calls :func:`main` with the
arguments after ``--training-child``).

Protocol: each event is one line ``@@tinyforge-event@@ {json}`` on the process's *original*
stdout. Before anything else runs, file descriptor 1 is pointed at stderr, so stray prints
(ours, a library's, native code's) cannot break the protocol. SIGINT (SIGBREAK on Windows)
sets the cancel token: the run saves a checkpoint and ends with status cancelled.
Exit codes: 0 completed or cancelled, 2 bad input (``TrainingError``), 1 any other failure; a
failure also sends one ``Failed`` event (worded by :func:`core.failures.describe`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import IO, Any

EVENT_MARKER = "@@tinyforge-event@@ "
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

logger = logging.getLogger(__name__)

__all__ = ["EVENT_MARKER", "main"]


def _event_channel() -> IO[str]:
    """Keep the real stdout for events only; send everything else written to fd 1 to stderr."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``train CONFIG.json`` (or just ``CONFIG.json``); return the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "train":
        args = args[1:]
    if len(args) != 1:
        print("usage: python -m core.training.child_main train CONFIG.json", file=sys.stderr)
        return EXIT_BAD_INPUT
    channel = _event_channel()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")

    from core.events import CancelToken, Event
    from core.failures import describe

    token = CancelToken()

    def on_signal(signum: int, frame: Any) -> None:
        token.cancel()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)  # `kill`, systemd, docker stop: a checkpoint, not a loss
    if hasattr(signal, "SIGBREAK"):  # Windows: the parent sends CTRL_BREAK_EVENT
        signal.signal(signal.SIGBREAK, on_signal)

    def send(event: Event) -> None:
        channel.write(EVENT_MARKER + json.dumps(event.to_dict(), default=str) + "\n")
        channel.flush()

    # This is a boundary: the training only raises; here its exception becomes the run's one
    # Failed event and the exit code the parent reads.
    try:
        from core.training.errors import TrainingError

        try:
            _train(args[0], send, token)
        except Exception as error:
            failure = describe(error, doing="training failed", bad_input=(TrainingError,))
            if not failure.bad_input:
                logger.exception("training failed")  # the traceback, for the parent's stderr tail
            send(failure.event())
            return EXIT_BAD_INPUT if failure.bad_input else EXIT_FAILED
        return EXIT_OK
    finally:
        channel.flush()


def _train(config_path: str, send: Any, token: Any) -> None:
    """Read the config and run the training (events through ``send``); raise on failure."""
    from core.jsonio import read_json
    from core.training.config import TrainConfig
    from core.training.errors import TrainingError
    from core.training.hf_train import run_real_training

    try:
        config = TrainConfig.model_validate(read_json(config_path))
    except (OSError, ValueError) as error:
        raise TrainingError(f"cannot read the training config {config_path}: {error}") from error
    run_real_training(config, on_event=send, cancel=token)


if __name__ == "__main__":
    sys.exit(main())
