"""Which inputs the parity check asks: given ones, held-out and training records of the run,
or a few fixed prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.run_layout import ModelManifest

__all__ = ["FIXED_PROMPTS", "parity_texts"]

FIXED_PROMPTS = (
    "How do I reset my password?",
    "What is your refund policy?",
    "How can I contact support?",
    "Where can I find my order history?",
)


def parity_texts(
    train_root: Path, manifest: ModelManifest, given: list[str] | None, limit: int = 12
) -> tuple[list[str], str]:
    """Inputs for parity: given ones, else up to half held-out records of the training run and
    the rest training records, else a few fixed prompts. Returns (texts, where from)."""
    from core.jsonio import read_json
    from core.run_layout import TRAINING_REPORT_FILE

    if given:
        return [str(t) for t in given][:limit], "given"
    report: dict[str, Any] = {}
    report_path = train_root / TRAINING_REPORT_FILE
    if report_path.is_file():
        try:
            loaded = read_json(report_path)
            report = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            report = {}
    for key in ("eval_inputs", "heldout_inputs"):
        values = report.get(key)
        if isinstance(values, list) and values:
            return [str(v) for v in values][:limit], f"training_report.{key}"
    data_path = _find_data_path(report, manifest)
    if data_path is not None:
        config = report.get("config") if isinstance(report.get("config"), dict) else {}
        texts = _read_inputs(data_path, columns=config.get("columns") or None)
        # Trained with question variants: every record trained, and the phrasings held out are
        # the questions asked in other words, where a quantized graph drifts first.
        unseen = _unseen_phrasings(train_root)
        held_out = unseen or _held_out(texts, report.get("config") or {})
        # Both kinds matter: held-out inputs (how it generalises) and training inputs (what it learned).
        trained = [t for t in texts if t not in set(held_out)]
        chosen = held_out[: limit // 2] + trained[: limit - min(len(held_out), limit // 2)]
        if chosen:
            kind = "held-out phrasings" if unseen else "held-out"
            return chosen[:limit], f"{min(len(held_out), limit // 2)} {kind} and training records of {data_path}"
    return list(FIXED_PROMPTS), "fixed prompts"


def _unseen_phrasings(train_root: Path) -> list[str]:
    """The phrasings a run with question variants held out (``variants.jsonl``), or []."""
    from core.run_layout import VARIANTS_FILE
    from core.training.variants import read_variants_jsonl

    path = train_root / VARIANTS_FILE
    if not path.is_file():
        return []
    try:
        return [row.input for row in read_variants_jsonl(path) if row.split == "unseen"]
    except (OSError, ValueError):
        return []


def _held_out(texts: list[str], config: dict[str, Any]) -> list[str]:
    """The eval split of the training run, drawn exactly as the trainer draws it."""
    from core.training.evaluate import split_indices

    if not texts or not isinstance(config, dict):
        return []
    _, held = split_indices(len(texts), config.get("eval_split"), int(config.get("seed", 42)))
    return [texts[i] for i in held]


def _find_data_path(report: dict[str, Any], manifest: ModelManifest) -> Path | None:
    config = report.get("config") if isinstance(report.get("config"), dict) else {}
    for value in (report.get("data_path"), config.get("data_path"), manifest.data_path):
        if value and Path(str(value)).is_file():
            return Path(str(value))
    return None


def _read_inputs(path: Path, limit: int = 100_000, columns: dict[str, str] | None = None) -> list[str]:
    """The question of the first ``limit`` records (in file order), of any dataset format; a
    conversation's last question. Rows that fit no format are skipped."""
    from itertools import islice

    from core.training.dataset import iter_conversations

    texts: list[str] = []
    try:
        for _, _, conversation in islice(iter_conversations(path, columns), limit):
            texts.append(conversation.question)
    except (OSError, ValueError):  # a DatasetError past the good rows: keep what was read
        pass
    return texts
