"""The first command: ``make run`` opens a visible window, or says in one line why it cannot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyforge_gui.__main__ import missing_display

ROOT = Path(__file__).resolve().parents[1]
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _make_env(target: str, environ: dict[str, str]) -> str:
    """The QT_QPA_PLATFORM that ``make TARGET`` hands its command ("<unset>" when none).

    $(PY) is replaced by a shell that prints the variable and STAMP is emptied, so nothing is
    installed or started.
    """
    probe = "sh -c 'echo QPA=[$${QT_QPA_PLATFORM-<unset>}]' sh"
    done = subprocess.run(["make", "-s", "--no-print-directory", target, "STAMP=", f"PY={probe}"], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = re.search(r"QPA=\[(.*)\]", done.stdout)
    assert found, done.stdout
    return found.group(1)


@needs_make
def test_make_run_does_not_force_the_offscreen_platform() -> None:
    desktop = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    assert _make_env("run", desktop) == "<unset>"
    # A platform the user chose explicitly still reaches the app.
    assert _make_env("run", {**desktop, "QT_QPA_PLATFORM": "offscreen"}) == "offscreen"


@needs_make
def test_only_test_targets_draw_offscreen() -> None:
    desktop = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    assert _make_env("test", desktop) == "offscreen"
    assert _make_env("screenshots", desktop) == "offscreen"
    dry = subprocess.run(["make", "-n", "--no-print-directory", "package-selftest"], cwd=ROOT, env=desktop, capture_output=True,
                         text=True, timeout=60)
    assert "QT_QPA_PLATFORM=offscreen" in dry.stdout
    dry_run = subprocess.run(["make", "-n", "--no-print-directory", "run", "STAMP="], cwd=ROOT, env=desktop,
                             capture_output=True, text=True, timeout=60)
    assert dry_run.stdout.strip().splitlines()[-1].endswith("-m tinyforge_gui"), dry_run.stdout


@pytest.mark.parametrize(
    ("environ", "argv", "platform", "needs_display"),
    [
        ({}, [], "linux", True),
        ({"QT_QPA_PLATFORM": "xcb"}, [], "linux", True),
        ({"QT_QPA_PLATFORM": "wayland;xcb"}, [], "linux", True),
        ({"DISPLAY": ":0"}, [], "linux", False),
        ({"WAYLAND_DISPLAY": "wayland-1"}, [], "linux", False),
        ({"QT_QPA_PLATFORM": "offscreen"}, [], "linux", False),
        ({"QT_QPA_PLATFORM": "minimal"}, [], "linux", False),
        ({"QT_QPA_PLATFORM": "xcb:display=:3"}, [], "linux", False),
        ({}, ["app", "-platform", "offscreen"], "linux", False),
        ({"QT_QPA_PLATFORM": "offscreen"}, ["app", "-platform", "xcb"], "linux", True),
        ({}, [], "darwin", False),
        ({}, [], "win32", False),
    ],
)
def test_missing_display(environ: dict[str, str], argv: list[str], platform: str, needs_display: bool) -> None:
    reason = missing_display(argv, environ, platform)
    assert bool(reason) is needs_display
    if needs_display:
        assert "\n" not in reason and "DISPLAY" in reason and "xvfb-run" in reason


def test_wayland_default_socket_counts_as_a_display(tmp_path: Path) -> None:
    (tmp_path / "wayland-0").touch()
    assert missing_display([], {"XDG_RUNTIME_DIR": str(tmp_path)}, "linux") == ""
    assert missing_display([], {"XDG_RUNTIME_DIR": str(tmp_path / "none")}, "linux") != ""


def _app_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    drop = ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(TINYFORGE_SETTINGS_FILE=str(tmp_path / "settings.ini"), TINYFORGE_LOG_DIR=str(tmp_path / "logs"),
               PYTHONPATH=str(ROOT), **extra)
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is for Linux/BSD")
def test_app_without_a_display_says_so_in_one_line(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tinyforge_gui"], cwd=tmp_path, env=_app_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("No display found") and "xvfb-run make run" in lines[0]
    assert done.stdout == ""


@pytest.mark.gui
def test_explicit_offscreen_platform_still_opens_the_window(tmp_path: Path) -> None:
    env = _app_env(tmp_path, QT_QPA_PLATFORM="offscreen", TINYFORGE_STARTUP_PROBE="1")
    done = subprocess.run([sys.executable, "-m", "tinyforge_gui"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "TINYFORGE_EXPOSED" in done.stdout
