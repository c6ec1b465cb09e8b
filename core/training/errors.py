"""Errors of a real training run, with messages a user can act on."""

from __future__ import annotations

__all__ = ["TrainingError", "TrainingProcessError"]


class TrainingError(ValueError):
    """Bad input to a real training run (dataset, base model, LoRA targets, options, folders).

    Raised within seconds, before weights load where possible, leaving nothing under the
    output folder.
    """


class TrainingProcessError(RuntimeError):
    """The training child process crashed, ran out of memory or was killed.

    ``exit_code`` is the child's exit status (negative: killed by that signal), ``stderr_tail``
    its last stderr lines and ``details`` what a report shows under the message (the child's
    traceback when it sent one, else the stderr tail).
    """

    def __init__(self, message: str, exit_code: int | None = None, stderr_tail: str = "",
                 details: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail
        self.details = details or stderr_tail
