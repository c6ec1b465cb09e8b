"""A real run's records: the whole file validated first, then its (input, output) pairs."""

from __future__ import annotations

from core.events import EventCallback
from core.training.errors import TrainingError

__all__ = ["load_records"]


def load_records(path: str, emit: EventCallback) -> tuple[list[tuple[str, str]], int, str]:
    """Validate the whole file, then read its (input, output) pairs."""
    from core.training.dataset import DatasetError, stream_jsonl, validate_file
    from core.training.dataset_scan import DatasetFileError, DatasetNotFoundError

    try:
        report = validate_file(path)
        if not report.valid:
            shown = "; ".join(f"line {p.line}: {p.message}" if p.line else p.message for p in report.problems[:5])
            more = report.n_problems - min(5, len(report.problems)) if hasattr(report, "n_problems") else 0
            suffix = f" (and {more} more)" if more > 0 else ""
            raise TrainingError(f"invalid dataset {path}: {shown}{suffix}")
        records = [(str(r["input"]), str(r["output"])) for r in stream_jsonl(path)]
    except DatasetNotFoundError as error:
        raise TrainingError(f"dataset not found: {path}") from error
    except DatasetFileError as error:  # a folder, FIFO, device, link loop, unreadable file
        raise TrainingError(f"dataset {error}") from error
    except DatasetError as error:
        raise TrainingError(f"invalid dataset: {error}") from error
    if not records:
        raise TrainingError(f"no training records in {path}")
    return records, int(report.n_records), str(report.sha256)
