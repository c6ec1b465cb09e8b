"""A run folder's layout: its file and folder names, typed models of what its files hold, readers.

The one place that knows what a run folder looks like, for core and the GUI alike::

    RUN/run.json                     RunRecord (status, options, dataset, stages, timings, error)
    RUN/events.jsonl                 one event per line
    RUN/model/                       the training output (a dry run: model_stub.json)
        training_report.json         TrainingReport
        model_manifest.json          ModelManifest
        evaluation.json              Evaluation
        evaluations/<file>.json      Evaluation of `foremforge evaluate --data FILE`
        model/ (merged model), adapter/ (LoRA), checkpoints/ (cancelled)
    RUN/model.cancelled/             a cancelled real training's checkpoint (Resume)
    RUN/service/                     the exported service
        export_report.json           ExportReport (with its quantization candidates and GGUF files)
        gguf/                        GGUF files for llama.cpp/Ollama, their Modelfile and README
        model_metadata.json          ModelMetadata
        onnx/model.onnx (+ .meta.json), onnx/encoder.onnx (seq2seq), onnx/quant/<candidate>.onnx
        tokenizer.json, tinyforge_prompt.json, model_config/, app.py (the service template)

A trained model folder (``model/model/``) holds ``tinyforge_prompt.json`` beside its weights.
The service template (``core/exporter/service_template``) runs without core and spells the names
it reads itself; ``tests/core/test_run_layout.py`` checks that they agree.

The readers tolerate older and newer files: every field is optional and unknown keys are kept
(``extra="allow"``). A file that is missing, unreadable, not JSON or of the wrong shape raises
:class:`RunFileError`, one line naming the file. Writers build the same models and write them
with :func:`write_result`: the fields they set, in the models' order (:meth:`_Result.to_json`),
so a file holds exactly the keys its writer gave (a real training's report and manifest
included). Headless; pydantic only.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    WrapValidator,
    field_serializer,
    model_serializer,
    model_validator,
)

from core.jsonio import write_json_atomic
from core.train_config import TrainConfig

logger = logging.getLogger(__name__)

__all__ = [
    "ADAPTER_DIR",
    "CHECKPOINTS_DIR",
    "ENCODER_GRAPH_FILE",
    "EVALUATIONS_DIR",
    "EVALUATION_FILE",
    "EVENTS_FILE",
    "EXPORT_REPORT_FILE",
    "GGUF_DIR",
    "MODELFILE",
    "MODEL_CONFIG_DIR",
    "MODEL_DIR",
    "MODEL_MANIFEST_FILE",
    "VARIANTS_FILE",
    "MODEL_METADATA_FILE",
    "MODEL_STUB_FILE",
    "ONNX_DIR",
    "ONNX_GRAPH_FILE",
    "ONNX_META_FILE",
    "PROMPT_FILE",
    "QUANTIZED_FILE",
    "QUANT_DIR",
    "RESUME_DIR",
    "RUN_FILE",
    "SERVICE_APP_FILE",
    "SERVICE_DIR",
    "TOKENIZER_FILE",
    "TRAINING_REPORT_FILE",
    "Candidate",
    "Estimate",
    "Evaluation",
    "EvaluationRow",
    "ExportOptions",
    "ExportGate",
    "ExportReport",
    "GgufFile",
    "GgufReport",
    "GgufTokenization",
    "LatencyReport",
    "LatencyResult",
    "ModelManifest",
    "ModelMetadata",
    "ParityReport",
    "PhrasingRow",
    "ParityResult",
    "Quantization",
    "RunFileError",
    "RunOptions",
    "RunRecord",
    "SelfTest",
    "SplitMeans",
    "TrainingReport",
    "evaluation_path",
    "export_report_path",
    "list_runs",
    "parse",
    "read_evaluation",
    "read_export_report",
    "read_model_manifest",
    "read_model_metadata",
    "read_object",
    "read_run",
    "read_training_report",
    "training_report_path",
    "write_result",
]

# --------------------------------------------------------------------------- names

RUN_FILE = "run.json"
EVENTS_FILE = "events.jsonl"
MODEL_DIR = "model"  # the run's training output; inside it, the merged model is model/ again
SERVICE_DIR = "service"
RESUME_DIR = "model.cancelled"
TRAINING_REPORT_FILE = "training_report.json"
MODEL_MANIFEST_FILE = "model_manifest.json"
MODEL_STUB_FILE = "model_stub.json"  # a dry run's placeholder model (name kept from TinyForgeAI)
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
EVALUATION_FILE = "evaluation.json"
VARIANTS_FILE = "variants.jsonl"  # every phrasing a real run trained or held out (core.training.variants)
EVALUATIONS_DIR = "evaluations"  # `foremforge evaluate --data FILE` results, one per file
EXPORT_REPORT_FILE = "export_report.json"
MODEL_METADATA_FILE = "model_metadata.json"
GGUF_DIR = "gguf"  # in a service folder: GGUF files for llama.cpp/Ollama, Modelfile, README.md
MODELFILE = "Modelfile"
PROMPT_FILE = "tinyforge_prompt.json"  # the prompt format: beside a trained model, in a service folder
# In a service folder, besides model_metadata.json, export_report.json and gguf/:
SERVICE_APP_FILE = "app.py"  # the service template's app (what makes a folder a service to run)
TOKENIZER_FILE = "tokenizer.json"  # the fast tokenizer (Hugging Face's name for it)
MODEL_CONFIG_DIR = "model_config"  # the model's tokenizer, generation and model configs
ONNX_DIR = "onnx"  # the graphs and their metadata
ONNX_GRAPH_FILE = "model.onnx"  # the fp32 decoder graph (a dry run: a text placeholder)
ENCODER_GRAPH_FILE = "encoder.onnx"  # a seq2seq model's fp32 encoder graph
ONNX_META_FILE = ONNX_GRAPH_FILE + ".meta.json"  # the graphs' runtime layout, sizes and quantization
QUANT_DIR = "quant"  # in onnx/: the quantized candidates' graphs
QUANTIZED_FILE = "quantized.onnx"  # the dynamic int8 decoder graph (TinyForgeAI's name)

RunStatus = Literal["created", "running", "completed", "failed", "cancelled"]


# --------------------------------------------------------------------------- errors


class RunFileError(ValueError):
    """A run folder's file is missing, unreadable, not JSON, or not what it should hold.

    A ``ValueError``, so callers that caught the JSON errors of a plain ``json.load`` still do.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# --------------------------------------------------------------------------- options (inputs)


