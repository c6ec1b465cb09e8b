"""GGUF export of a trained Llama-family model: files for llama.cpp and Ollama, parity-gated.

The real export (:func:`core.exporter.onnx_export.export_real` with ``gguf=True``) calls
:func:`prepare_gguf` before it writes anything (every refusal is one line, nothing written) and
:func:`export_gguf` inside its staging folder, so the files are published with the service
folder or not at all. Each file (F16, Q8_0, Q4_0) is checked against the trained torch model
on the export's parity inputs with the ONNX candidates' gate; the Modelfile points at the
smallest file that passes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.events import CancelToken, EventCallback, Log, Progress
from core.exporter.errors import ExportError
from core.exporter.gguf_vocab import GgufVocab, read_vocab
from core.exporter.gguf_writer import (
    FILE_TYPES,
    LlamaHparams,
    TensorPlan,
    gguf_file_name,
    llama_hparams,
    llama_tensors,
    write_gguf,
)
from core.exporter.modelfile import OllamaTemplate, modelfile_text, ollama_template, readme_text
from core.jsonio import write_text_atomic
from core.models.prompting import PromptFormat, encode_prompt
from core.run_layout import MODELFILE, GgufFile, GgufReport

if TYPE_CHECKING:
    from core.exporter.candidates import Gate
    from core.exporter.parity_runs import TorchRun

logger = logging.getLogger(__name__)

__all__ = ["GgufPlan", "export_gguf", "prepare_gguf", "require_gguf"]

_STAGE = "gguf"


@dataclass(frozen=True)
class GgufPlan:
    """Everything decided about a model's GGUF files before any is written."""

    fmt: PromptFormat
    hparams: LlamaHparams
    vocab: GgufVocab
    tensors: list[TensorPlan]
    template: OllamaTemplate
    stop_words: list[str]


def require_gguf() -> None:
    """:class:`ExportError` when the ``gguf`` package (which writes the files) is missing."""
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise ExportError("GGUF export needs the gguf package: pip install gguf==0.19.0") from exc


def prepare_gguf(model: Any, tokenizer: Any, fmt: PromptFormat) -> GgufPlan:
    """Check that ``model`` can be written as GGUF and plan its files; :class:`ExportError` if not."""
    require_gguf()
    hparams = llama_hparams(model.config)
    stop_words = [tokenizer.decode([i], skip_special_tokens=False) for i in fmt.stop_token_ids]
    template = ollama_template(tokenizer, fmt)
    modelfile_text("model.gguf", template, stop_words, hparams.context_length, fmt.max_new_tokens)  # quotable
    return GgufPlan(fmt, hparams, read_vocab(tokenizer, fmt, hparams.vocab_size), llama_tensors(model, hparams),
                    template, stop_words)


def write_gguf_files(folder: Path, plan: GgufPlan, model_name: str, cancel: CancelToken | None = None) -> dict[str, float]:
    """Write every GGUF file of :data:`FILE_TYPES` into ``folder``; return each one's seconds.

    Emits nothing, so it can run on a thread beside other work (numpy quantization: one core)."""
    folder.mkdir(parents=True, exist_ok=True)
    durations: dict[str, float] = {}
    for file_type in FILE_TYPES:
        started = time.perf_counter()
        write_gguf(folder / gguf_file_name(file_type), file_type, plan.tensors, plan.hparams, plan.vocab, model_name,
                   plan.fmt.to_dict(), cancel)
        durations[f"write_{file_type}"] = round(time.perf_counter() - started, 3)
    return durations


