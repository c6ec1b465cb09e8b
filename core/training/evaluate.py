"""Did the model learn? Base and fine-tuned answers side by side, scored against the references.

After every real training (and with ``foremforge evaluate``), the fine-tuned model and its base
model answer, greedily and with the default answer length, a bounded sample of each split:
``train`` (the user's questions word for word), ``unseen`` (phrasings of the same facts held out
of training: questions asked in other words), ``eval`` (held-out records, when a run trains
without variants) and ``data`` (the user's own evaluation file). Each row keeps the input, the
reference, both answers and their ROUGE-L F1, exact match and fact recall
(:mod:`core.training.facts`); each split gets its means, the fine-tuned model's loss and
perplexity on the references, and the run one plain verdict sentence that names both halves. Written as ``evaluation.json`` beside
``training_report.json``. Metrics are pure Python; models load lazily.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from core.events import CancelToken, EventCallback, Log, Progress, StageStarted, noop
from core.jsonio import utc_now_iso
from core.run_layout import (
    EVALUATION_FILE,
    EVALUATIONS_DIR,
    MODEL_DIR,
    TRAINING_REPORT_FILE,
    VARIANTS_FILE,
    Evaluation,
    EvaluationRow,
    SplitMeans,
    TrainingReport,
    write_result,
)
from core.run_layout import read_training_report as _read_training_report
from core.training.facts import answered, fact_recall
from core.training.formats import context_of

logger = logging.getLogger(__name__)

__all__ = [
    "EVALUATIONS_DIR",
    "EVALUATION_NAME",
    "REPRODUCED_ROUGE",
    "base_of_lora",
    "evaluate_folder",
    "evaluate_models",
    "exact_match",
    "rouge_l_f1",
    "split_indices",
    "splits_from_phrasings",
    "splits_from_records",
    "verdict",
]

EVALUATION_NAME = EVALUATION_FILE  # core.run_layout's name, as callers of this module spell it
MAX_ROWS_PER_SPLIT = 64  # bounded: evaluation must stay a small part of the run
REPRODUCED_ROUGE = 0.8  # a training answer counts as reproduced from this ROUGE-L F1 on
_WORD = re.compile(r"\w+", re.UNICODE)

Pair = tuple[str, str]


# --------------------------------------------------------------------------- metrics


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def rouge_l_f1(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased word tokens (longest common subsequence)."""
    cand, ref = _words(candidate), _words(reference)
    if not cand or not ref:
        return 1.0 if cand == ref else 0.0
    previous = [0] * (len(ref) + 1)
    for word in cand:
        current = [0]
        for j, other in enumerate(ref, 1):
            current.append(previous[j - 1] + 1 if word == other else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(candidate: str, reference: str) -> bool:
    """Equal after case folding and collapsing whitespace."""
    return " ".join(candidate.casefold().split()) == " ".join(reference.casefold().split())


# --------------------------------------------------------------------------- splits


def held_out_count(n_records: int, eval_split: float | None) -> int:
    """How many of ``n_records`` records a record split holds out: ``eval_split`` of them (at
    least one), by default 0.1 with 10 or more records and none with fewer."""
    fraction = eval_split if eval_split is not None else (0.1 if n_records >= 10 else 0.0)
    return max(1, round(n_records * fraction)) if fraction > 0 else 0


def split_indices(n_records: int, eval_split: float | None, seed: int) -> tuple[list[int], list[int]]:
    """``(train, eval)`` record indices as the trainer splits them (:func:`held_out_count`)."""
    order = list(range(n_records))
    random.Random(seed).shuffle(order)
    n_eval = held_out_count(n_records, eval_split)
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def _bounded(indices: list[int], seed: int) -> list[int]:
    if len(indices) <= MAX_ROWS_PER_SPLIT:
        return indices
    return sorted(random.Random(seed).sample(indices, MAX_ROWS_PER_SPLIT))


# --------------------------------------------------------------------------- evaluation


def evaluate_models(
    tuned: Any,
    base: Callable[[], AbstractContextManager[Any]],
    tokenizer: Any,
    fmt: Any,
    splits: dict[str, Sequence[Pair]],
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
) -> Evaluation:
    """Evaluate loaded models on ``splits`` (name → (input, reference) pairs).

    ``base`` opens a context that yields the base model (for LoRA: the same model with its
    adapter disabled; for a full fine-tune: a freshly loaded base model).
    """
    from core.training.predict import generate_answers

    emit = on_event or noop
    token = cancel or CancelToken()
    started = time.time()
    total = 2 * sum(len(pairs) for pairs in splits.values())
    done = 0
    emit(StageStarted("evaluate", f"answering {total // 2} records with the base and the fine-tuned model"))

    def answer(model: Any, pairs: Sequence[Pair], limit: int | None = None) -> list[str]:
        nonlocal done
        offset = done

        def step(n: int, _of: int) -> None:
            nonlocal done
            done = offset + n
            emit(Progress("evaluate", done, total))
            token.raise_if_cancelled()

        return generate_answers(model, tokenizer, fmt, [q for q, _ in pairs], max_new_tokens=limit, on_batch=step,
                                contexts=[context_of(p) for p in pairs])

    tuned_answers = {name: answer(tuned, pairs) for name, pairs in splits.items()}
    tuned_loss = {name: _answer_loss(tuned, tokenizer, fmt, pairs) for name, pairs in splits.items()}
    with base() as base_model:
        base_answers = {name: answer(base_model, pairs, _base_answer_limit(tokenizer, fmt, pairs))
                        for name, pairs in splits.items()}
        base_loss = {name: _answer_loss(base_model, tokenizer, fmt, pairs) for name, pairs in splits.items()}
    result = Evaluation(created_time=utc_now_iso(), max_new_tokens=fmt.max_new_tokens,
                        reproduced_rouge_l=REPRODUCED_ROUGE, splits={}, rows=[])
    for name, pairs in splits.items():
        rows = [_row(name, p, b, t) for p, b, t in zip(pairs, base_answers[name], tuned_answers[name], strict=True)]
        result.rows.extend(rows)
        result.splits[name] = _means(rows, tuned_loss[name], base_loss[name])
    result.verdict = verdict(result.splits)
    result.seconds = round(time.time() - started, 2)
    emit(Log(f"evaluation: {result.verdict}"))
    return result


def _base_answer_limit(tokenizer: Any, fmt: Any, pairs: Sequence[Pair]) -> int:
    """The base model's answer length: twice the longest reference (at most the default).

    An untuned base model rarely stops by itself; tokens past twice the reference can only
    lower its scores, and generating them took most of an evaluation's time.
    """
    longest = max((len(tokenizer(ref, add_special_tokens=False)["input_ids"]) for _, ref in pairs), default=0)
    return max(8, min(int(fmt.max_new_tokens), 2 * longest + 8))


def _row(split: str, pair: Any, base_answer: str, tuned_answer: str) -> EvaluationRow:
    """One record's answers and scores; a conversation's question asked after a system message
    and earlier turns says so (``system``, ``history``)."""
    question, reference = pair[0], pair[1]
    base_rouge, tuned_rouge = rouge_l_f1(base_answer, reference), rouge_l_f1(tuned_answer, reference)
    row = EvaluationRow(
        split=split,
        input=question,
        reference=reference,
        base_answer=base_answer,
        tuned_answer=tuned_answer,
        base_rouge_l=round(base_rouge, 4),
        tuned_rouge_l=round(tuned_rouge, 4),
        base_exact=exact_match(base_answer, reference),
        tuned_exact=exact_match(tuned_answer, reference),
        base_fact_recall=fact_recall(base_answer, reference),
        tuned_fact_recall=fact_recall(tuned_answer, reference),
        base_answered=answered(base_answer, reference, base_rouge, REPRODUCED_ROUGE),
        tuned_answered=answered(tuned_answer, reference, tuned_rouge, REPRODUCED_ROUGE),
    )
    context = context_of(pair)
    if context.system is not None:
        row.system = context.system
    if context.history:
        row.history = [{"role": role, "content": content} for role, content in context.history]
    return row


def _means(rows: list[EvaluationRow], tuned_loss: float | None, base_loss: float | None) -> SplitMeans:
    def mean(values: list[float | bool | None]) -> float | None:
        known = [float(v) for v in values if v is not None]
        return round(sum(known) / len(known), 4) if known else None

    return SplitMeans(
        n=len(rows),
        tuned_rouge_l=mean([r.tuned_rouge_l for r in rows]),
        base_rouge_l=mean([r.base_rouge_l for r in rows]),
        tuned_exact=mean([r.tuned_exact for r in rows]),
        base_exact=mean([r.base_exact for r in rows]),
        reproduced=sum(r.tuned_rouge_l >= REPRODUCED_ROUGE for r in rows),
        tuned_fact_recall=mean([r.tuned_fact_recall for r in rows]),
        base_fact_recall=mean([r.base_fact_recall for r in rows]),
        answered=sum(r.tuned_answered for r in rows),
        base_answered=sum(r.base_answered for r in rows),
        loss=tuned_loss,
        perplexity=_perplexity(tuned_loss),
        base_loss=base_loss,
        base_perplexity=_perplexity(base_loss),
    )


def _perplexity(loss: float | None) -> float | None:
    if loss is None:
        return None
    return round(math.exp(min(loss, 50.0)), 3)


def verdict(splits: dict[str, SplitMeans]) -> str:
    """One plain sentence with both halves: are the training answers reproduced, and are the
    same facts given when the question is asked in other words?"""
    parts = []
    train = splits.get("train")
    if train and train.n:
        t, b = train.tuned_rouge_l or 0.0, train.base_rouge_l or 0.0
        if train.reproduced >= train.n / 2:
            parts.append(f"learned: reproduces {train.reproduced} of {train.n} training answers "
                         f"(ROUGE-L {t:.2f} vs the base model's {b:.2f})")
        elif t > b + 0.1:
            parts.append(f"partly learned: reproduces {train.reproduced} of {train.n} training answers "
                         f"(ROUGE-L {t:.2f} vs the base model's {b:.2f}); train longer or raise the learning rate")
        else:
            parts.append(f"not learned: training answers no closer to the references than the base model's "
                         f"(ROUGE-L {t:.2f} vs {b:.2f}); train longer or raise the learning rate")
    unseen = splits.get("unseen")
    if unseen and unseen.n:
        parts.append(f"answers {unseen.answered} of {unseen.n} questions asked in other words with the "
                     f"right facts (the base model: {unseen.base_answered})")
    held = splits.get("eval")
    if held and held.n:
        t, b = held.tuned_rouge_l or 0.0, held.base_rouge_l or 0.0
        closer = "closer to" if t > b else "no closer to"
        parts.append(f"held-out answers {closer} the references than the base model's ({t:.2f} vs {b:.2f})")
    elif train and not (unseen and unseen.n):
        parts.append("no held-out phrasings or records to check questions asked in other words")
    data = splits.get("data")
    if data and data.n:
        t, b = data.tuned_rouge_l or 0.0, data.base_rouge_l or 0.0
        parts.append(f"your evaluation file: {data.answered} of {data.n} questions answered with the right "
                     f"facts, {data.reproduced} of {data.n} answers match their reference (ROUGE-L >= "
                     f"{REPRODUCED_ROUGE}); mean ROUGE-L {t:.2f} vs the base model's {b:.2f}")
    return "; ".join(parts) if parts else "nothing to evaluate"


def _answer_loss(model: Any, tokenizer: Any, fmt: Any, pairs: Sequence[Pair]) -> float | None:
    """Mean cross-entropy per answer token of the references (teacher forced), or None."""
    if not pairs:
        return None
    import torch

    from core.models.prompting import encode_pair

    total, count = 0.0, 0
    with torch.inference_mode():
        for pair in pairs:
            ex = encode_pair(tokenizer, fmt, pair[0], pair[1], fmt.max_length, context_of(pair), "last")
            ids = torch.tensor([ex.input_ids], dtype=torch.long)
            labels = torch.tensor([ex.labels], dtype=torch.long)
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
            n = int((labels != -100).sum()) - (0 if fmt.architecture == "seq2seq" else 1)
            n = max(1, n)
            total += float(out.loss) * n
            count += n
    return round(total / count, 4)


# --------------------------------------------------------------------------- training outputs


def splits_from_records(records: Sequence[Pair], train_idx: list[int], eval_idx: list[int],
                        seed: int) -> dict[str, list[Pair]]:
    """The evaluated splits of a run: held-out records and a bounded sample of training ones."""
    splits = {
        "train": [records[i] for i in _bounded(train_idx, seed)],
        "eval": [records[i] for i in _bounded(eval_idx, seed)],
    }
    return {name: pairs for name, pairs in splits.items() if pairs}


def splits_from_phrasings(originals: Sequence[Pair], unseen: Sequence[Pair], seed: int) -> dict[str, list[Pair]]:
    """The evaluated splits of a run with variants: the user's questions word for word
    (``train``) and the held-out phrasings of the same facts (``unseen``), each bounded."""
    splits = {
        "train": [originals[i] for i in _bounded(list(range(len(originals))), seed)],
        "unseen": [unseen[i] for i in _bounded(list(range(len(unseen))), seed)],
    }
    return {name: pairs for name, pairs in splits.items() if pairs}


def evaluate_folder(
    output_dir: str | Path,
    data_path: str | Path | None = None,
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
    write: bool = True,
) -> Evaluation:
    """Evaluate a training output folder (``foremforge evaluate``).

    Without ``data_path``: the run's own held-out records and training sample (its dataset and
    split from ``training_report.json``), written to ``evaluation.json``. With ``data_path``:
    every record of that file (split ``data``), written to ``evaluations/<file stem>.json``.
    """
    from core.models.registry import BaseModelError, load_base_model, resolve_base_model
    from core.training.predict import load_for_predict, resolve_model_dir
    from core.training.records import read_pairs

    model_dir = resolve_model_dir(output_dir)
    root = model_dir.parent if model_dir.name == MODEL_DIR else model_dir
    report = _read_training_report(root) if (root / TRAINING_REPORT_FILE).is_file() else TrainingReport()
    config = report.config
    base_name = report.base_model or (config.base_model if config else None)
    if not base_name:
        raise ValueError(f"{root} has no {TRAINING_REPORT_FILE} naming its base model")
    if data_path is not None:
        splits: dict[str, list[Pair]] = {"data": list(read_pairs(str(data_path)))}
    else:
        source = config.data_path if config else None
        if config is None or not source or not Path(source).is_file():
            raise FileNotFoundError(f"the run's dataset {source!r} is not there any more; pass --data FILE")
        records: list[Pair] = list(read_pairs(source, config.columns))
        if (root / VARIANTS_FILE).is_file():  # trained with variants: the same phrasings as after training
            from core.training.variants import read_variants_jsonl

            rows = read_variants_jsonl(root / VARIANTS_FILE)
            originals = [(r.input, r.output) for r in rows if r.source == "original" and r.split == "train"]
            unseen = [(r.input, r.output) for r in rows if r.split == "unseen"]
            splits = splits_from_phrasings(originals, unseen, config.seed)
        else:
            train_idx, eval_idx = split_indices(len(records), config.eval_split, config.seed)
            splits = splits_from_records(records, train_idx, eval_idx, config.seed)
    tuned, tokenizer, fmt = load_for_predict(model_dir)
    try:
        spec = resolve_base_model(base_name)
    except BaseModelError as error:
        raise ValueError(str(error)) from error

    @contextmanager
    def base() -> Iterator[Any]:
        model, _ = load_base_model(spec)  # loaded only for this step; its memory goes back after
        model.eval()
        yield model

    result = evaluate_models(tuned, base, tokenizer, fmt, splits, on_event, cancel)
    result.model = str(root)
    result.base_model = base_name
    if write:
        target = root / EVALUATION_FILE if data_path is None else root / EVALUATIONS_DIR / f"{Path(data_path).stem}.json"
        write_result(target, result)
        result.path = target
    return result


@contextmanager
def base_of_lora(model: Any) -> Iterator[Any]:
    """The base model of a PEFT LoRA model: the same weights with the adapter switched off."""
    disable = getattr(model, "disable_adapter", None)
    if disable is None:
        yield model
        return
    with disable():
        yield model