class ExportOptions(BaseModel):
    """Options of the export stage: ONNX export, quantization, overwrite (TinyForgeAI's builder flags)."""

    model_config = ConfigDict(extra="forbid")

    export_onnx: bool = False
    quantize: Literal["int8", "none"] = "int8"
    overwrite: bool = False
    gguf: bool = False  # also gguf/ for llama.cpp and Ollama (a trained Llama-family model)


class RunOptions(BaseModel):
    """What a run does: ``actions`` in order, the training config and the export options.

    ``train.output_dir`` is filled in by :func:`core.runs.create_run` (the run's ``model/``
    folder). ``source_model`` names a model to export when the run does not train one itself.
    """

    model_config = ConfigDict(extra="forbid")

    actions: list[Literal["train", "export"]] = Field(default_factory=lambda: ["train"])
    train: TrainConfig
    export: ExportOptions = Field(default_factory=ExportOptions)
    source_model: str | None = None


def _known_fields(model: type[BaseModel], data: Any) -> Any:
    """``data`` without the keys ``model`` does not know (recursively): an older or newer
    run.json's options still read with today's strict input models."""
    if not isinstance(data, dict):
        return data
    known: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in data:
            continue
        value = data[name]
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            value = _known_fields(info.annotation, value)
        known[name] = value
    return known


