"""``foremforge init``: create a project layout in the current folder (never overwrites)."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from core.console import CommandConsole, run_command

SUMMARY = "create a project layout in the current folder (never overwrites)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", "-y", action="store_true", help="create without asking")


def run(args: argparse.Namespace) -> int:
    return run_command(partial(_init, args))


def _init(args: argparse.Namespace, console: CommandConsole) -> int:
    from core.scaffold import run_init

    def ask(prompt: str) -> str | None:
        try:
            return input(prompt)
        except EOFError:
            return None

    try:
        root = Path.cwd()
    except FileNotFoundError:
        print("Error: the current folder no longer exists; cd into a folder and run init again", file=sys.stderr)
        return 1
    return run_init(root, args.yes, sys.stdout, sys.stderr, ask)
