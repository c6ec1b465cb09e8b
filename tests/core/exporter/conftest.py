"""Fixtures of the exporter's tests: exported tiny models and a dry run's service folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session", name="exported")
def exported_fixture(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Both tiny models exported (fp32 + int8, parity, self-test): name -> (service dir, report),
    once per session."""
    from core.exporter.onnx_export import export_real

    root = tmp_path_factory.mktemp("services")
    return {
        name: (root / name, export_real(model_root, root / name, max_new_tokens=24))
        for name, model_root in tiny_models.items()
    }


@pytest.fixture(name="stub_service")
def stub_service_fixture(tmp_path: Path) -> Path:
    """A service folder built from a dry run's stub (placeholder answers, no model)."""
    from core.exporter.builder import build

    stub = tmp_path / "stub" / "model_stub.json"
    stub.parent.mkdir()
    stub.write_text(json.dumps({"model_type": "tinyforge_stub", "n_records": 3}))
    build(stub, tmp_path / "svc", export_onnx=True)
    return tmp_path / "svc"