def _tolerant(model: type[BaseModel]) -> WrapValidator:
    """Validate a nested input model leniently: unknown keys dropped, and a value that still
    does not validate reads as None (the rest of the file stays readable)."""

    def validate(value: Any, handler: Callable[[Any], Any]) -> Any:
        if value is None or isinstance(value, model):
            return value
        try:
            return handler(_known_fields(model, value))
        except ValidationError as exc:
            logger.warning("ignoring %s that does not validate: %s", model.__name__, _first_error(exc))
            return None

    return WrapValidator(validate)


# --------------------------------------------------------------------------- models (results)


class _Result(BaseModel):
    """A result file's model: every field optional, unknown keys kept (older and newer files)."""

    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict[str, Any]:
        """What the file holds: the fields set (by the writer, or read), in JSON types."""
        return self.model_dump(mode="json", exclude_unset=True)


def write_result(path: str | os.PathLike[str], result: _Result) -> Path:
    """Write ``result`` (:meth:`_Result.to_json`) to ``path`` atomically."""
    return write_json_atomic(path, result.to_json())


class DatasetInfo(_Result):
    path: str = ""
    size: int | None = None
    sha256: str | None = None


class StageRecord(_Result):
    name: str = ""
    status: str = ""
    seconds: float | None = None
    result: Any = None


class RunError(_Result):
    message: str = ""
    details: str = ""


class RunRecord(_Result):
    """``run.json``: one run's options, dataset, stages, timings and outcome.

    The fields are in the order the file has always had them (:func:`core.runs.create_run`
    writes the first eight, executing a run adds the times and the error). The options are
    written back as they were read, with what changed since (an option this version does not
    know, or options it cannot read, are not lost by saving the record)."""

    run_id: str = ""
    status: str = "unknown"  # a RunStatus; any string of an older or newer file reads
    created_time: str = ""
    options: Annotated[RunOptions | None, _tolerant(RunOptions)] = None
    dataset: DatasetInfo = Field(default_factory=DatasetInfo)
    stages: list[StageRecord] = Field(default_factory=list)
    timings: dict[str, float | None] = Field(default_factory=dict)
    versions: dict[str, str | None] = Field(default_factory=dict)
    started_time: str | None = None
    error: RunError | None = None
    finished_time: str | None = None
    # Where it was read from (not a field of the file).
    folder: Path | None = Field(default=None, exclude=True)
    _options_as_read: Any = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_options(cls, data: Any, handler: Callable[[Any], RunRecord]) -> RunRecord:
        record = handler(data)
        if isinstance(data, dict) and not isinstance(data.get("options"), BaseModel):
            record._options_as_read = data.get("options")
        return record

    @field_serializer("options")
    def _options_out(self, options: RunOptions | None) -> Any:
        if options is None:
            return self._options_as_read
        written = options.model_dump(mode="json")
        return _merged(self._options_as_read, written) if isinstance(self._options_as_read, dict) else written

    @property
    def name(self) -> str:
        return self.run_id or (self.folder.name if self.folder else "")

    def clear_error(self) -> None:
        """No ``error`` in the file any more (a run executed again)."""
        self.error = None
        self.model_fields_set.discard("error")


def _merged(read: dict[str, Any], written: dict[str, Any]) -> dict[str, Any]:
    """``read`` with ``written``'s values over it, recursively: its order and its other keys kept."""
    out = dict(read)
    for key, value in written.items():
        before = out.get(key)
        out[key] = _merged(before, value) if isinstance(before, dict) and isinstance(value, dict) else value
    return out


class EvaluationSummary(_Result):
    """``training_report.json`` → ``evaluation``: the verdict and split means of ``evaluation.json``,
    or ``cancelled`` (and no file) when the evaluation was cancelled."""

    verdict: str = ""
    splits: dict[str, Any] = Field(default_factory=dict)
    cancelled: bool | None = None
    file: str | None = EVALUATION_FILE


