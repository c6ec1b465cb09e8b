"""Shared helpers for the real-training tests (tiny models, an event recorder, small datasets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.events import Event
from core.training.config import LoraSettings, TrainConfig

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "sample_qna.jsonl"


def sample_records() -> list[dict[str, str]]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def tiny_config(out: Path, base: str = "tiny-causal", data: Path = SAMPLE, lora: bool = False,
                **overrides: Any) -> TrainConfig:
    """A fast real-training config on a tiny model (CPU, seed 0)."""
    # No question variants unless a test asks: the tests of other mechanics keep their record split.
    values: dict[str, Any] = {"epochs": 1.0, "learning_rate": 3e-3, "seed": 0, "device": "cpu", "variants": 0}
    values.update(overrides)
    return TrainConfig(data_path=str(data), output_dir=str(out), base_model=base,
                       lora=LoraSettings(enabled=lora), **values)


class EventRecorder:
    """A fake callback that keeps every event; optional hook runs on each."""

    def __init__(self, hook: Any = None) -> None:
        self.events: list[Event] = []
        self.hook = hook

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if self.hook is not None:
            self.hook(event)

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.kind == kind]
