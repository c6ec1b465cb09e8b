"""Fixtures shared by the core tests of several packages (the export fixtures of the exporter's
tests alone are in ``tests/core/exporter/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.export_helpers import make_trained_model


@pytest.fixture(scope="session", name="tiny_models")
def tiny_models_fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Training output folders of a tiny causal and a tiny seq2seq model (built once per session)."""
    root = tmp_path_factory.mktemp("trained")
    return {
        "causal": make_trained_model("tiny-causal", root / "causal"),
        "seq2seq": make_trained_model("tiny-seq2seq", root / "seq2seq"),
    }