class PhrasingRow(_Result):
    """One phrasing of a fact (``variants.jsonl``, ``core.training.variants``): the question as
    asked, the fact's answer, which fact, where the wording came from and, in a run, its split."""

    input: str = ""
    output: str = ""
    fact: int = 0
    source: str = ""  # "original" (the user's own question), "surface" or "generated"
    split: str | None = None  # "train" or "unseen" (held out to check questions asked in other words)


class TrainingReport(_Result):
    """``training_report.json`` of a real training output (completed, cancelled or failed).

    The fields are in the order :mod:`core.training.run_report` writes them: every report's
    (status to versions; a failed report adds ``error``, one cancelled before its first step
    ``checkpoint``), then a trained run's, then rank 0's ``evaluation`` and ``artifacts`` (completed)
    or ``checkpoint`` (cancelled).
    """

    status: str = ""
    base_model: str | None = None
    config: Annotated[TrainConfig | None, _tolerant(TrainConfig)] = None
    n_records: int | None = None
    n_train: int | None = None
    n_eval: int | None = None
    dataset_sha256: str | None = None
    world_size: int | None = None
    created_time: str | None = None
    duration_seconds: float | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)
    architecture: str | None = None
    n_train_pairs: int | None = None  # phrasings trained (question variants) or records
    n_eval_pairs: int | None = None
    n_truncated: int | None = None
    variants: dict[str, Any] | None = None
    early_stopping: dict[str, Any] | None = None  # best_step, best_loss, stopped_at, reason
    device: str | None = None
    precision: str | None = None
    precision_reason: str | None = None
    threads: int | None = None
    global_step: int | None = None
    total_steps: int | None = None
    train_loss: float | None = None
    log_history: list[dict[str, Any]] = Field(default_factory=list)
    train_seconds: float | None = None
    train_tokens: int | None = None
    tokens_per_second: float | None = None
    resumed_from: str | None = None
    recipe: dict[str, Any] | None = None
    # a CPU run's batches longer than max_tokens padded tokens ran in parts (core.training.step_parts)
    step_parts: dict[str, int] | None = None
    lora_applied: bool | None = None
    lora_config: dict[str, Any] | None = None
    lora_timestamp: str | None = None
    evaluation: EvaluationSummary | None = None
    evaluation_cancelled: bool | None = None
    checkpoint: str | None = None
    artifacts: dict[str, str | None] | None = None
    error: str | None = None

    @field_serializer("config")
    def _whole_config(self, config: TrainConfig | None, info: SerializationInfo) -> Any:
        """The config whole, defaults included, whichever fields of the report are dumped."""
        return config.model_dump(mode="json" if info.mode_is_json() else "python") if config is not None else None


class SplitMeans(_Result):
    """One evaluated split's means (``evaluation.json`` → ``splits``)."""

    n: int = 0
    tuned_rouge_l: float | None = None
    base_rouge_l: float | None = None
    tuned_exact: float | None = None
    base_exact: float | None = None
    reproduced: int = 0
    tuned_fact_recall: float | None = None
    base_fact_recall: float | None = None
    answered: int = 0  # questions answered with every checkable fact of the reference (facts.answered)
    base_answered: int = 0
    loss: float | None = None
    perplexity: float | None = None
    base_loss: float | None = None
    base_perplexity: float | None = None


class EvaluationRow(_Result):
    """One evaluated record: the reference and both models' answers with their scores."""

    split: str = ""
    input: str = ""
    reference: str = ""
    base_answer: str = ""
    tuned_answer: str = ""
    base_rouge_l: float = 0.0
    tuned_rouge_l: float = 0.0
    base_exact: bool = False
    tuned_exact: bool = False
    base_fact_recall: float | None = None
    tuned_fact_recall: float | None = None
    base_answered: bool = False
    tuned_answered: bool = False
    system: str | None = None  # a conversation's question asked after a system message
    history: list[dict[str, str]] | None = None  # and after earlier turns (role, content)


