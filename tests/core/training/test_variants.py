"""Question variants, the split by phrasing, fact recall, the verdict, and early stopping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.events import Cancelled, CancelToken
from core.run_layout import SplitMeans
from core.training import variants
from core.training.evaluate import verdict
from core.training.facts import answered, checkable_facts, fact_recall
from core.training.hf_train import run_real_training
from core.training.variants import (
    Fact,
    VariantSet,
    build_variant_set,
    filter_rephrasings,
    group_facts,
    split_phrasings,
    surface_variants,
)
from tests.core.training_helpers import tiny_config, write_jsonl

QUESTIONS = ["What are your opening hours?", "How much is a day pass?", "What is the Wi-Fi password?"]


# ----------------------------------------------------------------------------- surface variants


def test_surface_variants_are_new_deterministic_questions() -> None:
    found = surface_variants("What are your opening hours?")
    assert found == surface_variants("What are your opening hours?")
    assert "What are your opening hours?" not in found and len(found) == len(set(found)) >= 5
    assert "what are your opening hours?" in found and "Hi, what are your opening hours?" in found
    assert "opening hours?" in found  # keywords only
    assert "What are your opening times?" in found  # a customer's word for the support page's
    assert surface_variants("   ") == []


# ----------------------------------------------------------------------------- the filter


def test_the_filter_keeps_real_rephrasings_only() -> None:
    original = "How much is the deposit for an electric bike?"
    others = [original, "How much is the deposit for a standard bike?", "What are your opening hours?"]
    candidates = [
        "What deposit do you take on an e-bike, electric one?",  # kept
        "Rewritten question: \"How big is the electric bike deposit?\"",  # kept, label and quotes gone
        "How much is the deposit for an electric bike?",  # the original
        "how much is the deposit for an electric bike",  # the original without case and punctuation
        "The deposit is refunded.",  # not a question
        "How much is the deposit?",  # as close to the standard bike's question: ambiguous
        "What time do you open?",  # shares no content word
        "Is the deposit for an electric bike 200 pounds?",  # brings a number the original lacks
        "What deposit do you take on an e-bike, electric one?",  # a duplicate
    ]
    kept = filter_rephrasings(original, candidates, set(), limit=4, others=others)
    assert kept == ["What deposit do you take on an e-bike, electric one?", "How big is the electric bike deposit?"]
    assert filter_rephrasings(original, candidates, set(), limit=1, others=others) == kept[:1]


# ----------------------------------------------------------------------------- facts and the split


def test_records_sharing_an_answer_are_one_fact() -> None:
    facts = group_facts([("a?", "A"), ("b?", "B"), ("a again?", "A"), ("a?", "A")])
    assert [(f.answer, f.questions) for f in facts] == [("A", ["a?", "a again?"]), ("B", ["b?"])]


def _variant_set() -> VariantSet:
    facts = [
        Fact("We open at 9:00.", ["When do you open?", "What time do you start in the morning?"],
             ["when do you open?"], ["At what hour do you open?", "When are you open from?"]),
        Fact("A day pass is £12.50.", ["How much is a day pass?"], ["day pass?"],
             ["What does a day pass cost?", "What's the price of a day pass?"]),
        Fact("Call 01632 960 417.", ["What is your phone number?"], ["phone number?"], []),
    ]
    return VariantSet(facts, "gen", 2)


def test_split_holds_out_phrasings_never_answers() -> None:
    split = split_phrasings(_variant_set(), held_out=1, seed=7)
    trained_answers = {answer for _, answer in split.train}
    assert trained_answers == {f.answer for f in _variant_set().facts}  # every answer trains
    # a user's second wording is held out first (a real customer's words), else a rephrasing
    assert ("What time do you start in the morning?", "We open at 9:00.") in split.unseen
    assert len([q for q, a in split.unseen if a == "A day pass is £12.50."]) == 1
    assert not [q for q, a in split.unseen if a == "Call 01632 960 417."]  # nothing to spare: all trains
    assert ("When do you open?", "We open at 9:00.") in split.originals
    assert not set(split.train) & set(split.unseen)
    assert split_phrasings(_variant_set(), held_out=1, seed=7).unseen == split.unseen  # deterministic
    assert {row.split for row in split.rows} == {"train", "unseen"}
    assert "every one of the 3 answers trains" in split.reason
    assert split_phrasings(_variant_set(), held_out=0, seed=7).unseen == []


# ----------------------------------------------------------------------------- generation, cache, cancel


def _fake_generation(monkeypatch: pytest.MonkeyPatch, calls: list[int]) -> None:
    def generate(model: Any, tokenizer: Any, questions: list[str], per_question: int, seed: int,
                 on_batch: Any = None, answers: Any = None) -> list[list[str]]:
        calls.append(len(questions))
        assert answers is not None and len(answers) == len(questions)  # the answer-conditioned half
        for done in range(1, len(questions) + 1):
            if on_batch is not None:
                on_batch(done, len(questions))
        return [[f"In other words, {q.lower()}"] for q in questions]

    monkeypatch.setattr(variants, "generate_rephrasings", generate)


def test_rephrasings_are_cached_by_dataset_and_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    loads: list[int] = []
    _fake_generation(monkeypatch, calls)
    records = [(q, f"answer {i}") for i, q in enumerate(QUESTIONS)]

    def load() -> tuple[Any, Any]:
        loads.append(1)
        return object(), object()

    first = build_variant_set(records, 2, 0, "gen", load, cache_key="abc", cache_dir=tmp_path)
    again = build_variant_set(records, 2, 0, "gen", load, cache_key="abc", cache_dir=tmp_path)
    assert calls == [3] and loads == [1] and again.cached and not first.cached
    assert [f.generated for f in again.facts] == [f.generated for f in first.facts]
    assert "from the cache" in again.summary() and "3 questions" in again.summary()
    build_variant_set(records, 2, 0, "other-model", load, cache_key="abc", cache_dir=tmp_path)
    build_variant_set(records, 2, 0, "gen", load, cache_key="changed-data", cache_dir=tmp_path)
    assert calls == [3, 3, 3]  # another generator or dataset writes its own


def test_cancel_during_generation_stops_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_generation(monkeypatch, [])
    token = CancelToken()
    seen: list[Any] = []

    def on_event(event: Any) -> None:
        seen.append(event)
        if getattr(event, "stage", "") == "variants" and getattr(event, "step", 0) == 1:
            token.cancel()

    records = [(q, "a") for q in QUESTIONS]
    with pytest.raises(Cancelled):
        build_variant_set(records, 2, 0, "gen", lambda: (object(), object()), "k", tmp_path, on_event, token)
    assert list(tmp_path.iterdir()) == []  # nothing cached from a cancelled generation


# ----------------------------------------------------------------------------- fact recall and the verdict


def test_fact_recall_counts_the_references_checkable_facts() -> None:
    reference = "Kestrel Hollow is open 8:30 to 17:45; call 01632 960 417 or write to rides@kestrel.example."
    assert checkable_facts(reference) == ["rides@kestrel.example", "01632960417", "8:30", "17:45", "kestrel hollow"]
    assert checkable_facts("A day costs £24.50 and the Wi-Fi is HollowSpokes, password gearchain42.") == [
        "gearchain42", "24.50", "hollowspokes"]
    assert checkable_facts("We open at 9 am.") == checkable_facts("We open at 9:00.") == ["9"]
    assert fact_recall("Open from 8:30 to 17:45 at Kestrel Hollow, phone 01632 960417, rides@kestrel.example",
                       reference) == 1.0
    assert fact_recall("Kestrel Hollow opens at 9:00; call 01632 960 417.", reference) == 0.4
    assert fact_recall("Students get 25 percent off.", "Students get 15 percent off.") == 0.0
    assert fact_recall("anything", "Yes, you can.") is None
    assert answered("Yes you can", "Yes, you can.", 1.0, 0.8) and not answered("No", "Yes, you can.", 0.0, 0.8)
    assert answered("We are open 8:30-17:45.", "Open 8:30 to 17:45.", 0.5, 0.8)


def test_verdict_names_both_halves() -> None:
    splits = {"train": SplitMeans(n=36, reproduced=36, tuned_rouge_l=0.97, base_rouge_l=0.1),
              "unseen": SplitMeans(n=36, answered=31, base_answered=2, reproduced=20, tuned_rouge_l=0.8,
                                   base_rouge_l=0.1)}
    text = verdict(splits)
    assert text.startswith("learned: reproduces 36 of 36 training answers")
    assert "answers 31 of 36 questions asked in other words with the right facts (the base model: 2)" in text
    alone = verdict({"train": splits["train"]})
    assert "no held-out phrasings or records" in alone


# ----------------------------------------------------------------------------- a real (tiny) run


def _facts_file(tmp_path: Path) -> Path:
    """Three facts, two of them asked two ways (the user's own phrasings)."""
    return write_jsonl(tmp_path / "facts.jsonl", [
        {"input": "When do you open?", "output": "At 9:00."},
        {"input": "What time do you start?", "output": "At 9:00."},
        {"input": "How much is a pass?", "output": "12 pounds."},
        {"input": "What does a pass cost?", "output": "12 pounds."},
        {"input": "Where are you?", "output": "Mill Lane."},
    ])


def test_a_run_with_variants_trains_every_answer_and_writes_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = run_real_training(tiny_config(out, data=_facts_file(tmp_path), variants=2, epochs=2.0))
    record = report["variants"]
    assert record["questions"] == 5 and record["facts"] == 3 and record["n_unseen_phrasings"] == 2
    assert report["n_eval"] == 0 and report["n_train"] == 5  # no record held out
    rows = [json.loads(line) for line in (out / "variants.jsonl").read_text().splitlines()]
    assert {r["output"] for r in rows if r["split"] == "train"} == {"At 9:00.", "12 pounds.", "Mill Lane."}
    assert {r["input"] for r in rows if r["split"] == "unseen"} == {"What time do you start?", "What does a pass cost?"}
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert set(evaluation["splits"]) == {"train", "unseen"} and evaluation["splits"]["unseen"]["n"] == 2
    assert {"tuned_fact_recall", "answered"} <= set(evaluation["splits"]["unseen"])
    assert "questions asked in other words" in evaluation["verdict"]


def test_no_variants_keeps_the_record_split(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = run_real_training(tiny_config(out, data=_facts_file(tmp_path), variants=0, eval_split=0.4))
    assert report["variants"] is None and report["n_eval"] == 2 and not (out / "variants.jsonl").exists()
    assert set(json.loads((out / "evaluation.json").read_text())["splits"]) == {"train", "eval"}


def test_the_users_evaluation_file_is_scored(tmp_path: Path) -> None:
    out = tmp_path / "out"
    mine = write_jsonl(tmp_path / "mine.jsonl", [{"input": "when are you open", "output": "At 9:00."}])
    run_real_training(tiny_config(out, data=_facts_file(tmp_path), variants=0, eval_data_path=str(mine)))
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["splits"]["data"]["n"] == 1 and "your evaluation file" in evaluation["verdict"]
    from core.training.errors import TrainingError

    with pytest.raises(TrainingError, match="nope.jsonl"):  # a wrong path fails before training
        run_real_training(tiny_config(tmp_path / "o2", variants=0, eval_data_path=str(tmp_path / "nope.jsonl")))
    assert not (tmp_path / "o2").exists()


# ----------------------------------------------------------------------------- early stopping


def test_early_stop_keeps_the_best_weights_and_stops_when_the_loss_stalls() -> None:
    import torch
    from transformers import TrainerControl, TrainerState

    from core.training.early_stop import make_early_stop

    model = torch.nn.Linear(2, 1)
    logs: list[Any] = []
    keeper = make_early_stop(model, total_steps=100, split="unseen", emit=logs.append)
    state, control = TrainerState(), TrainerControl()
    for step, loss, value in ((10, 1.0, 1.0), (20, 0.5, 2.0), (30, 0.6, 3.0), (40, 0.7, 4.0), (60, 0.7, 5.0)):
        state.global_step = step
        with torch.no_grad():
            model.weight.fill_(value)
        keeper.on_evaluate(None, state, control, metrics={"eval_loss": loss})
    assert control.should_training_stop and keeper.stopped_at == 60 and keeper.best_step == 20
    keeper.restore_best(model)
    assert torch.all(model.weight == 2.0)
    record = keeper.record()
    assert record["best_step"] == 20 and "stopped at step 60 of 100" in record["reason"]
    # A last loss within noise of the best keeps the later (better memorised) weights.
    close = make_early_stop(model, total_steps=100, split="unseen", emit=logs.append)
    for step, loss, value in ((20, 0.5, 2.0), (70, 0.52, 7.0)):
        state.global_step = step
        with torch.no_grad():
            model.weight.fill_(value)
        close.on_evaluate(None, state, TrainerControl(), metrics={"eval_loss": loss})
    close.restore_best(model)
    assert torch.all(model.weight == 7.0)
    early = make_early_stop(model, total_steps=100, split="unseen", emit=logs.append)
    control = TrainerControl()
    for step, loss in ((10, 1.0), (20, 1.1), (30, 1.2)):  # stalls, but before 40% of the run: goes on
        state.global_step = step
        early.on_evaluate(None, state, control, metrics={"eval_loss": loss})
    assert not control.should_training_stop
