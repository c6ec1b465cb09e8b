"""Helpers of the export tests: tiny trained models on disk, in the training output format.

Models are built with ``core.models`` (tiny-causal = Llama, tiny-seq2seq = T5, byte tokenizer),
fitted for a few dozen steps on the sample dataset (so answers are peaked, not random ties),
then saved exactly as a real training saves its output (``core.training.run_report``): ``model_manifest.json`` +
``model/`` (weights, tokenizer, ``tinyforge_prompt.json``) + ``training_report.json``.
The fixtures that use them (``tiny_models`` in ``tests/core/conftest.py``; ``exported`` and
``stub_service`` in ``tests/core/exporter/conftest.py``) build them once per test session,
because they take a few seconds each.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_qna.jsonl"
QUESTIONS = [
    "How do I reset my password?",
    "What is your refund policy?",
    "How can I contact support?",
]


def make_trained_model(name: str, out: Path, steps: int = 40, seed: int = 0) -> Path:
    """Build ``name`` (tiny-causal | tiny-seq2seq), fit it briefly and save a training output."""
    from core.models.tiny import TINY_SEQ2SEQ, build_tiny_model

    model, tokenizer = build_tiny_model(name, seed=seed)
    return save_trained_model(model, tokenizer, name, "seq2seq" if name == TINY_SEQ2SEQ else "causal", out,
                              steps, seed)


def save_trained_model(model: Any, tokenizer: Any, name: str, architecture: str, out: Path, steps: int = 40,
                       seed: int = 0, max_new_tokens: int | None = None) -> Path:
    """Fit ``model`` briefly on the sample dataset and save it as a training output (``name`` is
    its base model); ``max_new_tokens`` sets the saved default answer length."""
    import dataclasses

    import torch

    from core.jsonio import utc_now_iso, write_json_atomic
    from core.models.prompting import build_prompt_format, encode_example

    fmt = build_prompt_format(
        tokenizer, architecture, max_length=128, decoder_start_token_id=getattr(model.config, "decoder_start_token_id", None)
    )
    if max_new_tokens is not None:
        fmt = dataclasses.replace(fmt, max_new_tokens=max_new_tokens)
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    examples = [encode_example(tokenizer, fmt, r["input"], r["output"], 128) for r in records]
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        ex = examples[step % len(examples)]
        if architecture == "seq2seq":
            loss = model(
                input_ids=torch.tensor([ex.input_ids]), labels=torch.tensor([ex.labels])
            ).loss
        else:
            loss = model(input_ids=torch.tensor([ex.input_ids]), labels=torch.tensor([ex.labels])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model_dir = out / "model"
    model.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    fmt.save(model_dir)
    write_json_atomic(
        out / "model_manifest.json",
        {
            "model_type": "tinyforge_hf",
            "n_records": len(records),
            "created_time": utc_now_iso(),
            "base_model": name,
            "architecture": architecture,
            "model_dir": "model",
        },
    )
    write_json_atomic(
        out / "training_report.json",
        {"status": "completed", "base_model": name, "config": {"data_path": str(SAMPLE), "seed": 42}},
    )
    return out


SERVICE_MODULES = ("app", "model_loader", "schemas", "runtime", "request_guard", "http_timeouts")


@contextlib.contextmanager
def service_app(service_dir: Path, **env: str) -> Iterator[Any]:
    """Import ``service_dir/app.py`` in this process (for fastapi's TestClient), then forget it.

    The service's modules have plain top-level names (app, model_loader, ...), so they are
    dropped from ``sys.modules`` before and after, letting tests load several services.
    """
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    for name in SERVICE_MODULES:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(service_dir))
    try:
        module = importlib.import_module("app")
        yield module.app
    finally:
        sys.path.remove(str(service_dir))
        for name in SERVICE_MODULES:
            sys.modules.pop(name, None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