class Evaluation(_Result):
    """``evaluation.json``: did the model learn? (core.training.evaluate)."""

    created_time: str | None = None
    max_new_tokens: int | None = None
    reproduced_rouge_l: float | None = None
    splits: dict[str, SplitMeans] = Field(default_factory=dict)
    rows: list[EvaluationRow] = Field(default_factory=list)
    verdict: str = ""
    seconds: float | None = None
    model: str | None = None
    base_model: str | None = None
    # Where it was written or read (not a field of the file).
    path: Path | None = Field(default=None, exclude=True)


class Quantization(_Result):
    """How one graph was quantized (``core.exporter.quantize``): dynamic int8, block-wise
    weight-only, or float16, with the seconds it took (and, from ``quantize_onnx``, the sizes)."""

    method: str = ""
    weight_type: str | None = None  # dynamic: int8 or uint8
    pre_process: str | None = None
    per_channel: bool | None = None
    op_types: list[str] | None = None
    bits: int | None = None  # block-wise
    block_size: int | None = None
    symmetric: bool | None = None
    accuracy_level: int | None = None
    keep_io_types: bool | None = None  # float16
    seconds: float | None = None
    source_bytes: int | None = None
    quantized_bytes: int | None = None


class Candidate(_Result):
    """One precision the export built and checked (``export_report.json`` → ``candidates``)."""

    description: str = ""
    # Per graph role (``decoder``; seq2seq also ``encoder``): how that graph was quantized.
    quantization: dict[str, Quantization] = Field(default_factory=dict)
    size_bytes: int | None = None
    ms_per_token: float | None = None
    speedup_vs_torch: float | None = None
    teacher_forced_agreement: float | None = None
    generation_match_rate: float | None = None
    passed: bool | None = None
    served: bool = False
    kept: bool = True
    checked: bool = True  # False: a faster candidate passed first, so this one was not checked
    note: str = ""  # why it was not checked, or that its check stopped at a failed verdict


class ParityResult(_Result):
    """One precision's agreement with the trained torch model (``parity`` → precision)."""

    n_compared: int | None = None
    max_abs_logit_diff: float | None = None
    generation_match_rate: float | None = None
    mean_token_agreement: float | None = None
    teacher_forced_agreement: float | None = None
    positions_compared: int | None = None
    ties_skipped: int | None = None
    stopped_early: bool = False
    checked: bool = True
    passed: bool | None = None
    note: str | None = None  # why it was not checked


class ParityReport(_Result):
    """``export_report.json`` → ``parity``: the inputs compared, then one :class:`ParityResult`
    per precision (keys of the section itself on disk), then where the time went."""

    n_inputs: int | None = None
    inputs_source: str | None = None
    max_new_tokens: int | None = None
    tokenizer_match: bool | None = None
    results: dict[str, ParityResult] = Field(default_factory=dict)  # precision -> result (flat on disk)
    seconds: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        return _gather_entries(cls, data, {"results": lambda key, value: isinstance(value, dict)})

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _flatten_entries(handler(self), ("results",))


class LatencyResult(_Result):
    median_ms_per_token: float | None = None
    median_prefill_ms: float | None = None
    n_tokens_timed: int | None = None


