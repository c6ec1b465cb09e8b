"""TinyForge core: the headless engine behind the CLI, scripts and the desktop app.

Importing any module of this package loads neither Qt nor torch/transformers/onnx;
those load inside the functions that need them.
"""

__version__ = "0.2.0"
