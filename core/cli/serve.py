"""``foremforge serve``: run an exported service folder (``--dry-run``: say how, start nothing)."""

from __future__ import annotations

import argparse
import sys
from functools import partial

from core.console import CommandConsole, run_command

SUMMARY = "run an exported service folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--service", "--dir", "-d", dest="service", required=True,
        help="the exported service folder (--dir is TinyForgeAI's spelling)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", "-p", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--api-key", default=None, metavar="KEY",
        help="require 'Authorization: Bearer KEY' on every route but /health (default: $TINYFORGE_API_KEY; "
        "prefer the variable, a command line is visible to other users)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the uvicorn command and the service folder; start nothing")


def run(args: argparse.Namespace) -> int:
    # Ctrl-C is uvicorn's own (it shuts the server down); no cancel token here.
    return run_command(partial(_serve, args))


def _serve(args: argparse.Namespace, console: CommandConsole) -> int:
    from core.exporter.serve import serve, serve_dry_run

    if not 0 < args.port < 65536:
        print(f"Error: --port must be between 1 and 65535, not {args.port}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(serve_dry_run(args.service, host=args.host, port=args.port, api_key=args.api_key))
        return 0
    serve(args.service, host=args.host, port=args.port, api_key=args.api_key)
    return 0