class LatencyReport(_Result):
    """``export_report.json`` → ``latency``: one :class:`LatencyResult` per backend (``torch``,
    ``onnx_<precision>``) and the speed-ups ``speedup_<precision>_vs_torch``, both keys of the
    section itself on disk."""

    unit: str | None = None
    max_new_tokens: int | None = None
    torch_threads: int | None = None
    backends: dict[str, LatencyResult] = Field(default_factory=dict)  # flat on disk
    speedups: dict[str, float] = Field(default_factory=dict)  # "speedup_<precision>_vs_torch" -> ratio, flat on disk

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        return _gather_entries(cls, data, {
            "backends": lambda key, value: isinstance(value, dict),
            "speedups": lambda key, value: key.startswith("speedup_") and isinstance(value, int | float),
        })

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _flatten_entries(handler(self), ("backends", "speedups"))

    def speedup(self, precision: str) -> float | None:
        return self.speedups.get(f"speedup_{precision}_vs_torch")


def _gather_entries(model: type[BaseModel], data: Any, groups: dict[str, Callable[[str, Any], bool]]) -> Any:
    """A section read from disk, whose entries (per precision, per backend) are its own keys:
    those entries gathered under the model's ``groups`` fields (the first group whose test fits)."""
    if not isinstance(data, dict):
        return data
    if any(name in data for name in groups):  # built in Python: every group set, so written
        return {**{name: {} for name in groups}, **data}
    gathered: dict[str, Any] = {name: {} for name in groups}
    for key, value in data.items():
        group = None if key in model.model_fields else next(
            (name for name, fits in groups.items() if fits(key, value)), None)
        if group is None:
            gathered[key] = value
        else:
            gathered[group][key] = value
    return gathered


def _flatten_entries(data: dict[str, Any], groups: tuple[str, ...]) -> dict[str, Any]:
    """The section as written: each group's entries in its place, as keys of the section."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in groups:
            flat.update(value)
        else:
            flat[key] = value
    return flat


class SelfTest(_Result):
    """The exported service answering the parity inputs over HTTP (``serve.self_test``)."""

    passed: bool | None = None
    skipped: bool = False
    n_checked: int | None = None
    n_matched: int | None = None
    precision: str | None = None
    auth: bool | None = None  # asked with the shell's API key
    startup_s: float | None = None
    latency_ms_median: float | None = None
    bad_request_status: dict[str, int] = Field(default_factory=dict)
    healthy_after: bool | None = None
    mismatches: list[dict[str, str]] = Field(default_factory=list)
    error: str | None = None
    seconds: float | None = None


class ExportGate(_Result):
    """What a quantized precision had to keep of the trained model to be served
    (``core.exporter.candidates.Gate``)."""

    min_teacher_forced: float | None = None
    min_greedy_match: float | None = None
    tie_margin: float | None = None


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


class ExportReport(_Result):
    """``export_report.json``: a real export (graphs, parity, latency, candidates, self-test)
    or a dry run's placeholders (paths and time only)."""

    onnx_path: str | None = None
    quantized_path: str | None = None
    export_time: str | None = None
    model_path: str | None = None
    model_stub: bool | None = None  # absent in a dry run's placeholder report
    architecture: str | None = None
    base_model: str | None = None
    exporter: str | None = None
    opset: int | None = None
    graph_source: str | None = None  # "exported" (traced by this export) or "cache" (a base model's graph)
    graphs: dict[str, dict[str, str]] = Field(default_factory=dict)
    sizes: dict[str, int | float | None] = Field(default_factory=dict)  # "<precision>_bytes", ratios
    parity: ParityReport = Field(default_factory=ParityReport)
    latency: LatencyReport = Field(default_factory=LatencyReport)
    self_test: SelfTest | None = None
    served_precision: str | None = None
    served_reason: str | None = None
    gate: ExportGate | None = None
    candidates: dict[str, Candidate] = Field(default_factory=dict)
    samples: list[dict[str, Any]] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    durations_s: dict[str, float | None] = Field(default_factory=dict)
    gguf: GgufReport | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_served_name(cls, data: Any) -> Any:
        """Older reports also wrote the served precision as ``service_precision`` (some only
        that name): read it as ``served_precision``, the one name this model keeps."""
        if isinstance(data, dict) and "service_precision" in data:
            data = dict(data)
            older = data.pop("service_precision")
            if not data.get("served_precision"):
                data["served_precision"] = older
        return data

    def precisions(self) -> list[str]:
        """Every ONNX precision the report describes, fp32 first: its candidates, and in a report
        written before candidates were recorded, the precisions with graphs, sizes, parity or latency."""
        found = [*self.candidates, *self.graphs]
        found += [key.removesuffix("_bytes") for key in self.sizes if key.endswith("_bytes")]
        found += list(self.parity.results)
        found += [key.removeprefix("onnx_") for key in self.latency.backends if key.startswith("onnx_")]
        return sorted(dict.fromkeys(found), key=lambda precision: precision != "fp32")

    def candidate(self, precision: str) -> Candidate:
        """``candidates[precision]``, or for a report written before candidates were recorded,
        the same figures gathered from ``sizes``, ``latency`` and ``parity``."""
        if precision in self.candidates:
            return self.candidates[precision]
        parity = self.parity_of(precision) or ParityResult()
        latency = self.latency_of(f"onnx_{precision}") or LatencyResult()
        size = self.sizes.get(f"{precision}_bytes")
        return Candidate(
            size_bytes=int(size) if size is not None else None,
            ms_per_token=latency.median_ms_per_token,
            speedup_vs_torch=self.latency.speedup(precision),
            teacher_forced_agreement=parity.teacher_forced_agreement,
            generation_match_rate=parity.generation_match_rate,
            passed=parity.passed,
            served=precision == self.served_precision,
            checked=parity.checked and precision in self.parity.results,
        )

    def parity_of(self, precision: str) -> ParityResult | None:
        return self.parity.results.get(precision)

    def latency_of(self, backend: str) -> LatencyResult | None:
        return self.latency.backends.get(backend)


