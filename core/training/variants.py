"""Question variants: each question asked several more ways before training.

Fine-tuning stores a fact so that it can be recalled under new wordings only when the fact
was seen in several phrasings (Allen-Zhu & Li, "Physics of Language Models, Part 3.1"); a
model trained on one sentence per fact answers that sentence and invents facts when a customer
asks in their own words. So every question gets:

- surface variants (lower case, a greeting, "Could you tell me ...", keywords only): cheap;
- rephrasings written by a local model (the base model by default), sampled and filtered:
  a question, sharing a content word with the original, not a copy of it or of another.

Records that share one answer are one fact's phrasings. :func:`split_phrasings` holds out some
phrasings of every fact for the evaluation ("asked in other words") and trains every answer.
Rephrasings are cached by dataset hash + generator + settings, so a re-run does not generate
again. Pure Python except :func:`generate_rephrasings` (torch, loaded lazily).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.events import CancelToken, EventCallback, Log, Progress, StageStarted, noop
from core.run_layout import PhrasingRow, RunFileError, parse

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_REPHRASINGS",
    "Fact",
    "PhrasingSplit",
    "VariantSet",
    "build_variant_set",
    "filter_rephrasings",
    "group_facts",
    "read_dropped",
    "read_variants_jsonl",
    "save_dropped",
    "split_phrasings",
    "surface_variants",
    "variant_rows",
    "write_training_jsonl",
    "write_variants_jsonl",
]

DEFAULT_REPHRASINGS = 4  # model-written rephrasings per question (the recipe's choice)
MAX_GENERATED_QUESTIONS = 400  # beyond this many questions only surface variants: minutes, not hours
_CANDIDATES_PER_QUESTION = 8  # sampled per question (half per prompt); the filter keeps the good ones
_MAX_NEW_TOKENS = 24  # one question; generation also stops at the end of its line
_BATCH_QUESTIONS = 4  # 32 sequences a batch: their key/value caches stay a few hundred MB
CACHE_VERSION = 2  # bump when the prompt, the sampling or the filter change

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’-]*")
_STOP = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being do does did
    have has had can could would should will shall may might must i you he she it we they me my your our
    their its this that these those there here what which who whom whose when where why how please tell
    hi hello hey thanks thank know any some get got about into out up than then so not no yes just also
    s t don't i'm it's what's""".split()
)
_QUESTION_START = frozenset(
    "what which who whom whose when where why how is are was were do does did can could would should will "
    "may might must have has shall am any".split()
)
# A small model follows examples far better than an instruction: a few-shot completion prompt
# (generic shop questions, no dataset's), one rephrasing per line.
_REPHRASE_PROMPT = (
    "Rewrite each customer question in other words.\n\n"
    "Question: What time do you close on Fridays?\nOther words: When do you shut on a Friday?\n\n"
    "Question: Can I bring my dog into the shop?\nOther words: Are dogs allowed inside?\n\n"
    "Question: How much is the parking fee?\nOther words: What do you charge for parking?\n\n"
    "Question: Do you deliver to other towns?\nOther words: Can you send things outside the town?\n\n"
    "Question: {question}\nOther words:"
)
# The same for questions a customer could ask that an answer replies to (doc2query).
_ASK_PROMPT = (
    "Write a question a customer could ask that this answer replies to.\n\n"
    "Answer: We close at 18:00 on Fridays.\nQuestion: What time do you shut on a Friday?\n\n"
    "Answer: Dogs on a lead are welcome inside the shop.\nQuestion: Am I allowed to bring my dog in?\n\n"
    "Answer: Parking costs 3 pounds for the whole day.\nQuestion: What do you charge for parking?\n\n"
    "Answer: We deliver to any address within 20 miles.\nQuestion: How far away will you deliver?\n\n"
    "Answer: {answer}\nQuestion:"
)
# Words customers swap for the ones a support page uses (generic, both directions).
_SYNONYMS: tuple[tuple[str, str], ...] = (
    ("how much does it cost", "what is the price"), ("how much is", "what does it cost for"),
    ("cost", "price"), ("hire", "rent"), ("opening hours", "opening times"), ("phone number", "number to call"),
    ("email address", "e-mail"), ("contact", "reach"), ("children", "kids"), ("buy", "purchase"),
    ("book", "reserve"), ("cancel", "call off"), ("refund", "money back"), ("deliver", "ship"),
    ("wi-fi", "internet"), ("password", "code"), ("discount", "reduction"), ("free", "without charge"),
    ("where is", "how do I find"), ("when", "what time"), ("do you have", "is there"),
    ("can i", "am I allowed to"), ("allowed", "permitted"), ("need", "have to bring"),
)


