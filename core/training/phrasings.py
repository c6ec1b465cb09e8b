"""A real run's training and evaluation pairs: the user's records, with or without variants.

With variants (the recipe's default) every question gets more phrasings
(:mod:`core.training.variants`), every answer trains, and some phrasings of every fact are held
out (``unseen``). Without them (``variants 0``) the run trains the user's records and holds
out whole records (``eval``), as TinyForge did before variants.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.events import CancelToken, EventCallback, Log
from core.run_layout import PhrasingRow
from core.training.config import TrainConfig
from core.training.formats import NO_CONTEXT, Context, context_of
from core.training.formats import Pair as ContextPair

__all__ = ["RunPairs", "dataset_variants", "held_out_phrasings", "prepare_pairs", "variants_wanted"]

Pair = tuple[str, str]


@dataclass
class RunPairs:
    """What the trainer trains on and evaluates as it goes, and what the evaluation asks."""

    train: list[Pair]
    eval: list[Pair]  # the loss checked while training (unseen phrasings or held-out records)
    eval_name: str  # "unseen" or "eval"
    splits: dict[str, list[Pair]]  # what the evaluation after training asks, by split name
    rows: list[PhrasingRow] = field(default_factory=list)  # variants.jsonl (empty without variants)
    record: dict[str, Any] | None = None  # training_report.json's "variants"


def variants_wanted(config: TrainConfig) -> int:
    """Model-written rephrasings per question this run asks for (0: no variants at all)."""
    from core.training.variants import DEFAULT_REPHRASINGS

    return DEFAULT_REPHRASINGS if config.variants is None else int(config.variants)


def held_out_phrasings(config: TrainConfig) -> int:
    """Phrasings held out per fact: 1, none with ``eval_split 0``, more with a larger split."""
    if config.eval_split is None:
        return 1
    if config.eval_split == 0:
        return 0
    return max(1, round(config.eval_split * 10))


def prepare_pairs(
    config: TrainConfig,
    records: Sequence[Pair],
    train_idx: list[int],
    eval_idx: list[int],
    dataset_sha256: str,
    base: tuple[Any, Any],
    emit: EventCallback,
    cancel: CancelToken,
) -> RunPairs:
    """The run's pairs; ``base`` is the loaded ``(model, tokenizer)``, the default rephrasing writer."""
    from core.training.evaluate import splits_from_phrasings, splits_from_records

    wanted = variants_wanted(config)
    # Variants rephrase single questions; a question that follows earlier turns trains as written.
    follow_ups = [records[i] for i in train_idx + eval_idx if context_of(records[i]).history]
    if follow_ups and len(follow_ups) == len(records):
        wanted = 0
    if wanted == 0:
        splits = splits_from_records(records, train_idx, eval_idx, config.seed)
        return RunPairs([records[i] for i in train_idx], [records[i] for i in eval_idx], "eval",
                        _with_user_file(splits, config))
    from core.training.variants import build_variant_set, split_phrasings

    singles = [r for r in records if not context_of(r).history]
    generator, load_generator = _generator(config, base)
    variant_set = build_variant_set(singles, wanted, config.seed, generator, load_generator,
                                    cache_key=dataset_sha256, cache_dir=variants_cache(), on_event=emit,
                                    cancel=cancel)
    from core.memory import release_memory

    release_memory()  # generation's key/value caches, before training makes the heap steady
    split = split_phrasings(variant_set, held_out_phrasings(config), config.seed)
    emit(Log(variant_set.summary()))
    emit(Log(f"split: {split.reason}"))
    # A follow-up is seen as often as a single question's phrasings are, or the questions with
    # variants would crowd it out of the run's steps.
    repeats = max(1, round(len(split.train) / max(1, len(singles))))
    if follow_ups:
        emit(Log(f"{len(follow_ups)} follow-up question(s) of longer conversations train as written, "
                 f"each {repeats} times (as often as a question's phrasings)"))
    by_answer: dict[str, Context] = {}
    for record in singles:  # a fact's phrasings are asked with its first record's system message
        by_answer.setdefault(record[1], context_of(record))

    def asked(pairs: list[tuple[str, str]]) -> list[Pair]:
        return [ContextPair(q, a, by_answer.get(a, NO_CONTEXT)) for q, a in pairs]

    n_phrasings = len(split.train)
    split.train, split.unseen = asked(split.train) + follow_ups * repeats, asked(split.unseen)
    split.originals = asked(split.originals) + follow_ups
    record = {
        "questions": variant_set.n_questions,
        "facts": len(variant_set.facts),
        "rephrasings_per_question": wanted,
        "phrasings_per_question": round(variant_set.phrasings_per_question(), 2),
        "generator": variant_set.generator,
        "seconds": variant_set.seconds,
        "cached": variant_set.cached,
        "n_train_phrasings": n_phrasings,
        "n_follow_ups": len(follow_ups),
        "follow_up_repeats": repeats if follow_ups else 0,
        "n_unseen_phrasings": len(split.unseen),
        "summary": variant_set.summary(),
        "split": split.reason,
    }
    splits = splits_from_phrasings(split.originals, split.unseen, config.seed)
    return RunPairs(split.train, split.unseen, "unseen", _with_user_file(splits, config), split.rows, record)


