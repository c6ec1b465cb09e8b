"""``evaluation.json`` (and ``evaluations/<file>.json``): did the model learn?

One :class:`EvaluationRow` per evaluated record, one :class:`SplitMeans` per split, and the verdict
(written by :mod:`core.training.evaluate`).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from core.run_layout.names import EVALUATION_FILE, MODEL_DIR
from core.run_layout.results import _first_file, _read, _Result


class SplitMeans(_Result):
    """One evaluated split's means (``evaluation.json`` → ``splits``)."""

    n: int = 0
    tuned_rouge_l: float | None = None
    base_rouge_l: float | None = None
    tuned_exact: float | None = None
    base_exact: float | None = None
    reproduced: int = 0
    tuned_fact_recall: float | None = None
    base_fact_recall: float | None = None
    answered: int = 0  # questions answered with every checkable fact of the reference (facts.answered)
    base_answered: int = 0
    loss: float | None = None
    perplexity: float | None = None
    base_loss: float | None = None
    base_perplexity: float | None = None


class EvaluationRow(_Result):
    """One evaluated record: the reference and both models' answers with their scores."""

    split: str = ""
    input: str = ""
    reference: str = ""
    base_answer: str = ""
    tuned_answer: str = ""
    base_rouge_l: float = 0.0
    tuned_rouge_l: float = 0.0
    base_exact: bool = False
    tuned_exact: bool = False
    base_fact_recall: float | None = None
    tuned_fact_recall: float | None = None
    base_answered: bool = False
    tuned_answered: bool = False
    system: str | None = None  # a conversation's question asked after a system message
    history: list[dict[str, str]] | None = None  # and after earlier turns (role, content)


class Evaluation(_Result):
    """``evaluation.json``: did the model learn? (core.training.evaluate)."""

    created_time: str | None = None
    max_new_tokens: int | None = None
    reproduced_rouge_l: float | None = None
    splits: dict[str, SplitMeans] = Field(default_factory=dict)
    rows: list[EvaluationRow] = Field(default_factory=list)
    verdict: str = ""
    seconds: float | None = None
    model: str | None = None
    base_model: str | None = None
    # Where it was written or read (not a field of the file).
    path: Path | None = Field(default=None, exclude=True)


# --------------------------------------------------------------------------- readers


def evaluation_path(folder: str | os.PathLike[str]) -> Path | None:
    """``evaluation.json`` of a run folder (``model/``) or a training output folder, if any."""
    base = Path(folder)
    return _first_file(base / MODEL_DIR / EVALUATION_FILE, base / EVALUATION_FILE)


def read_evaluation(path: str | os.PathLike[str]) -> Evaluation:
    """An evaluation: a run or training output folder's ``evaluation.json``, or a file
    (``evaluations/<name>.json``)."""
    target = Path(path)
    if target.is_dir():
        target = evaluation_path(target) or target / EVALUATION_FILE
    evaluation = _read(Evaluation, target)
    evaluation.path = target
    return evaluation