# --------------------------------------------------------------------------- facts


@dataclass
class Fact:
    """One answer and the phrasings of its question: the user's own, then the variants."""

    answer: str
    questions: list[str]  # the user's records with this answer, in file order
    surface: list[str] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)

    def phrasings(self) -> list[tuple[str, str]]:
        """Every phrasing with its source: ``original``, ``surface`` or ``generated``."""
        return ([(q, "original") for q in self.questions] + [(q, "surface") for q in self.surface]
                + [(q, "generated") for q in self.generated])


def group_facts(records: Sequence[tuple[str, str]]) -> list[Fact]:
    """Records that share one answer (exactly) are one fact; facts in the order first seen."""
    facts: dict[str, Fact] = {}
    for question, answer in records:
        fact = facts.setdefault(answer, Fact(answer, []))
        if question not in fact.questions:
            fact.questions.append(question)
    return list(facts.values())


# --------------------------------------------------------------------------- surface variants


def surface_variants(question: str) -> list[str]:
    """Cheap rewordings a customer types: lower case, a greeting, a polite frame, keywords only."""
    q = " ".join(question.split())
    if not q:
        return []
    bare = q.rstrip("?.! ")
    lowered = bare[0].lower() + bare[1:] if not bare[:2].isupper() else bare
    words = [w for w in _WORD.findall(bare) if w.casefold() not in _STOP]
    variants = [
        q.casefold().rstrip("?.! ") + "?",
        f"Hi, {lowered}?",
        f"Could you tell me {lowered}?",
        " ".join(words).casefold() + "?" if len(words) >= 1 else "",
        f"{bare}? Thanks!",
        _with_synonyms(bare),
    ]
    return _unique(variants, exclude={q})


def _with_synonyms(question: str) -> str:
    """The question with the first common support phrase swapped for a customer's word ("" if none)."""
    lowered = question.casefold()
    for a, b in _SYNONYMS:
        for old, new in ((a, b), (b, a)):
            match = re.search(rf"\b{re.escape(old)}\b", lowered)
            if match:
                swapped = question[: match.start()] + new + question[match.end():]
                return swapped[0].upper() + swapped[1:] + "?"
    return ""


# --------------------------------------------------------------------------- model rephrasings


def filter_rephrasings(original: str, candidates: Sequence[str], taken: set[str], limit: int,
                       others: Sequence[str] = (), answer: str = "") -> list[str]:
    """The usable rephrasings among ``candidates``, at most ``limit``, in order.

    Kept: the first line, cleaned of labels and quotes, that reads as a question (ends with
    "?" or starts like one), shares a content word with ``original`` (or its ``answer``) and
    more of them than with any of ``others`` (the dataset's other questions, each with its
    answer: an ambiguous rephrasing would teach the wrong answer), brings no number the
    original lacks (a question does not state its answer), is not the original or a phrasing
    already ``taken`` (compared without case and punctuation), and is of a sensible length.
    ``taken`` grows with what is kept.
    """
    content = _content(original) | _content(answer)
    rivals = [_content(q) for q in others if _key(q) != _key(original) and _key(q) != _key(original + " " + answer)]
    numbers = set(re.findall(r"\d+", original))
    n_words = len(original.split())
    kept: list[str] = []
    for raw in candidates:
        text = _clean(raw)
        if not text or len(kept) >= limit:
            continue
        words = _WORD.findall(text.casefold())
        if not (2 <= len(words) <= max(16, 3 * n_words)):
            continue
        if not (text.endswith("?") or (words and words[0] in _QUESTION_START)):
            continue
        mine = _content(text)
        shared = len(content & mine)
        if content and (not shared or any(len(rival & mine) >= shared for rival in rivals)):
            continue
        if set(re.findall(r"\d+", text)) - numbers:
            continue
        key = _key(text)
        if key in taken or key == _key(original):
            continue
        taken.add(key)
        kept.append(text if text.endswith("?") else text.rstrip(".!") + "?")
    return kept


def _content(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.casefold()) if w not in _STOP}


