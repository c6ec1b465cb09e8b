"""A real window on a real (virtual) X server: the app started by ``make run``.

Everything else in the suite draws offscreen, which would not notice a window that never
appears on a desktop. This test starts Xvfb on a free display, runs ``make run`` there (with
QT_QPA_PLATFORM unset, as on a desktop, and the running interpreter as the Makefile's
``$(PY)``), waits for a mapped window titled "TinyForge Studio",
photographs it from the X server (``xwd``), checks the picture is not blank and closes the app
with Ctrl+Q as a user would.

Needs ``make``, ``Xvfb``, ``xdotool`` and ``xwd`` (Debian: xvfb, xdotool, x11-apps) plus Qt's xcb
libraries; skipped when they are missing, unless TINYFORGE_REQUIRE_XVFB=1 (CI, ``make smoke``)
turns the skip into a failure. TINYFORGE_SMOKE_PNG=path keeps the screenshot;
TINYFORGE_SMOKE_APP=dist/TinyForgeStudio/TinyForgeStudio checks the packaged app instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TITLE = "TinyForge Studio"
TOOLS = ("make", "Xvfb", "xdotool", "xwd")
WINDOW_TIMEOUT_S = 20.0  # generous: CI machines are slow; a healthy start takes well under 2 s


def _require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"needs {', '.join(missing)} (Debian: apt-get install make xvfb xdotool x11-apps)"
    if os.environ.get("TINYFORGE_REQUIRE_XVFB") == "1":
        pytest.fail(f"TINYFORGE_REQUIRE_XVFB=1 but the real-window test {reason}")
    pytest.skip(reason)


@pytest.fixture
def xvfb_display(tmp_path: Path) -> Iterator[str]:
    """A fresh Xvfb on a display number it picks itself (``-displayfd``); yields ":N"."""
    _require_tools()
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "xvfb.log").open("wb"),
    )
    os.close(write_fd)
    try:
        number = b""
        deadline = time.monotonic() + 15
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = os.read(read_fd, 16)  # Xvfb writes "N\n" once it accepts connections
            if not chunk:
                break
            number += chunk
        if not number.strip().isdigit():
            pytest.fail(f"Xvfb did not start: {(tmp_path / 'xvfb.log').read_text(errors='replace')[-2000:]}")
        yield f":{number.strip().decode()}"
    finally:
        os.close(read_fd)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _x(display: str, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env={**os.environ, "DISPLAY": display}, capture_output=True, text=True,
                          timeout=timeout)


def _visible_windows(display: str, title: str) -> list[str]:
    """Ids of mapped (viewable) windows whose name is exactly ``title``."""
    found = _x(display, "xdotool", "search", "--onlyvisible", "--name", f"^{title}$")
    return found.stdout.split()


def read_xwd(data: bytes) -> np.ndarray:
    """An X Window Dump (``xwd`` output, 24/32-bit TrueColor) as an RGB uint8 array."""
    header_size, version, pixmap_format, depth, width, height = struct.unpack(">6I", data[:24])
    (byte_order, _unit, _bit_order, _pad, bits_per_pixel, bytes_per_line, _visual,
     red_mask, green_mask, blue_mask, _bits_rgb, _entries, ncolors) = struct.unpack(">13I", data[28:80])
    if version != 7 or pixmap_format != 2 or bits_per_pixel != 32:
        raise ValueError(f"unsupported XWD: version {version}, format {pixmap_format}, {bits_per_pixel} bpp")
    offset = header_size + 12 * ncolors  # the window name is inside header_size; then the colour map
    rows = np.frombuffer(data, dtype="<u4" if byte_order == 0 else ">u4", count=height * bytes_per_line // 4,
                         offset=offset).reshape(height, bytes_per_line // 4)[:, :width]
    channels = []
    for mask in (red_mask, green_mask, blue_mask):
        shift = (mask & -mask).bit_length() - 1
        channels.append(((rows & mask) >> shift).astype(np.uint8))
    return np.dstack(channels)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """A minimal PNG writer (8-bit RGB), so the test needs no imaging library."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def test_read_xwd_decodes_a_known_picture() -> None:
    """The decoder the smoke test relies on: a 2x2 LSB-first dump with a padded row."""
    width, height, bytes_per_line = 2, 2, 12  # one padding pixel per row
    name = b"w\x00"
    header_size = 100 + len(name)
    header = struct.pack(">25I", header_size, 7, 2, 24, width, height, 0, 0, 32, 0, 32, 32, bytes_per_line, 4,
                         0xFF0000, 0x00FF00, 0x0000FF, 8, 256, 0, width, height, 0, 0, 0)
    pixels = struct.pack("<6I", 0xFF0000, 0x00FF00, 0, 0x0000FF, 0x102030, 0)
    image = read_xwd(header + name + pixels)
    assert image.shape == (2, 2, 3)
    assert image[0, 0].tolist() == [255, 0, 0] and image[0, 1].tolist() == [0, 255, 0]
    assert image[1, 0].tolist() == [0, 0, 255] and image[1, 1].tolist() == [0x10, 0x20, 0x30]