def export_gguf(
    folder: Path,
    plan: GgufPlan,
    model: Any,
    tokenizer: Any,
    texts: list[str],
    model_name: str,
    gate: Gate,
    emit: EventCallback,
    cancel: CancelToken | None = None,
    torch_runs: dict[tuple[int, ...], TorchRun] | None = None,
    written: dict[str, float] | None = None,
) -> tuple[GgufReport, list[str]]:
    """Write ``folder`` (the service's ``gguf/``): the files, the Modelfile and the README.

    Returns the report section and its warnings. The files are checked in llama.cpp when
    ``llama_cpp`` is importable, else through transformers' GGUF loader. ``torch_runs`` are the
    trained model's greedy runs the ONNX check made (by prompt ids, at least the answer length
    long): reused, not run again. ``written``: the files are there already (what
    :func:`write_gguf_files` returned).
    """
    from core.exporter.gguf_check import check_tokenization
    from core.exporter.gguf_runtime import llama_cpp_available

    fmt = plan.fmt
    total = len(FILE_TYPES) + 2 + (0 if written else len(FILE_TYPES))
    step = _Steps(emit, cancel, total)
    _write_files(folder, plan, model_name, step, cancel, written)
    prompts = [encode_prompt(tokenizer, fmt, t) for t in texts]
    runs = _reference_runs(model, prompts, fmt, torch_runs or {}, step)
    rows = _check_files(folder, model, prompts, runs, fmt, gate, step, emit)
    with step("llama.cpp's tokenizer against the trained model's", "tokenization"):
        smallest = folder / gguf_file_name(FILE_TYPES[-1])  # every file holds the same tokenizer
        tokenization = check_tokenization(smallest, tokenizer, fmt, texts)
    recommended, reason, warnings = _recommend(rows, gate)
    if tokenization.passed is False:
        warnings.append(f"llama.cpp tokenizes {tokenization.n_checked - (tokenization.n_matched or 0)} of "
                        f"{tokenization.n_checked} texts differently from the trained model's tokenizer: "
                        "answers in Ollama and llama.cpp may differ")
    if not llama_cpp_available():
        emit(Log("GGUF files checked with transformers' GGUF loader; install llama-cpp-python to check them "
                 "in llama.cpp itself"))
    checked_in = _write_modelfile_and_readme(folder, plan, rows, recommended)
    report = GgufReport(
        files=rows, recommended=recommended, recommended_reason=reason, checked_in=checked_in,
        max_new_tokens=fmt.max_new_tokens, n_inputs=len(texts), tokenization=tokenization, modelfile=MODELFILE,
        durations_s=step.durations,
    )
    return report, warnings


def _write_files(folder: Path, plan: GgufPlan, model_name: str, step: _Steps, cancel: CancelToken | None,
                 written: dict[str, float] | None) -> None:
    """Write every GGUF file as a step of its own, unless they were ``written`` already (their seconds)."""
    if written is not None:
        step.durations.update(written)
        return
    folder.mkdir(parents=True, exist_ok=True)
    for file_type in FILE_TYPES:
        name = gguf_file_name(file_type)
        with step(f"writing {name}", f"write_{file_type}"):
            write_gguf(folder / name, file_type, plan.tensors, plan.hparams, plan.vocab, model_name,
                       plan.fmt.to_dict(), cancel)


def _reference_runs(model: Any, prompts: list[list[int]], fmt: PromptFormat, known: dict[tuple[int, ...], TorchRun],
                    step: _Steps) -> list[TorchRun]:
    """The trained model's greedy run for every prompt: the ONNX check's where it is long enough,
    else decoded in torch now."""
    from core.exporter.parity_runs import torch_greedy, truncated

    stop_ids = set(fmt.stop_token_ids)
    runs: list[TorchRun] = []
    with step("the trained model's answers (torch)", "torch_reference"):
        for prompt in prompts:
            step.check_cancel()
            run = known.get(tuple(prompt))
            if run is None or (len(run.ids) == len(run.step_logits) and len(run.ids) < fmt.max_new_tokens):
                run = torch_greedy(model, "causal", prompt, fmt.max_new_tokens, stop_ids)  # none, or cut short
            runs.append(truncated(run, fmt.max_new_tokens))
    return runs


def _check_files(folder: Path, model: Any, prompts: list[list[int]], runs: list[TorchRun], fmt: PromptFormat,
                 gate: Gate, step: _Steps, emit: EventCallback) -> list[GgufFile]:
    """Each file's row, checked against the trained model smallest first (the smallest that passes
    is recommended, so the larger ones are not checked); the rows largest first."""
    n_ctx = max([len(p) for p in prompts] + [1]) + fmt.max_new_tokens + 1
    rows: list[GgufFile] = []
    smallest_passing = ""
    for file_type in reversed(FILE_TYPES):
        name = gguf_file_name(file_type)
        size_mb = round((folder / name).stat().st_size / 1e6, 2)
        if smallest_passing:
            rows.append(GgufFile(file=name, file_type=file_type, size_mb=size_mb, checked=False,
                                 note=f"not checked: {smallest_passing} is smaller and answers like the trained model"))
            step.skip(f"check_{file_type}")
            continue
        row = _check_file(folder, file_type, size_mb, model, prompts, runs, fmt, gate, step, n_ctx)
        rows.append(row)
        if row.passed:
            smallest_passing = name
        emit(Log(f"{name}: agreement {row.agreement or 0.0:.3f}, exact match {row.exact_match or 0.0:.2f}, "
                 f"{'passed' if row.passed else 'drifts'} ({row.checked_in})"))
    rows.reverse()  # largest first, as the files are listed everywhere
    return rows