class ModelManifest(_Result):
    """``model_manifest.json`` of a trained model (``core.training.hf_train``): what the export
    needs to know of it. A LoRA run adds TinyForgeAI's ``lora_*`` keys (kept as they are)."""

    model_type: str | None = None  # "tinyforge_hf"
    n_records: int | None = None
    created_time: str | None = None
    base_model: str | None = None
    architecture: str | None = None  # "causal" | "seq2seq"
    model_dir: str | None = None
    lora_applied: bool | None = None
    lora_config: dict[str, Any] | None = None
    lora_timestamp: str | None = None
    data_path: str | None = None  # an older manifest's dataset (parity inputs)


class ModelMetadata(_Result):
    """``service/model_metadata.json``: which model the service serves."""

    model_path: str | None = None
    created_time: str | None = None
    source: str | None = None
    model_stub: bool | None = None
    architecture: str | None = None
    base_model: str | None = None


class Estimate(_Result):
    """What :func:`core.training.estimate.estimate_run` projects for a real run."""

    probe_steps: int
    probe_seconds: float
    seconds_per_step: float
    n_train: int
    n_eval: int
    steps_per_epoch: int
    total_steps: int
    epochs: float
    max_steps: int
    recipe: dict[str, Any] = Field(default_factory=dict)
    recipe_summary: str = ""
    projected_train_seconds: float
    overhead_seconds: float
    projected_total_seconds: float
    peak_rss_bytes: int = 0
    memory_source: str = ""
    device: str | None = None
    precision: str | None = None
    tokens_per_second: float | None = None
    base_model: str | None = None


# --------------------------------------------------------------------------- readers

M = TypeVar("M", bound=BaseModel)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err.get("loc", ()))
    return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))


