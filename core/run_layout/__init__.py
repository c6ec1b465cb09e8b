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

The package is split by job, a module per kind of file: :mod:`~core.run_layout.names` (the file
and folder names), :mod:`~core.run_layout.results` (the base model, ``write_result``, reading and
``RunFileError``), :mod:`~core.run_layout.run_files` (``run.json``),
:mod:`~core.run_layout.training_files` (a training output's report, manifest, phrasings and
the estimate), :mod:`~core.run_layout.evaluation_files` (``evaluation.json``),
:mod:`~core.run_layout.export_files` (a service folder's report and metadata),
:mod:`~core.run_layout.graph_meta` (a graph's ``.meta.json``, a quantized graph's, the dry run's
``model_stub.json``), with the
report's checks in :mod:`~core.run_layout.export_checks` and its GGUF files in
:mod:`~core.run_layout.gguf_files`. Import the names from ``core.run_layout`` itself.
"""

from __future__ import annotations

from core.options import ExportOptions, RunOptions  # what a run does, recorded in run.json
from core.run_layout.evaluation_files import (
    Evaluation,
    EvaluationRow,
    SplitMeans,
    evaluation_path,
    read_evaluation,
)
from core.run_layout.export_checks import (
    ExportGate,
    LatencyReport,
    LatencyResult,
    ParityReport,
    ParityResult,
    SelfTest,
)
from core.run_layout.export_files import (
    Candidate,
    ExportReport,
    ModelMetadata,
    Quantization,
    export_report_path,
    read_export_report,
    read_model_metadata,
)
from core.run_layout.gguf_files import GgufFile, GgufReport, GgufTokenization
from core.run_layout.graph_meta import (
    GraphMeta,
    ModelStub,
    QuantizedGraphMeta,
    read_model_stub,
)
from core.run_layout.names import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    ENCODER_GRAPH_FILE,
    EVALUATION_FILE,
    EVALUATIONS_DIR,
    EVENTS_FILE,
    EXPORT_REPORT_FILE,
    GGUF_DIR,
    MODEL_CONFIG_DIR,
    MODEL_DIR,
    MODEL_MANIFEST_FILE,
    MODEL_METADATA_FILE,
    MODEL_STUB_FILE,
    MODELFILE,
    ONNX_DIR,
    ONNX_GRAPH_FILE,
    ONNX_META_FILE,
    PROMPT_FILE,
    QUANT_DIR,
    QUANTIZED_FILE,
    RESUME_DIR,
    RUN_FILE,
    SERVICE_APP_FILE,
    SERVICE_DIR,
    TOKENIZER_FILE,
    TRAINING_REPORT_FILE,
    VARIANTS_FILE,
)
from core.run_layout.results import RunFileError, parse, read_object, write_result

# The parts of the files' models (DatasetInfo, RunError, RunStatus, StageRecord, EvaluationSummary)
# are importable from here too, though not in __all__ (``X as X`` re-exports them).
from core.run_layout.run_files import DatasetInfo as DatasetInfo
from core.run_layout.run_files import RunError as RunError
from core.run_layout.run_files import (
    RunRecord,
    list_runs,
    read_run,
)
from core.run_layout.run_files import RunStatus as RunStatus
from core.run_layout.run_files import StageRecord as StageRecord
from core.run_layout.training_files import (
    Estimate,
    ModelManifest,
    PhrasingRow,
    TrainingReport,
    read_model_manifest,
    read_training_report,
    training_report_path,
)
from core.run_layout.training_files import EvaluationSummary as EvaluationSummary

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
    "GraphMeta",
    "LatencyReport",
    "LatencyResult",
    "ModelManifest",
    "ModelMetadata",
    "ModelStub",
    "ParityReport",
    "PhrasingRow",
    "ParityResult",
    "Quantization",
    "QuantizedGraphMeta",
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
    "read_model_stub",
    "read_object",
    "read_run",
    "read_training_report",
    "training_report_path",
    "write_result",
]