def _check_file(folder: Path, file_type: str, size_mb: float, model: Any, prompts: list[list[int]],
                runs: list[TorchRun], fmt: PromptFormat, gate: Gate, step: _Steps, n_ctx: int) -> GgufFile:
    """One file's row: its answers against the trained model's, in the runtime that opens it (a step)."""
    from core.exporter.gguf_check import check_file
    from core.exporter.gguf_runtime import open_runtime

    name = gguf_file_name(file_type)
    with step(f"checking {name} against the trained model", f"check_{file_type}"):
        runtime = open_runtime(folder / name, n_ctx, getattr(model.config, "rope_parameters", None))
        try:
            result = check_file(runtime, prompts, runs, fmt.max_new_tokens, set(fmt.stop_token_ids), gate)
        finally:
            runtime.close()
    return result.model_copy(update={"file": name, "file_type": file_type, "size_mb": size_mb,
                                     "checked_in": runtime.checked_in})


def _write_modelfile_and_readme(folder: Path, plan: GgufPlan, rows: list[GgufFile], recommended: str) -> str | None:
    """Write the Modelfile (pointing at ``recommended``) and the README; return where the files were checked."""
    fmt = plan.fmt
    write_text_atomic(folder / MODELFILE, modelfile_text(recommended, plan.template, plan.stop_words,
                                                         plan.hparams.context_length, fmt.max_new_tokens))
    checked_in = next((r.checked_in for r in rows if r.checked_in), None)
    write_text_atomic(folder / "README.md", readme_text(rows, recommended,
                                                       plan.hparams.context_length, fmt.max_new_tokens,
                                                       checked_in or ""))
    return checked_in


def _recommend(rows: list[GgufFile], gate: Gate) -> tuple[str, str, list[str]]:
    """The smallest file that passes the gate (F16 when none does), why, and the warnings."""
    passing = sorted((r for r in rows if r.passed), key=lambda r: r.size_mb or 0.0)
    warnings = [f"{r.file} answers drift from the trained model: agreement {r.agreement:.3f}, exact match "
                f"{r.exact_match:.2f} (gate {gate.min_teacher_forced} / {gate.min_greedy_match}): not recommended"
                for r in rows if r.checked and not r.passed]
    if passing:
        best = passing[0]
        reason = (f"{best.file} is the smallest file that answers like the trained model (agreement "
                  f"{best.agreement:.3f}, exact match {best.exact_match:.2f})")
    else:
        best = rows[0]
        reason = "no GGUF file passed the gate; the Modelfile uses the unquantized F16 file"
        warnings.append(reason)
    best.recommended = True
    return best.file, reason, warnings


class _Steps:
    """Progress events of the GGUF stage, cancel polled before each step, each step's seconds."""

    def __init__(self, emit: EventCallback, cancel: CancelToken | None, total: int) -> None:
        self.emit, self.cancel, self.total, self.done = emit, cancel, total, 0
        self.durations: dict[str, float] = {}

    def check_cancel(self) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()

    def skip(self, key: str) -> None:
        """A step not needed after all (it counts as done)."""
        self.durations[key] = 0.0
        self.done += 1

    @contextmanager
    def __call__(self, message: str, key: str) -> Iterator[None]:
        self.check_cancel()
        self.emit(Progress(_STAGE, self.done, self.total, message))
        started = time.perf_counter()
        yield
        self.durations[key] = round(time.perf_counter() - started, 3)
        self.done += 1
        if self.done == self.total:
            self.emit(Progress(_STAGE, self.done, self.total, "GGUF files checked"))