def read_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`RunFileError` when it is missing, unreadable or not one."""
    target = Path(path)
    try:
        with open(target, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as exc:
        raise RunFileError(target, "no such file") from exc
    except IsADirectoryError as exc:
        raise RunFileError(target, "a folder, not a file") from exc
    except OSError as exc:
        raise RunFileError(target, f"cannot read it ({(exc.strerror or type(exc).__name__).lower()})") from exc
    except UnicodeDecodeError as exc:
        raise RunFileError(target, "not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise RunFileError(target, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    if not isinstance(data, dict):
        raise RunFileError(target, f"not a JSON object (a {type(data).__name__})")
    return data


def parse(model: type[M], data: Any, path: str | os.PathLike[str]) -> M:
    """``data`` (read from ``path``) as ``model``; :class:`RunFileError` when it does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RunFileError(path, f"not a valid {model.__name__}: {_first_error(exc)}") from exc


def _read(model: type[M], path: Path) -> M:
    return parse(model, read_object(path), path)


def _first_file(*candidates: Path) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def read_run(run_dir: str | os.PathLike[str]) -> RunRecord:
    """``run_dir/run.json``."""
    folder = Path(run_dir)
    record = _read(RunRecord, folder / RUN_FILE)
    record.folder = folder
    return record


def list_runs(root: str | os.PathLike[str]) -> list[RunRecord]:
    """The runs under ``root``, newest first; folders without a readable run.json are skipped."""
    try:
        children = list(Path(root).iterdir())
    except OSError:  # missing, not a folder, no permission: no runs to show
        return []
    found: list[RunRecord] = []
    for child in children:
        if not (child / RUN_FILE).is_file():
            continue
        try:
            found.append(read_run(child))
        except RunFileError as exc:
            logger.warning("skipping unreadable run: %s", exc)
    found.sort(key=lambda r: (r.created_time, r.folder.name if r.folder else ""), reverse=True)
    return found


def training_report_path(folder: str | os.PathLike[str]) -> Path | None:
    """``training_report.json`` of a training output folder or of a run folder (``model/``)."""
    base = Path(folder)
    return _first_file(base / TRAINING_REPORT_FILE, base / MODEL_DIR / TRAINING_REPORT_FILE)


def read_training_report(folder: str | os.PathLike[str]) -> TrainingReport:
    """The training report of a training output folder or a run folder."""
    path = training_report_path(folder) or Path(folder) / TRAINING_REPORT_FILE
    return _read(TrainingReport, path)


def evaluation_path(folder: str | os.PathLike[str]) -> Path | None:
    """``evaluation.json`` of a run folder (``model/``) or a training output folder, if any."""
    base = Path(folder)
    return _first_file(base / MODEL_DIR / EVALUATION_FILE, base / EVALUATION_FILE)


def read_evaluation(path: str | os.PathLike[str]) -> Evaluation:
    """An evaluation: a run or training output folder's ``evaluation.json``, or a file
    (``evaluations/<name>.json``)."""
    target = Path(path)
    if target.is_dir():
        target = evaluation_path(target) or target / EVALUATION_FILE
    evaluation = _read(Evaluation, target)
    evaluation.path = target
    return evaluation


def export_report_path(folder: str | os.PathLike[str]) -> Path | None:
    """``export_report.json`` of a run folder (``service/``) or of a service folder, if any."""
    base = Path(folder)
    return _first_file(base / SERVICE_DIR / EXPORT_REPORT_FILE, base / EXPORT_REPORT_FILE)


def read_export_report(folder: str | os.PathLike[str]) -> ExportReport:
    """The export report of a run folder or a service folder."""
    path = export_report_path(folder) or Path(folder) / SERVICE_DIR / EXPORT_REPORT_FILE
    return _read(ExportReport, path)




def read_model_metadata(service_dir: str | os.PathLike[str]) -> ModelMetadata:
    """``model_metadata.json`` of a service folder."""
    return _read(ModelMetadata, Path(service_dir) / MODEL_METADATA_FILE)


def read_model_manifest(model_dir: str | os.PathLike[str]) -> ModelManifest:
    """``model_manifest.json`` of a training output folder (a run's ``model/``)."""
    return _read(ModelManifest, Path(model_dir) / MODEL_MANIFEST_FILE)
