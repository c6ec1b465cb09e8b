"""``foremforge export``: build a service folder (and ONNX graphs, GGUF files) from a trained model.

Its flags, its summary and its run are those of TinyForgeAI's script ``python
core/exporter/builder.py``, which keeps them beside ``build`` (see there why).
"""

from __future__ import annotations

import argparse

SUMMARY = "build a service folder (and ONNX graphs) from a trained model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.exporter.builder import add_export_arguments

    add_export_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from core.exporter.builder import run_export_command

    return run_export_command(args)
