"""Code-shape counts of a checkout, to compare two revisions of a restructuring.

Per package: how often ``dict[str, Any]`` is written (and how many return types use it), how
many ``.get("…")`` lookups remain, the longest files and the longest functions. Run it on two
checkouts to compare: ``python benchmarks/code_shape.py [ROOT]`` (default: this checkout).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

PACKAGES = ("core", "tinyforge_gui")
SHOWN = 5


def shape(root: Path, package: str) -> dict[str, object]:
    """The counts of one package under ``root``."""
    texts = {path: path.read_text(encoding="utf-8") for path in sorted((root / package).rglob("*.py"))}
    functions: list[tuple[int, str]] = []
    dict_returns = 0
    for path, text in texts.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.returns is not None and "dict[str, Any]" in ast.unparse(node.returns):
                    dict_returns += 1
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                functions.append((length, f"{path.relative_to(root)}:{node.name}"))
    files = sorted(((len(t.splitlines()), str(p.relative_to(root))) for p, t in texts.items()), reverse=True)
    return {
        "dict_any": sum(t.count("dict[str, Any]") for t in texts.values()),
        "dict_any_returns": dict_returns,
        "get_lookups": sum(len(re.findall(r'\.get\("', t)) for t in texts.values()),
        "longest_files": files[:SHOWN],
        "longest_functions": sorted(functions, reverse=True)[:SHOWN],
    }


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else Path(__file__).resolve().parents[1])
    for package in PACKAGES:
        s = shape(root, package)
        print(f"{package}: dict[str, Any] {s['dict_any']} (return types {s['dict_any_returns']}), "
              f".get(\"…\") {s['get_lookups']}")
        print("  longest files:", ", ".join(f"{n} {p}" for n, p in s["longest_files"]))  # type: ignore[attr-defined]
        print("  longest functions:", ", ".join(f"{n} {p}" for n, p in s["longest_functions"]))  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
