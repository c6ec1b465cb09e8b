"""``export_report.json`` → ``gguf``: the GGUF files for llama.cpp and Ollama and how they were checked."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from core.run_layout.results import _Result


class GgufFile(_Result):
    """One GGUF file the export wrote and checked (``export_report.json`` → ``gguf.files``)."""

    file: str = ""
    file_type: str = ""
    size_mb: float | None = None
    agreement: float | None = None  # teacher-forced top-1 agreement with the trained model
    exact_match: float | None = None  # share of inputs whose greedy answer is identical
    mean_token_agreement: float | None = None
    tokens_per_s: float | None = None
    passed: bool | None = None
    recommended: bool = False
    checked_in: str | None = None  # "llama.cpp 0.3.36" or "transformers gguf loader"
    n_compared: int | None = None  # inputs checked: fewer when it stopped at a failed verdict
    stopped_early: bool = False
    checked: bool = True  # False: a smaller file passed first, so this one was not checked
    note: str = ""


class GgufTokenization(_Result):
    """llama.cpp's tokenizer against the trained model's on prompts and sample texts."""

    checked_in: str | None = None
    passed: bool | None = None
    n_checked: int | None = None
    n_matched: int | None = None
    mismatches: list[dict[str, Any]] = Field(default_factory=list)
    skipped: str | None = None


class GgufReport(_Result):
    """``export_report.json`` → ``gguf``: the files for llama.cpp and Ollama and their checks."""

    folder: str | None = None
    files: list[GgufFile] = Field(default_factory=list)
    recommended: str | None = None
    recommended_reason: str = ""
    checked_in: str | None = None
    max_new_tokens: int | None = None
    n_inputs: int | None = None
    tokenization: GgufTokenization | None = None
    modelfile: str | None = None
    durations_s: dict[str, float] = Field(default_factory=dict)
