"""The training config's documented import path: :class:`TrainConfig` and :class:`LoraSettings`.

They are defined in :mod:`core.options`, below both training and the run layout that records
them in ``run.json``; trainers, the window, tests and scripts import them from here.
"""

from __future__ import annotations

from core.options import DEFAULT_BASE_MODEL, LoraSettings, TrainConfig

__all__ = ["DEFAULT_BASE_MODEL", "LoraSettings", "TrainConfig"]
