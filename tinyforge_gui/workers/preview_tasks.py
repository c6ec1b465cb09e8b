"""Workers behind the Dataset tab's preview: a table's rows, the base model's prompt format, and
the dataset's token lengths. Each reads files or tokenizes, so none of it runs in the GUI thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from tinyforge_gui.state import Task
from tinyforge_gui.workers.runner import Worker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableRows:
    """A CSV/TSV/JSON table read whole: ``(line, object)`` rows, the column names (header or the
    first object's keys), and why reading stopped early ("" when it read to the end)."""

    rows: list[tuple[int, Any]]
    names: list[str]
    error: str = ""


@dataclass(frozen=True)
class PreparedFormat:
    """A base model's light tokenizer and prompt format, and the spellings of its special tokens
    (shown apart in the training text)."""

    base_model: str
    max_length: int
    tokenizer: Any
    fmt: Any  # core.models.prompting.PromptFormat
    special_tokens: tuple[str, ...] = field(default_factory=tuple)


class TableWorker(Worker):
    """Reads a spreadsheet-sized table (CSV, TSV, a ``.json`` array) whole, for the table view."""

    def __init__(self, path: str) -> None:
        super().__init__(Task.TABLE)
        self.path = path

    def work(self) -> TableRows:
        from core.training.dataset_scan import DatasetError
        from core.training.tables import iter_table_rows

        rows: list[tuple[int, Any]] = []
        error = ""
        try:
            for n, item in enumerate(iter_table_rows(self.path)):
                if n % 1024 == 0:
                    self.cancel_token.raise_if_cancelled()
                rows.append(item)
        except DatasetError as exc:  # the scan reports it with its line; the table shows what was read
            error = str(exc)
        first = next((value for _, value in rows if isinstance(value, dict)), None)
        names = [str(k) for k in first] if first is not None else []
        return TableRows(rows, names, error)


class PreviewFormatWorker(Worker):
    """``core.training.dataset_preview.preview_format`` for one (base model, max length): the
    result is a :class:`PreparedFormat`, or None while the base model is not on this machine."""

    def __init__(self, base_model: str, max_length: int) -> None:
        super().__init__(Task.PREVIEW)
        self.key = (base_model, max_length)

    def work(self) -> PreparedFormat | None:
        from core.training.dataset_preview import preview_format

        base_model, max_length = self.key
        prepared = preview_format(base_model, max_length)
        if prepared is None:
            return None
        tokenizer, fmt = prepared
        return PreparedFormat(base_model, max_length, tokenizer, fmt, _special_tokens(tokenizer, fmt))


def _special_tokens(tokenizer: Any, fmt: Any) -> tuple[str, ...]:
    """The special tokens' texts, longest first (so ``<|im_start|>`` wins over a shorter prefix)."""
    found: set[str] = set()
    backend = getattr(tokenizer, "backend", None)
    try:
        found.update(t.content for t in backend.get_added_tokens_decoder().values() if t.special)  # type: ignore[union-attr]
    except Exception as exc:  # noqa: BLE001 - a tokenizer without added tokens still previews
        logger.debug("no added tokens: %s", exc)
    if getattr(fmt, "eos_text", ""):
        found.add(fmt.eos_text)
    return tuple(sorted((t for t in found if t), key=len, reverse=True))


class TokenStatsWorker(Worker):
    """Token lengths of the dataset's training texts against max_length (cancellable): the
    result is ``TokenStats.line()``, or "" for a dataset without a readable row."""

    def __init__(self, path: str, columns: dict[str, str] | None, prepared: PreparedFormat, loss_on: str) -> None:
        super().__init__(Task.TOKEN_STATS)
        self.path = path
        self.columns = dict(columns) if columns else None
        self.prepared = prepared
        self.loss_on = loss_on
        self.key: tuple[Any, ...] = ()  # what it measures, for whoever started it

    def work(self) -> str:
        from core.training.dataset import iter_conversations
        from core.training.dataset_preview import token_stats

        conversations = (conversation for _, _, conversation in iter_conversations(self.path, self.columns))
        p = self.prepared
        stats = token_stats(conversations, p.tokenizer, p.fmt, p.max_length, self.loss_on, self.cancel_token)
        return "" if stats is None else stats.line()
