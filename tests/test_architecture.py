"""The layers hold: the import-linter contracts in pyproject.toml, and no import cycle in the GUI or in core."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    pytest.importorskip("importlinter")
    proc = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                           "sys.exit(lint_imports())"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "4 kept, 0 broken" in proc.stdout


def _cycles(package: str) -> list[list[str]]:
    import grimp

    graph = grimp.build_graph(package)
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if not imported.startswith(package):
                continue
            if state.get(imported) == 1:
                found.append([*path[path.index(imported):], imported])
            elif imported not in state:
                visit(imported, path)
        path.pop()
        state[module] = 2

    for module in sorted(graph.modules):
        if module not in state:
            visit(module, [])
    return found


@pytest.mark.parametrize("package", ["tinyforge_gui", "core"])
def test_no_import_cycle_between_modules(package: str) -> None:
    """No module imports one that imports it back, even inside a function (grimp sees those too)."""
    pytest.importorskip("grimp")
    # "core" is also tests/core's last name: make sure the graph is the app's package.
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None and Path(spec.origin).parent == ROOT / package
    assert _cycles(package) == []


def test_every_gui_module_lives_in_a_named_folder_or_is_the_window_itself() -> None:
    top_level = sorted(p.stem for p in (ROOT / "tinyforge_gui").glob("*.py"))
    assert top_level == ["__init__", "__main__", "app_entry", "gc_guard", "main_window", "resources", "settings",
                         "state"]