@pytest.mark.slow
def test_make_run_shows_a_real_window(xvfb_display: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=xvfb_display, TINYFORGE_SETTINGS_FILE=str(tmp_path / "settings.ini"),
               TINYFORGE_LOG_DIR=str(tmp_path / "logs"))
    log = (tmp_path / "app.log").open("w+")
    started = time.monotonic()
    # Through `make run` itself (with this interpreter as $(PY), and no install step), so
    # whatever the Makefile exports reaches the app just as on a desktop; or the packaged app.
    packaged = os.environ.get("TINYFORGE_SMOKE_APP")
    command = [packaged] if packaged else ["make", "-s", "--no-print-directory", "run", "STAMP=", f"PY={sys.executable}"]
    app = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        windows: list[str] = []
        while not windows and time.monotonic() - started < WINDOW_TIMEOUT_S and app.poll() is None:
            time.sleep(0.2)
            windows = _visible_windows(xvfb_display, TITLE)
        log.seek(0)
        assert windows, f"no mapped {TITLE!r} window within {WINDOW_TIMEOUT_S:.0f} s " \
                        f"(app exit code {app.poll()}); its output:\n{log.read()[-3000:]}"
        shown_after = time.monotonic() - started
        time.sleep(1.0)  # let the first paint and the deferred start-up work land
        # The X server's own copy of the window's pixels (not the app's rendering of itself).
        shot = subprocess.run(["xwd", "-silent", "-id", windows[0]], env={**os.environ, "DISPLAY": xvfb_display},
                              capture_output=True, timeout=20)
        assert shot.returncode == 0 and shot.stdout, f"xwd failed: {shot.stderr.decode(errors='replace')}"
        image = read_xwd(shot.stdout)
        png = Path(os.environ.get("TINYFORGE_SMOKE_PNG") or tmp_path / "real-window.png")
        write_png(png, image)
        height, width, _ = image.shape
        assert width >= 800 and height >= 500, f"the window is only {width}x{height}"
        grey = image.astype(np.float64).mean(axis=2)
        colours = len(np.unique(image.reshape(-1, 3), axis=0))
        # A blank (unpainted or single-colour) window has no variance and one or two colours;
        # the real one has text, icons, frames: many shades.
        assert grey.std() > 8 and colours > 50, f"blank-looking window: std {grey.std():.1f}, {colours} colours ({png})"

        # Close it as a user would (Ctrl+Q); it must save its settings and exit cleanly.
        _x(xvfb_display, "xdotool", "windowactivate", "--sync", windows[0])
        _x(xvfb_display, "xdotool", "windowfocus", "--sync", windows[0])
        _x(xvfb_display, "xdotool", "key", "--clearmodifiers", "ctrl+q")
        try:
            code = app.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail("the app did not quit on Ctrl+Q within 15 s")
        log.seek(0)
        output = log.read()
        assert code == 0, f"exit code {code}; output:\n{output[-3000:]}"
        assert "Traceback" not in output, output[-3000:]
        assert (tmp_path / "settings.ini").is_file(), "closing did not save the window's settings"
        assert (tmp_path / "logs" / "studio.log").is_file(), "the app opened no log file"
        print(f"window shown after {shown_after:.2f} s; {width}x{height}, {colours} colours; screenshot {png}")
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()
        log.close()