def _clean(raw: str) -> str:
    line = next((part.strip() for part in raw.strip().splitlines() if part.strip()), "")
    line = re.sub(r"^(?:new question|question|rewritten(?: question)?|rephrased(?: question)?|q)\s*[:\-]\s*",
                  "", line, flags=re.IGNORECASE)
    return line.strip(" \"'“”‘’`*").strip()


def _stem(word: str) -> str:
    word = word.strip("'’")
    for suffix in ("ing", "es", "s", "ed"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _key(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


def _unique(texts: Sequence[str], exclude: set[str]) -> list[str]:
    """``texts`` without blanks, repeats and the ``exclude``d, compared exactly: a lower-case
    copy of a question is a variant of its own (it tokenizes differently)."""
    seen = set(exclude)
    out = []
    for text in texts:
        if text and _key(text) and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def generate_rephrasings(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    per_question: int,
    seed: int,
    on_batch: Callable[[int, int], None] | None = None,
    answers: Sequence[str] | None = None,
) -> list[list[str]]:
    """Up to ``per_question`` filtered rephrasings of each question, sampled from ``model``.

    Half the candidates rewrite the question; with ``answers``, the other half are questions
    the model writes for the answer alone (a customer's words are not anchored on the
    question's). Deterministic for a given ``seed`` (the sampler is seeded per batch).
    ``on_batch(done, total)`` runs after each batch of questions (progress; raise to cancel).
    """
    import torch

    from core.memory import trim_heap

    answers = list(answers) if answers is not None else []
    prompts: list[list[int]] = []
    for index, question in enumerate(questions):
        prompts.append(_encode_prompt(tokenizer, _REPHRASE_PROMPT.format(question=_one_line(question))))
        text = (_ASK_PROMPT.format(answer=_one_line(answers[index])) if answers
                else _REPHRASE_PROMPT.format(question=_one_line(question)))
        prompts.append(_encode_prompt(tokenizer, text))
    others = [f"{q} {a}" for q, a in zip(questions, answers, strict=True)] if answers else list(questions)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop = [tokenizer.eos_token_id, *tokenizer("\n", add_special_tokens=False)["input_ids"][-1:]]
    results: list[list[str]] = []
    per_prompt = _CANDIDATES_PER_QUESTION // 2
    for start in range(0, len(questions), _BATCH_QUESTIONS):
        batch = prompts[2 * start:2 * (start + _BATCH_QUESTIONS)]
        width = max(len(p) for p in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(batch):
            ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt):] = 1
        torch.manual_seed(seed * 1_000_003 + start)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=0.9, top_p=0.95,
                                 num_return_sequences=per_prompt, max_new_tokens=_MAX_NEW_TOKENS,
                                 pad_token_id=pad, eos_token_id=stop)
        texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        del out
        trim_heap()
        per_question_texts = 2 * per_prompt
        for row in range(len(batch) // 2):
            index = start + row
            question = questions[index]
            candidates = texts[row * per_question_texts:(row + 1) * per_question_texts]
            # alternate the two prompts' candidates, so each gets its share of the kept ones
            mixed = [c for pair in zip(candidates[:per_prompt], candidates[per_prompt:], strict=True) for c in pair]
            taken = {_key(v) for v in surface_variants(question)}
            results.append(filter_rephrasings(question, mixed, taken, per_question, others=others,
                                              answer=answers[index] if answers else ""))
        if on_batch is not None:
            on_batch(min(start + _BATCH_QUESTIONS, len(questions)), len(questions))
    return results


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _encode_prompt(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


# --------------------------------------------------------------------------- the variant set


@dataclass
class VariantSet:
    """The facts with their variants, and what making them cost (for the recipe's line)."""

    facts: list[Fact]
    generator: str | None
    per_question: int
    seconds: float = 0.0
    cached: bool = False
    cache_file: Path | None = None  # where the rephrasings (and the dropped list beside) are kept

    @property
    def n_questions(self) -> int:
        return sum(len(f.questions) for f in self.facts)

    def phrasings_per_question(self) -> float:
        extra = sum(len(f.surface) + len(f.generated) for f in self.facts)
        return extra / max(1, self.n_questions)

    def summary(self) -> str:
        """``variants: 36 questions, 6.8 phrasings each, 52 s`` (or ``from the cache``)."""
        how = "from the cache" if self.cached else f"{self.seconds:.0f} s"
        writer = f", rephrasings by {self.generator}" if self.generator and self.per_question else ""
        return (f"variants: {self.n_questions} questions, {self.phrasings_per_question():.1f} more phrasings "
                f"each{writer}, {how}")


def build_variant_set(
    records: Sequence[tuple[str, str]],
    per_question: int,
    seed: int,
    generator: str | None = None,
    load_generator: Callable[[], tuple[Any, Any]] | None = None,
    cache_key: str | None = None,
    cache_dir: Path | None = None,
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
) -> VariantSet:
    """Group ``records`` into facts and give every question its variants.

    ``per_question`` model-written rephrasings (0: surface variants only) come from the model
    that ``load_generator()`` returns as ``(model, tokenizer)``; they are read from
    ``cache_dir`` when ``cache_key`` (the dataset's hash) was generated before with the same
    generator and settings. Cancel is polled after every batch.
    """
    emit = on_event or noop
    token = cancel or CancelToken()
    started = time.time()
    facts = group_facts(records)
    for fact in facts:
        taken = set(fact.questions)
        for question in fact.questions:
            for variant in surface_variants(question):
                if variant not in taken:
                    taken.add(variant)
                    fact.surface.append(variant)
    questions = [q for f in facts for q in f.questions]
    if len(questions) > MAX_GENERATED_QUESTIONS:
        emit(Log(f"{len(questions)} questions: rephrasings are written for up to {MAX_GENERATED_QUESTIONS}; "
                 "surface variants only", "warning"))
        per_question = 0
    variant_set = VariantSet(facts, generator if per_question else None, per_question)
    cache_file = _cache_file(cache_dir, cache_key, generator, per_question, seed)
    variant_set.cache_file = cache_file
    if per_question > 0 and load_generator is not None:
        rephrased = _read_cache(cache_file, questions)
        if rephrased is None:
            emit(StageStarted("variants", f"writing {per_question} rephrasings of {len(questions)} questions "
                                          f"with {generator}"))
            model, tokenizer = load_generator()

            def step(done: int, total: int) -> None:
                emit(Progress("variants", done, total))
                token.raise_if_cancelled()

            token.raise_if_cancelled()
            answers = [f.answer for f in facts for _ in f.questions]
            rephrased = dict(zip(questions, generate_rephrasings(model, tokenizer, questions, per_question, seed,
                                                                 step, answers), strict=True))
            _write_cache(cache_file, rephrased)
        else:
            variant_set.cached = True
        for fact in facts:
            taken = {_key(p) for p, _ in fact.phrasings()}
            for question in fact.questions:
                for text in rephrased.get(question, []):
                    if _key(text) not in taken:
                        taken.add(_key(text))
                        fact.generated.append(text)
    dropped = read_dropped(cache_file)
    if dropped:  # phrasings the user dropped in the window stay dropped
        for fact in facts:
            fact.surface = [t for t in fact.surface if t not in dropped]
            fact.generated = [t for t in fact.generated if t not in dropped]
    variant_set.seconds = round(time.time() - started, 1)
    return variant_set


def read_dropped(cache_file: Path | None) -> set[str]:
    """The phrasings a user dropped for this dataset and generator (kept beside its cache)."""
    path = _dropped_file(cache_file)
    if path is None or not path.is_file():
        return set()
    try:
        return {str(text) for text in json.loads(path.read_text(encoding="utf-8"))["dropped"]}
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("ignoring an unreadable list of dropped phrasings %s", path)
        return set()


def save_dropped(cache_file: Path | None, dropped: set[str]) -> None:
    """Remember the dropped phrasings, so every later run of this dataset leaves them out."""
    path = _dropped_file(cache_file)
    if path is None:
        raise ValueError("phrasings can be dropped only for variants that are cached")
    from core.jsonio import write_json_atomic

    write_json_atomic(path, {"dropped": sorted(dropped)})


def _dropped_file(cache_file: Path | None) -> Path | None:
    return None if cache_file is None else cache_file.with_name(cache_file.stem + ".dropped.json")


def _cache_file(cache_dir: Path | None, key: str | None, generator: str | None, n: int, seed: int) -> Path | None:
    if cache_dir is None or not key:
        return None
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, key, generator, n, seed]).encode()).hexdigest()[:24]
    return Path(cache_dir) / f"{digest}.json"


