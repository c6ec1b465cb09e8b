"""Start TinyForge Studio: ``tinyforge-studio`` or ``python -m tinyforge_gui``.

With ``TINYFORGE_STARTUP_PROBE=1`` the app prints one JSON line when the window is first exposed
(seconds since process start, and whether torch/transformers are loaded) and quits; the
start-up benchmark reads it.
"""

from __future__ import annotations

import time

_T0 = time.time()

import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from pathlib import Path  # noqa: E402

logger = logging.getLogger("tinyforge_gui")


def process_start_time() -> float:
    """Wall-clock time this process started (psutil when available, else module import time)."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - best effort
        return _T0


_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _EarlyRecords(logging.Handler):
    """Holds the records logged before the log file is opened, to write them there then."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < 10_000:
            self.records.append(record)


def setup_logging(defer_file: bool = False) -> None:
    """Log to a file in the user's data folder and to stderr when there is one (windowed builds have none).

    With ``defer_file`` the file is opened later by :func:`open_log_file` (the window calls it
    after its first paint: logging.handlers and its imports cost ~10 ms); records logged until
    then are kept and written to the file first.
    """
    root = logging.getLogger()
    if root.handlers:
        return
    root.setLevel(logging.INFO)
    if sys.stderr is not None:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(_FORMAT))
        stream.setLevel(logging.WARNING)
        root.addHandler(stream)
    if defer_file:
        root.addHandler(_EarlyRecords())
    else:
        open_log_file()


def open_log_file() -> None:
    """Add the rotating ``studio.log`` handler (once), after the records held since start-up."""
    from logging.handlers import RotatingFileHandler

    root = logging.getLogger()
    early = [h for h in root.handlers if isinstance(h, _EarlyRecords)]
    for handler in early:
        root.removeHandler(handler)
    if any(isinstance(h, RotatingFileHandler) for h in root.handlers):
        return
    try:
        folder = Path(os.environ.get("TINYFORGE_LOG_DIR") or Path.home() / ".cache" / "tinyforge")
        folder.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = RotatingFileHandler(
            folder / "studio.log", maxBytes=2_000_000, backupCount=2, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter(_FORMAT))
    except OSError:
        handler = logging.NullHandler()
    root.addHandler(handler)
    for early_handler in early:
        for record in early_handler.records:
            handler.handle(record)


def create_app(argv: list[str] | None = None):  # noqa: ANN201 - QApplication, imported lazily
    """The QApplication with TinyForge's name, style and stylesheet (reuses an existing one)."""
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from tinyforge_gui import APPLICATION, ORGANIZATION
    from tinyforge_gui.resources import app_icon_path
    from tinyforge_gui.widgets.theme import apply_theme

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    app.setDesktopFileName("tinyforge-studio")
    app.setWindowIcon(QIcon(app_icon_path()))
    apply_theme(app)
    return app


def _install_probe(window) -> None:  # noqa: ANN001 - MainWindow
    """Print the start-up marker on the first expose, then quit."""
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    class _Probe(QObject):
        fired = False

        def eventFilter(self, obj, event):  # noqa: ANN001, N802 - Qt override
            if not self.fired and event.type() == QEvent.Type.Expose and obj.isExposed():
                self.fired = True
                now = time.time()
                started = process_start_time()
                print(
                    json.dumps(
                        {
                            "marker": "TINYFORGE_EXPOSED",
                            "exposed_time": now,
                            "since_process_start_s": round(now - started, 4),
                            "torch_loaded": "torch" in sys.modules,
                            "transformers_loaded": "transformers" in sys.modules,
                        }
                    ),
                    flush=True,
                )
                QTimer.singleShot(0, QApplication.quit)
            return False

    probe = _Probe(window)
    window.windowHandle().installEventFilter(probe)
    window._startup_probe = probe  # keep it alive


# Qt platforms that draw on a desktop and so need a display server to connect to.
_DESKTOP_PLATFORMS = ("xcb", "wayland")


