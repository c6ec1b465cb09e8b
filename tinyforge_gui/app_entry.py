"""Entry point of the packaged app: the window, the self-test, a training child, or a service.

The packaged executable is started four ways: plainly (the window), with ``--self-test``
(an end-to-end check that exits 0 or 1), and by the app itself as
``--training-child train CONFIG`` for real training in a crash-isolated child process and as
``--serve DIR --host H --port N`` to run an exported service.
"""

from __future__ import annotations

import os
import sys


def _restore_standard_streams() -> None:
    """A windowed build starts with no sys.stdout/stderr; reattach them when the fds exist."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is None:
            try:
                os.fstat(fd)
                setattr(sys, name, open(fd, "w", encoding="utf-8", buffering=1, closefd=False))  # noqa: SIM115
            except OSError:
                pass


def _serve(argv: list[str]) -> int:
    """``--serve DIR [--host H] [--port N]``: run an exported service (the packaged ``foremforge serve``)."""
    import argparse

    from core.exporter.serve import serve

    parser = argparse.ArgumentParser(prog="TinyForgeStudio --serve")
    parser.add_argument("service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    serve(args.service, host=args.host, port=args.port, api_key=args.api_key)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _restore_standard_streams()
    if argv[:1] == ["--training-child"]:
        from core.training.child_main import main as child_main

        return int(child_main(argv[2:] if argv[1:2] == ["train"] else argv[1:]) or 0)
    if argv[:1] == ["--serve"] and len(argv) >= 2:
        return _serve(argv[1:])
    if "--self-test" in argv:
        from tinyforge_gui.devtools.selftest import main as selftest_main

        return int(selftest_main([a for a in argv if a != "--self-test"]) or 0)
    from tinyforge_gui.__main__ import main as gui_main

    return int(gui_main() or 0)


if __name__ == "__main__":
    if sys.platform.startswith("win") or getattr(sys, "frozen", False):
        import multiprocessing

        multiprocessing.freeze_support()
    sys.exit(main())
