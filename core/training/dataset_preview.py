"""What the model will see: a dataset's detected format in words, a row's training text with the
trained span marked, and token lengths against ``max_length``.

No torch and no transformers: the base model's tokenizer is read with ``tokenizers`` and its chat
template rendered with jinja2 (:mod:`core.models.light_tokenizer`), so the window can show this
while it stays light. ``foremforge validate --base-model M`` prints the same summary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.events import CancelToken
from core.models.prompting import (
    PromptFormat,
    Segment,
    build_prompt_format,
    conversation_segments,
    encode_pair,
)
from core.training.formats import FORMAT_LABELS, ROLE_MAPPINGS, Conversation, describe_columns

__all__ = [
    "TokenStats",
    "format_lines",
    "preview_format",
    "token_stats",
    "training_segments",
]

STATS_ROW_LIMIT = 20_000  # rows measured for the token statistics (the first ones of a larger file)


def format_lines(report: Any, columns: dict[str, str] | None = None) -> list[str]:
    """The detected format in words: the rule, its coverage and how fields become roles.

    ``["format: messages (OpenAI / TRL chat), 523 of 523 rows", "read as: messages[].role/content → …"]``
    """
    counts: dict[str, int] = dict(getattr(report, "format_counts", {}) or {})
    if not counts:
        return ["format: no row fits a rule"] if report.n_lines else []
    rule = report.format or max(counts, key=lambda r: counts[r])
    total = sum(counts.values()) + sum(n for kind, n in report.problem_counts.items() if kind != "mixed_formats")
    label = "your columns (--columns)" if columns else FORMAT_LABELS.get(rule, rule)
    lines = [f"format: {label}, {counts[rule]} of {total} {'row' if total == 1 else 'rows'}"]
    others = [f"{r}: {n}" for r, n in counts.items() if r != rule]
    if others:
        lines.append("also found (one format per file): " + ", ".join(others))
    if columns:
        lines.append(f"columns: {describe_columns(columns)}")
    else:
        lines.append(f"read as: {ROLE_MAPPINGS.get(rule, rule)}")
    return lines


def _starter_folder() -> Path | None:
    """The starter's converted folder, else its snapshot in the local HF cache, holding its
    tokenizer (the cache is searched without ``huggingface_hub``: the window stays light)."""
    from core.models.hf_cache import cached_snapshot
    from core.models.starter import STARTER_HUB_ID, converted_folder

    folder = converted_folder()
    if (folder / "tokenizer.json").is_file():
        return folder
    return cached_snapshot(STARTER_HUB_ID, needs="tokenizer.json")


def preview_format(base_model: str, max_length: int) -> tuple[Any, PromptFormat] | None:
    """``(tokenizer, prompt format)`` of a base model, read lightly; None when its tokenizer is
    not on this machine yet (the starter before its first conversion, a hub model not cached)."""
    from core.models.light_tokenizer import LightTokenizer, light_tokenizer
    from core.models.registry import STARTER_NAME, TINY_CAUSAL, TINY_SEQ2SEQ

    if base_model in (TINY_CAUSAL, TINY_SEQ2SEQ):
        from core.models.tiny import build_byte_backend

        arch = "seq2seq" if base_model == TINY_SEQ2SEQ else "causal"
        tokenizer: Any = LightTokenizer(build_byte_backend(arch), "</s>", "<pad>", "<s>")
        return tokenizer, build_prompt_format(tokenizer, arch, max_length)
    folder = _starter_folder() if base_model == STARTER_NAME else Path(os.path.expanduser(base_model))
    if folder is None or not folder.is_dir():
        return None
    tokenizer = light_tokenizer(folder)
    if tokenizer is None or tokenizer.eos_token_id is None:
        return None
    arch = "causal"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        arch = "seq2seq" if config.get("is_encoder_decoder") else "causal"
    except (OSError, ValueError):
        pass
    return tokenizer, build_prompt_format(tokenizer, arch, max_length)


def training_segments(conversation: Conversation, fmt: PromptFormat, loss_on: str = "all") -> list[Segment]:
    """A row's training text as pieces, the trained ones (the loss span) marked. A single
    question's answer is trained whole and ends with the end-of-sequence token."""
    if fmt.architecture == "seq2seq":
        prompt = fmt.render_conversation(conversation.system, conversation.turns[:-1])
        return [Segment(prompt, False), Segment(conversation.answer, True), Segment(fmt.eos_text or "</s>", True, True)]
    return conversation_segments(fmt, conversation.system, conversation.turns, loss_on)


@dataclass(frozen=True)
class TokenStats:
    """Training-text lengths in tokens (prompt + answer) against ``max_length``."""

    n_rows: int
    mean: float
    median: int
    p95: int
    longest: int
    max_length: int
    n_truncated: int
    first_rows_only: bool  # the file had more rows than were measured

    def line(self) -> str:
        rows = "row" if self.n_rows == 1 else "rows"
        measured = f"the first {self.n_rows} {rows}" if self.first_rows_only else f"{self.n_rows} {rows}"
        cut = (f"{self.n_truncated} would be truncated at max_length {self.max_length}" if self.n_truncated
               else f"none longer than max_length {self.max_length}")
        return (f"tokens ({measured}): mean {self.mean:.0f}, median {self.median}, 95% under {self.p95}, "
                f"longest {self.longest}; {cut}")


def token_stats(conversations: Iterable[Conversation], tokenizer: Any, fmt: PromptFormat, max_length: int,
                loss_on: str = "all", cancel: CancelToken | None = None,
                limit: int = STATS_ROW_LIMIT) -> TokenStats | None:
    """Token lengths of up to ``limit`` conversations as training encodes them; None for none."""
    lengths: list[int] = []
    more = False
    for conversation in conversations:
        if len(lengths) >= limit:
            more = True
            break
        if cancel is not None and len(lengths) % 256 == 0:
            cancel.raise_if_cancelled()
        pair = conversation.pair()
        lengths.append(encode_pair(tokenizer, fmt, pair[0], pair[1], max_length, pair.context, loss_on).n_tokens)
    if not lengths:
        return None
    ordered = sorted(lengths)
    return TokenStats(
        n_rows=len(lengths),
        mean=sum(lengths) / len(lengths),
        median=ordered[len(ordered) // 2],
        p95=ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        longest=ordered[-1],
        max_length=max_length,
        n_truncated=sum(n > max_length for n in lengths),
        first_rows_only=more,
    )