def _generator(config: TrainConfig, base: tuple[Any, Any] | None) -> tuple[str, Callable[[], tuple[Any, Any]]]:
    """The rephrasing writer's name and a loader for it: ``base`` (the loaded base model) when it
    is the base model and already loaded, else loaded on first use."""
    name = config.variant_generator or config.base_model

    def load() -> tuple[Any, Any]:
        if base is not None and name == config.base_model:
            return base
        from core.models.registry import BaseModelError, load_base_model, resolve_base_model
        from core.training.errors import TrainingError

        try:
            model, tokenizer = load_base_model(resolve_base_model(name), seed=config.seed)
        except BaseModelError as error:
            raise TrainingError(str(error)) from error
        return model.eval(), tokenizer

    return name, load


def variants_cache() -> Path:
    """Where rephrasings are cached (by dataset hash + generator + settings):
    ``$TINYFORGE_VARIANTS_CACHE``, else ``variants/`` in the model cache."""
    import os

    from core.models.starter import cache_root

    env = os.environ.get("TINYFORGE_VARIANTS_CACHE")
    return Path(env).expanduser() if env else cache_root() / "variants"


def dataset_variants(config: TrainConfig, on_event: EventCallback | None = None,
                     cancel: CancelToken | None = None) -> Any:
    """The variants a real run of ``config`` will train on (a :class:`VariantSet`), written now
    (or read from the cache), so the window can show them and a user can drop bad ones first."""
    from core.events import noop
    from core.training.errors import TrainingError
    from core.training.records import load_records

    emit = on_event or noop
    token = cancel or CancelToken()
    wanted = variants_wanted(config)
    if wanted == 0:
        raise TrainingError("question variants are off (variants 0): nothing to write")
    records, _, sha256 = load_records(config.data_path, emit, config.columns)
    from core.training.variants import build_variant_set

    name, load_generator = _generator(config, None)
    singles = [r for r in records if not context_of(r).history]
    variant_set = build_variant_set(singles, wanted, config.seed, name, load_generator, cache_key=sha256,
                                    cache_dir=variants_cache(), on_event=emit, cancel=token)
    emit(Log(variant_set.summary()))
    return variant_set


def _with_user_file(splits: dict[str, list[Pair]], config: TrainConfig) -> dict[str, list[Pair]]:
    """The user's own evaluation file (``--eval-data``), every record, as split ``data``."""
    if not config.eval_data_path:
        return splits
    from core.training.records import read_pairs

    pairs: list[Pair] = list(read_pairs(str(Path(config.eval_data_path))))
    return {**splits, "data": pairs} if pairs else splits
