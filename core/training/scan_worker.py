"""Child process that scans one byte range of a JSONL file for ``validate_file``.

Run as ``python -m core.training.scan_worker PATH START END``. It writes ``P<bytes done>``
lines while it works and finally ``R<size>`` followed by the pickled result of
``scan_range``. A plain child process (rather than multiprocessing) never re-imports the
caller's ``__main__`` (the GUI, a script without a main guard) and starts in ~0.1 s.
The parent sets ``PYTHONHASHSEED`` so that the digests of all workers compare.
"""

from __future__ import annotations

import logging
import pickle
import sys

from core.training.dataset_scan import scan_range

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Scan ``argv = [path, start, end]`` and stream progress and the result to stdout."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m core.training.scan_worker PATH START END", file=sys.stderr)
        return 2
    path, start, end = args[0], int(args[1]), int(args[2])
    out = sys.stdout.buffer

    def progress(done: int) -> None:
        out.write(b"P%d\n" % done)
        out.flush()

    result = scan_range(path, start, end, progress=progress)
    data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(b"R%d\n" % len(data))
    out.write(data)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