def _requested_platforms(argv: list[str], environ: Mapping[str, str]) -> list[str]:
    """Qt platform plugins asked for by ``-platform NAME`` or QT_QPA_PLATFORM ("a;b" = a, then b)."""
    spec = environ.get("QT_QPA_PLATFORM", "")
    for i, arg in enumerate(argv):
        if arg == "-platform" and i + 1 < len(argv):
            spec = argv[i + 1]
    return [entry.strip() for entry in spec.split(";") if entry.strip()]


def missing_display(
    argv: list[str] | None = None, environ: Mapping[str, str] | None = None, platform: str | None = None
) -> str:
    """The one-line reason the window cannot open here, or "" when it can.

    On Linux/BSD without DISPLAY or WAYLAND_DISPLAY Qt would fail to load xcb (or, with the
    offscreen platform exported, draw a window nobody sees); say so instead. A platform the user
    chose that needs no display (``QT_QPA_PLATFORM=offscreen``, ``minimal``, ``eglfs``…) is kept.
    """
    argv = list(sys.argv if argv is None else argv)
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform.startswith(("win", "cygwin", "darwin")):
        return ""
    requested = _requested_platforms(argv, environ)
    for entry in requested:
        name, _, options = entry.partition(":")
        if not name.startswith(_DESKTOP_PLATFORMS) or "display=" in options:
            return ""  # an explicit display-less platform, or xcb:display=… names its server
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return ""
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.exists(os.path.join(runtime, "wayland-0")):
        return ""  # Wayland's default socket, used when WAYLAND_DISPLAY is unset
    return (
        "No display found: set DISPLAY (X11) or WAYLAND_DISPLAY, or run `xvfb-run make run`; "
        "QT_QPA_PLATFORM=offscreen draws the window without showing it."
    )


def _close_on_sigterm(window: object) -> None:
    """SIGTERM (a logout, systemd, ``kill``) closes the window as Quit does, without asking: a
    run is cancelled (a training saves its checkpoint), threads and the training child end and
    the settings are saved. Python runs signal handlers only between bytecodes, so a timer
    gives the interpreter a moment several times a second while Qt's loop waits."""
    import signal

    from PySide6.QtCore import QTimer

    def handle(signum: int, frame: object) -> None:
        window.terminate_requested = True  # type: ignore[attr-defined]
        QTimer.singleShot(0, window.close)  # type: ignore[attr-defined]

    signal.signal(signal.SIGTERM, handle)
    heartbeat = QTimer(window)  # type: ignore[arg-type]
    heartbeat.setObjectName("signalHeartbeat")
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start(250)


def main(argv: list[str] | None = None) -> int:
    """Open the main window; with a path argument, load that dataset."""
    argv = list(sys.argv if argv is None else argv)
    problem = missing_display(argv)
    if problem:
        # Before logging is set up: the stderr handler would print the same line twice.
        if sys.stderr is not None:
            print(problem, file=sys.stderr)
        return 2
    setup_logging(defer_file=True)
    # While the window lives, garbage is collected on a timer in the GUI thread
    # (tinyforge_gui.gc_guard); automatic collection stops now rather than when the window is
    # built, which spares start-up ~50 collector passes (~6 ms).
    gc.disable()
    app = create_app(argv)
    from PySide6.QtCore import QTimer

    from tinyforge_gui.gc_guard import install as install_gc_guard

    install_gc_guard(app)
    from tinyforge_gui.main_window import MainWindow

    window = MainWindow()
    window.show()
    _close_on_sigterm(window)
    QTimer.singleShot(200, open_log_file)  # after the first paint
    if os.environ.get("TINYFORGE_STARTUP_PROBE") == "1":
        _install_probe(window)
    elif len(argv) > 1 and not argv[1].startswith("-"):
        window.dataset_controller.load(argv[1])
    code = int(app.exec())
    open_log_file()  # when it quit sooner: the held records still reach the file
    return code


if __name__ == "__main__":
    sys.exit(main())
