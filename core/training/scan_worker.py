"""Child process that scans byte ranges of a JSONL file for ``validate_file``.

Run as ``python -m core.training.scan_worker PATH``. It reads ``START END`` lines on stdin and
scans each range in turn, until an empty line or the end of stdin; it writes ``P<bytes done>``
lines while it works (all its ranges so far) and ``R<size>`` followed by the pickled result of
``scan_range`` after each range. The parent hands out the next range when a result arrives, so
a worker that gets less CPU (a busy core) scans fewer ranges instead of finishing last.
A plain child process (rather than multiprocessing) never re-imports the caller's
``__main__`` (the GUI, a script without a main guard) and starts in ~0.1 s.
The parent sets ``PYTHONHASHSEED`` so that the digests of all workers compare.
"""

from __future__ import annotations

import logging
import pickle
import sys
from typing import BinaryIO

from core.training.dataset_scan import scan_range

log = logging.getLogger(__name__)


def run(path: str, tasks: BinaryIO, out: BinaryIO) -> None:
    """Scan the ranges of ``path`` read from ``tasks``, writing progress and results to ``out``.

    Also what a worker forked by ``validate_file`` runs (with pipes instead of stdin/stdout).
    """
    before = 0  # bytes of the ranges already scanned

    def progress(done: int) -> None:
        out.write(b"P%d\n" % (before + done))
        out.flush()

    while True:
        line = tasks.readline()
        if not line.strip():
            break
        start, end = (int(x) for x in line.split())
        result = scan_range(path, start, end, progress=progress)
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(b"R%d\n" % len(data))
        out.write(data)
        out.flush()
        before += end - start


def main(argv: list[str] | None = None) -> int:
    """Scan the ranges of ``argv = [path]`` read from stdin; progress and results to stdout."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m core.training.scan_worker PATH  (START END lines on stdin)", file=sys.stderr)
        return 2
    run(args[0], sys.stdin.buffer, sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
