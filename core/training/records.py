"""A real run's records: the whole file validated first, then its pairs (any format, each the
last question and answer of a conversation, with what came before as its context)."""

from __future__ import annotations

from core.events import EventCallback
from core.training.errors import TrainingError
from core.training.formats import Pair

__all__ = ["load_records", "read_pairs"]


def read_pairs(path: str, columns: dict[str, str] | None = None) -> list[Pair]:
    """Every pair of a dataset of any format, without the whole-file validation first
    (``DatasetError`` at the first bad row)."""
    from core.training.dataset import iter_conversations

    return [conversation.pair() for _, _, conversation in iter_conversations(path, columns)]


def load_records(path: str, emit: EventCallback, columns: dict[str, str] | None = None
                 ) -> tuple[list[Pair], int, str]:
    """Validate the whole file, then read its pairs."""
    from core.training.dataset import DatasetError, iter_conversations, validate_file
    from core.training.dataset_scan import DatasetFileError, DatasetNotFoundError

    try:
        report = validate_file(path, columns=columns)
        if not report.valid:
            shown = "; ".join(f"line {p.line}: {p.message}" if p.line else p.message for p in report.problems[:5])
            more = report.n_problems - min(5, len(report.problems)) if hasattr(report, "n_problems") else 0
            suffix = f" (and {more} more)" if more > 0 else ""
            raise TrainingError(f"invalid dataset {path}: {shown}{suffix}")
        records = [conversation.pair() for _, _, conversation in iter_conversations(path, columns)]
    except DatasetNotFoundError as error:
        raise TrainingError(f"dataset not found: {path}") from error
    except DatasetFileError as error:  # a folder, FIFO, device, link loop, unreadable file
        raise TrainingError(f"dataset {error}") from error
    except DatasetError as error:
        raise TrainingError(f"invalid dataset: {error}") from error
    if not records:
        raise TrainingError(f"no training records in {path}")
    return records, int(report.n_records), str(report.sha256)
