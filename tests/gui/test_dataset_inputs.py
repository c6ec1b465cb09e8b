"""Opening something that is not a regular file: the same reason as the CLI, at once, no worker.

Before, a ``.jsonl`` FIFO blocked the GUI thread in ``open()`` (the window froze until something
wrote to the pipe) and a ``.jsonl`` link to ``/dev/zero`` started a scan that never ended.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.training.test_dataset_inputs import REASONS, make_bad_path, unblock_fifo
from tests.gui.window_helpers import wait_report

pytestmark = [pytest.mark.gui, pytest.mark.skipif(os.name != "posix", reason="FIFOs and devices are POSIX")]

KINDS = ["fifo", "device", "loop", "folder"]
if not (hasattr(os, "geteuid") and os.geteuid() == 0):  # root reads any file whatever its mode
    KINDS.append("unreadable")


@pytest.fixture
def fifo_unblocker() -> Iterator[list[Path]]:
    """Keeps giving any reader blocked on the listed FIFOs an end of file, so a regression
    fails the test (window blocked for seconds) instead of hanging the whole suite."""
    fifos: list[Path] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.5):
            for path in fifos:
                unblock_fifo(path)

    thread = threading.Thread(target=loop, name="fifo-unblocker", daemon=True)
    thread.start()
    yield fifos
    stop.set()
    thread.join(5)


@pytest.mark.parametrize("kind", KINDS)
def test_not_a_regular_file_is_refused_without_blocking(window, qtbot, tmp_path: Path, kind: str,  # noqa: ANN001
                                                        fifo_unblocker: list[Path]) -> None:
    path = make_bad_path(tmp_path, kind)
    if kind == "fifo":
        fifo_unblocker.append(path)
    start = time.monotonic()
    loaded = window.dataset_controller.load(str(path))
    elapsed = time.monotonic() - start
    assert not loaded
    assert elapsed < 1.0, f"the window was blocked for {elapsed:.1f} s"
    assert not window.tasks.is_busy("index") and not window.tasks.is_busy("validate")
    assert window.message.isVisible()
    text = window.message.text.text()
    assert REASONS[kind] in text and path.name in text, text
    assert window.state.dataset_path == ""
    window.dataset_controller.open_example()  # the window stays usable
    assert wait_report(qtbot, window).valid