def _read_cache(path: Path | None, questions: Sequence[str]) -> dict[str, list[str]] | None:
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rephrased = {str(q): [str(t) for t in texts] for q, texts in data["rephrasings"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        logger.warning("ignoring an unreadable variants cache file %s", path)
        return None
    return rephrased if all(q in rephrased for q in questions) else None


def _write_cache(path: Path | None, rephrased: dict[str, list[str]]) -> None:
    if path is None:
        return
    from core.jsonio import write_json_atomic

    try:
        write_json_atomic(path, {"version": CACHE_VERSION, "rephrasings": rephrased})
    except OSError as error:  # a read-only cache costs a regeneration next time, nothing more
        logger.warning("could not cache the variants in %s: %s", path, error)


# --------------------------------------------------------------------------- split by phrasing


@dataclass
class PhrasingSplit:
    """Training pairs (every answer at least once) and held-out phrasings of the same facts."""

    train: list[tuple[str, str]]
    unseen: list[tuple[str, str]]
    originals: list[tuple[str, str]]  # the user's own questions that were trained (word for word)
    rows: list[PhrasingRow]  # every phrasing, with its split (variants.jsonl)
    reason: str


def split_phrasings(variant_set: VariantSet, held_out: int, seed: int) -> PhrasingSplit:
    """Hold out ``held_out`` phrasings of each fact for the evaluation; train on the rest.

    Held out first: a user's second wording of the same answer (a real customer's words), then
    model-written rephrasings. A fact's first question and its surface variants always train,
    so every answer is trained. Deterministic for ``seed``.
    """
    rng = random.Random(seed)
    train: list[tuple[str, str]] = []
    unseen: list[tuple[str, str]] = []
    originals: list[tuple[str, str]] = []
    rows: list[PhrasingRow] = []
    for index, fact in enumerate(variant_set.facts):
        spare_originals = fact.questions[1:]
        generated = list(fact.generated)
        rng.shuffle(generated)
        pool = [(q, "original") for q in spare_originals] + [(q, "generated") for q in generated]
        chosen = pool[:held_out]  # the fact's first question always trains, so its answer does
        chosen_set = {q for q, _ in chosen}
        for text, source in fact.phrasings():
            split = "unseen" if text in chosen_set else "train"
            (unseen if split == "unseen" else train).append((text, fact.answer))
            if split == "train" and source == "original":
                originals.append((text, fact.answer))
            rows.append(PhrasingRow(input=text, output=fact.answer, fact=index, source=source, split=split))
    n_facts = len(variant_set.facts)
    with_unseen = len({row.fact for row in rows if row.split == "unseen"})
    reason = (f"every one of the {n_facts} answers trains; {len(unseen)} phrasings of {with_unseen} facts held out "
              "to check questions asked in other words" if unseen else
              f"every one of the {n_facts} answers trains; no phrasing held out")
    return PhrasingSplit(train, unseen, originals, rows, reason)


# --------------------------------------------------------------------------- files


def variant_rows(variant_set: VariantSet) -> list[PhrasingRow]:
    """Every phrasing of every fact (input, output, fact, source), before any split."""
    return [PhrasingRow(input=text, output=fact.answer, fact=index, source=source)
            for index, fact in enumerate(variant_set.facts) for text, source in fact.phrasings()]


def write_training_jsonl(path: str | Path, rows: Sequence[PhrasingRow]) -> Path:
    """The phrasings as a dataset a run can train on: ``{"input", "output"}`` per line (records
    that share an answer are one fact's phrasings)."""
    from core.jsonio import write_text_atomic

    text = "".join(json.dumps({"input": r.input, "output": r.output}, ensure_ascii=False) + "\n" for r in rows)
    return write_text_atomic(path, text)


def write_variants_jsonl(path: str | Path, rows: Sequence[PhrasingRow]) -> Path:
    """``variants.jsonl``: one phrasing per line (input, output, fact, source, split)."""
    from core.jsonio import write_text_atomic

    text = "".join(json.dumps(row.to_json(), ensure_ascii=False) + "\n" for row in rows)
    return write_text_atomic(path, text)


def read_variants_jsonl(path: str | Path) -> list[PhrasingRow]:
    """The rows of a ``variants.jsonl`` (as written by :func:`write_variants_jsonl`); a line
    that is not a phrasing raises :class:`core.run_layout.RunFileError` (a ``ValueError``)."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RunFileError(path, f"line {number} is not valid JSON ({exc.msg})") from exc
                rows.append(parse(PhrasingRow, data, f"{path}, line {number}"))
    return rows
