"""``foremforge``: the command line of TinyForge. One module of :mod:`core.cli` per command, each
with its ``SUMMARY``, ``add_arguments(parser)`` and ``run(args) -> int``; every ``run`` goes
through :func:`core.console.run_command` (Ctrl-C, cancel and errors said the same way)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from core import __version__
from core.cli import evaluate, export, init, predict, serve, train, validate

# The commands in the order ``foremforge --help`` lists them.
COMMANDS = {
    "init": init,
    "validate": validate,
    "train": train,
    "export": export,
    "predict": predict,
    "evaluate": evaluate,
    "serve": serve,
}


class _Parser(argparse.ArgumentParser):
    """No prefix matching (``--mod`` is not ``--model-path``: aliases are explicit), and usage
    errors say ``Error:`` like every other error of the command line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"Error: {message}\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``command`` given, only that command's options are built.

    Building ``train``/``export`` options imports their modules, which ``validate`` on a
    large file should not pay for at start-up.
    """
    parser = _Parser(
        prog="foremforge", description="TinyForge: fine-tune small language models on question/answer pairs and conversations."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        # Its ``--help`` opens with what it does (its line in the list, as a sentence).
        summary = module.SUMMARY
        sub = commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
        if command in (None, name):
            module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    return int(args.run(args))
