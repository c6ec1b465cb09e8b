"""Real export of a trained model: ONNX fp32 + int8 graphs, parity report and a runnable service.

``export_real`` is what ``core.exporter.service_build.build_service`` calls for a real trained folder. The
whole service folder is assembled in a temp folder beside ``output_dir`` (graphs, tokenizer,
prompt format, service template, metadata, report), checked (parity against torch, latency,
a live self-test of the service on loopback) and only then renamed into place.

This module is the orchestration: resolving the trained model, the stages and their events,
the staging folder, metadata and the report. Turning the loaded torch model into checked ONNX
graph files (the wrappers, the exporters, the graph layout) lives in
:mod:`core.exporter.onnx_graphs`; ``export_graphs`` is re-exported here for existing callers, and so
are TinyForgeAI's ``get_onnx_metadata`` and ``is_placeholder_graph`` (:mod:`core.exporter.graph_files`).
With ``gguf=True`` the same staging folder also gets ``gguf/`` (:mod:`core.exporter.gguf_export`),
from the same loaded model and checked on the same parity inputs.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.events import (
    Cancelled,
    CancelToken,
    EventCallback,
    LinkedCancelToken,
    Log,
    Metric,
    Progress,
    StageStarted,
    noop,
)
from core.exporter.candidates import CANDIDATES, Gate, choose_served
from core.exporter.errors import ExportError, ModelNotFoundError
from core.exporter.graph_files import get_onnx_metadata as get_onnx_metadata  # TinyForgeAI's API
from core.exporter.graph_files import is_placeholder_graph as is_placeholder_graph
from core.exporter.model_source import resolve_model_source
from core.exporter.onnx_graphs import ExportedGraphs, check_graphs, export_graphs, graph_bytes
from core.exporter.onnx_graphs import cache_layout as cache_layout
from core.exporter.service_folder import announce_service_folder, copy_service_template, staged_output_dir
from core.jsonio import read_json, utc_now_iso, write_json_atomic, write_text_atomic
from core.memory import release_memory
from core.run_layout import (
    EXPORT_REPORT_FILE,
    MODEL_CONFIG_DIR,
    MODEL_DIR,
    MODEL_MANIFEST_FILE,
    MODEL_METADATA_FILE,
    ONNX_DIR,
    ONNX_GRAPH_FILE,
    ONNX_META_FILE,
    PROMPT_FILE,
    QUANT_DIR,
    TOKENIZER_FILE,
    Candidate,
    ExportGate,
    ExportReport,
    GgufReport,
    GraphMeta,
    LatencyReport,
    ModelManifest,
    ModelMetadata,
    ParityReport,
    ParityResult,
    Quantization,
    RunFileError,
    SelfTest,
    read_model_manifest,
    read_model_stub,
    write_result,
)
from core.staging import staging_folder

if TYPE_CHECKING:
    from core.exporter.gguf_export import GgufPlan
    from core.exporter.graph_cache import GraphCache

logger = logging.getLogger(__name__)

__all__ = [
    "EXPORT_FORMAT_VERSION",
    "ResolvedModel",
    "export_graphs",
    "export_real",
    "export_to_onnx",
    "get_onnx_metadata",
    "is_placeholder_graph",
    "resolve_trained_model",
]

EXPORT_FORMAT_VERSION = "1.0"
_STAGES = (
    "loading the trained model",
    "exporting the fp32 ONNX graph",
    "checking the graphs",
    "quantizing to int8",
    "assembling the service folder",
    "checking parity and latency against torch",
    "choosing the served precision",
    "self-testing the service",
    "writing the report",
)
_SELF_TEST_INPUTS = 4  # questions the live service is asked on loopback
_GGUF_STAGE = "writing and checking GGUF files"  # before the report, with ``gguf=True``
EXPORT_STEPS = (*_STAGES[:-1], _GGUF_STAGE, _STAGES[-1])  # every step name an export reports, in order


@dataclass(frozen=True)
class ResolvedModel:
    """A trained model on disk: its HF folder, the training output folder and its manifest."""

    model_dir: Path
    root: Path
    manifest: ModelManifest


def resolve_trained_model(model_path: str | os.PathLike[str]) -> ResolvedModel:
    """Accept a training output folder (with ``model_manifest.json``), the manifest itself or
    the ``model/`` folder; raise :class:`ExportError` with a clear message otherwise."""
    path = Path(model_path).expanduser().absolute()
    if not path.exists():
        raise ModelNotFoundError(f"Model path not found: {path}")
    if path.is_file():
        if path.name != MODEL_MANIFEST_FILE:
            raise ExportError(f"{path} is not a trained model: pass the training output folder")
        path = path.parent
    manifest = ModelManifest()
    root = path
    if (path / MODEL_MANIFEST_FILE).is_file():
        manifest = _read_manifest(path / MODEL_MANIFEST_FILE)
        model_dir = path / (manifest.model_dir or MODEL_DIR)
    elif (path.parent / MODEL_MANIFEST_FILE).is_file() and (path / "config.json").is_file():
        root = path.parent
        manifest = _read_manifest(path.parent / MODEL_MANIFEST_FILE)
        model_dir = path
    else:
        model_dir = path
    if not (model_dir / "config.json").is_file():
        raise ExportError(
            f"{path} is not a trained model: expected {MODEL_MANIFEST_FILE} with a {MODEL_DIR}/ folder, "
            "or a Hugging Face model folder holding config.json and weights"
        )
    if not any(model_dir.glob("*.safetensors")):
        # Pickled .bin weights can run code when loaded: only safetensors are read.
        pickled = sorted(p.name for p in model_dir.glob("*.bin"))
        if pickled:
            raise ExportError(
                f"{model_dir} holds only PyTorch pickle weights ({', '.join(pickled[:2])}); TinyForge loads "
                "safetensors only: re-save it as safetensors (load it with transformers and call "
                "model.save_pretrained(folder, safe_serialization=True); recent versions do so by default)"
            )
        raise ExportError(f"{model_dir} holds no model weights (*.safetensors)")
    return ResolvedModel(model_dir=model_dir, root=root, manifest=manifest)


def _read_manifest(path: Path) -> ModelManifest:
    try:
        return read_model_manifest(path.parent)
    except RunFileError as exc:
        raise ExportError(f"{exc} (not a model manifest)") from exc


# --------------------------------------------------------------------------- export_real


class _Stages:
    """Progress over the fixed list of stages, with cancel polled at every boundary."""

    def __init__(self, emit: EventCallback, cancel: CancelToken | None, total: int) -> None:
        self.emit, self.cancel, self.index, self.current, self.total = emit, cancel, 0, _STAGES[0], total
        self.timings: dict[str, float] = {}
        self._started = time.perf_counter()

    def check_cancel(self) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()

    def next(self, name: str) -> None:
        self.check_cancel()
        release_memory()  # what the last stage freed goes back to the OS: peak RSS is what a laptop feels
        now = time.perf_counter()
        if self.index:
            self.timings[self.current] = round(now - self._started, 3)
        self._started = now
        self.index += 1
        self.current = name
        self.emit(Progress("export", self.index, self.total, name))


def export_real(
    model_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    quantize: str = "int8",
    overwrite: bool = False,
    on_event: EventCallback | None = None,
    cancel: CancelToken | None = None,
    *,
    parity_inputs: list[str] | None = None,
    max_new_tokens: int = 32,
    self_test: bool = True,
    exporter: str = "auto",
    gate: Gate | None = None,
    gguf: bool = False,
    graph_cache: str | os.PathLike[str] | None = None,
) -> ExportReport:
    """Export a trained model to a runnable ONNX service folder and return its report
    (``export_report.json``).

    With ``quantize="int8"`` every quantized candidate is built and checked against the trained
    model; the service serves the fastest one that passes ``gate``, else fp32. With ``gguf`` the
    folder also gets ``gguf/`` (:mod:`core.exporter.gguf_export`), gated the same way. The fp32
    graph comes from ``graph_cache`` (default :func:`core.exporter.graph_cache.default_graph_cache`)
    when a fine-tune of the same base model was exported before (:mod:`core.exporter.graph_cache`).

    Raises :class:`ExportError` (or ``OutputExistsError``) with a readable message for user
    mistakes and failures, :class:`core.events.Cancelled` when ``cancel`` is set; in every
    failure case nothing is left at ``output_dir`` that was not there before.
    """
    emit = on_event or noop
    if quantize not in ("int8", "none"):
        raise ExportError(f"Unknown quantization {quantize!r}: use 'int8' or 'none'")
    resolved = resolve_trained_model(model_path)
    target = Path(output_dir).expanduser().absolute()
    stages = _Stages(emit, cancel, len(_STAGES) + int(gguf))
    emit(StageStarted("export", f"exporting {resolved.model_dir} to ONNX" + (" and GGUF" if gguf else "")))
    try:
        with staged_output_dir(target, overwrite) as staging:
            report = _export_into(staging, target, resolved, quantize, stages, emit, parity_inputs, max_new_tokens,
                                  self_test, exporter, gate or Gate(), gguf, graph_cache)
    except (Cancelled, ExportError):
        raise
    except Exception as exc:  # say which stage broke; the caller's boundary reports it
        what = "GGUF export" if stages.current == _GGUF_STAGE else "ONNX export"
        raise ExportError(f"{what} failed while {stages.current}: {type(exc).__name__}: {exc}") from exc
    return announce_service_folder(target, report, emit)


@dataclass
class _Export:
    """What the stages of one export build up, stage by stage (see :func:`_export_into`)."""

    staging: Path
    target: Path
    resolved: ResolvedModel
    gate: Gate
    model: Any = None
    tokenizer: Any = None
    architecture: str = ""
    prompt: dict[str, Any] = field(default_factory=dict)
    exported: ExportedGraphs | None = None
    graphs: dict[str, dict[str, str]] = field(default_factory=dict)  # precision -> role -> path
    quant_info: dict[str, dict[str, Quantization]] = field(default_factory=dict)  # precision -> role -> how
    descriptions: dict[str, str] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=dict)
    meta: GraphMeta = field(default_factory=GraphMeta)
    stop_ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    inputs_source: str = ""
    generators: dict[str, Any] = field(default_factory=dict)
    hf_prompts: list[list[int]] = field(default_factory=list)
    check: Any = None
    parity_report: ParityReport = field(default_factory=ParityReport)
    latency: LatencyReport = field(default_factory=LatencyReport)
    served: str = "fp32"
    served_reason: str = ""
    candidates: dict[str, Candidate] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    gguf_plan: GgufPlan | None = None  # with gguf=True
    gguf_report: GgufReport | None = None
    graph_source: str = ""  # "exported" (traced now) or "cache"
    graph_cache: GraphCache | None = None
    graph_key: str = ""
    torch_runs: list[Any] = field(default_factory=list)  # parity.TorchRun per input, shared with the GGUF check
    gguf_written: dict[str, float] | None = None  # the GGUF files are written (seconds per file)

    @property
    def onnx_dir(self) -> Path:
        return self.staging / ONNX_DIR


def _export_into(
    staging: Path,
    target: Path,
    resolved: ResolvedModel,
    quantize: str,
    stages: _Stages,
    emit: EventCallback,
    parity_inputs: list[str] | None,
    max_new_tokens: int,
    self_test: bool,
    exporter: str,
    gate: Gate,
    gguf: bool,
    graph_cache: str | os.PathLike[str] | None,
) -> ExportReport:
    """Run the export's stages into ``staging`` (the service folder that becomes ``target``)."""
    job = _Export(staging, target, resolved, gate)
    stages.next(_STAGES[0])
    job.model, job.tokenizer, job.architecture = _load_torch_model(resolved)
    job.prompt = _prompt_format(resolved, job.tokenizer, job.model, job.architecture)
    if gguf:  # a model that cannot be written as GGUF is refused now, before the ONNX work
        from core.exporter.gguf_export import prepare_gguf
        from core.models.prompting import PromptFormat

        job.gguf_plan = prepare_gguf(job.model, job.tokenizer, PromptFormat.from_dict(job.prompt))
    stages.next(_STAGES[1])
    _export_fp32(job, emit, exporter, graph_cache)
    stages.next(_STAGES[2])
    check_graphs(staging, job.exported.files)
    stages.next(_STAGES[3])
    # The GGUF files are written on a thread meanwhile: both are one-core numpy work, and no
    # timing is taken until both are done (the checks come after the ONNX ones).
    writer = _GgufWriter(job, stages.cancel) if job.gguf_plan is not None else None
    try:
        _quantize_candidates(job, quantize, stages, emit)
    except BaseException:
        if writer is not None:
            writer.stop()
        raise
    if writer is not None:
        job.gguf_written = writer.finish()
    stages.next(_STAGES[4])
    _assemble_service(job)
    stages.next(_STAGES[5])
    _check_parity(job, parity_inputs, max_new_tokens, emit)
    stages.next(_STAGES[6])
    _choose_served(job, emit)
    stages.next(_STAGES[7])
    test = _self_test(job, self_test, max_new_tokens)
    if gguf:
        stages.next(_GGUF_STAGE)
        _export_gguf(job, emit, stages.cancel)
    stages.next(_STAGES[8])
    return _write_report(job, test, stages.timings)


def _export_fp32(job: _Export, emit: EventCallback, exporter: str, cache_folder: str | os.PathLike[str] | None) -> None:
    """The fp32 ONNX graph(s) under ``onnx/``: from the graph cache when this base model was
    exported before (this model's weights filled in and checked against torch), else traced."""
    from core.exporter.graph_cache import GraphCache, default_graph_cache, graph_key
    from core.exporter.onnx_graphs import graph_logit_diff
    from core.exporter.parity import FP32_LOGIT_TOLERANCE

    emit(Log(f"exporting {job.architecture} model ({sum(p.numel() for p in job.model.parameters()):,} parameters)"))
    folder = Path(cache_folder) if cache_folder is not None else default_graph_cache()
    cache = GraphCache(folder) if folder is not None else None
    key = graph_key(job.model, job.architecture, exporter) if cache is not None else ""
    job.graph_cache, job.graph_key = cache, key
    exported = cache.restore(key, job.model, job.onnx_dir) if cache is not None else None
    if exported is not None and cache is not None:
        try:
            diff = graph_logit_diff(job.model, job.architecture, job.onnx_dir, exported.files)
        except Exception as exc:  # a restored graph ONNX Runtime cannot run: trace this one
            logger.warning("the cached graph does not run (%s)", exc)
            diff = float("inf")
        if diff < FP32_LOGIT_TOLERANCE:
            emit(Log(f"fp32 graph from the graph cache (this model's weights; max |logit diff| {diff:.2g} "
                     "against torch)"))
            job.graph_source = "cache"
        else:  # a graph that bakes in something of the base model's weights: trace this one
            emit(Log(f"the cached graph does not match this model (max |logit diff| {diff:.3g}); exporting afresh"))
            cache.drop(key)
            for leftover in job.onnx_dir.glob("*.onnx*"):
                leftover.unlink()
            exported = None
    if exported is None:
        exported = export_graphs(job.model, job.architecture, job.onnx_dir, exporter=exporter)
        emit(Log(f"fp32 graph written with the {exported.exporter} exporter (opset {exported.opset})"))
        if cache is not None:
            cache.store(key, job.model, job.onnx_dir, exported)
        job.graph_source = "exported"
    job.exported = exported
    job.graphs = {"fp32": dict(exported.files)}
    job.descriptions = {"fp32": "fp32 (the exact export)"}


def _quantize_candidates(job: _Export, quantize: str, stages: _Stages, emit: EventCallback) -> None:
    """Every quantized candidate's graphs under ``onnx/quant/`` (none with ``quantize="none"``)."""
    if quantize != "int8":
        return
    for candidate in CANDIDATES:
        stages.check_cancel()
        release_memory()
        emit(Log(f"quantizing: {candidate.description}"))
        job.graphs[candidate.precision] = {}
        job.quant_info[candidate.precision] = {}
        job.descriptions[candidate.precision] = candidate.description
        for role, rel in job.exported.files.items():  # seq2seq: the encoder and the decoder
            name = candidate.file if role == "decoder" else f"{role}_{candidate.file}"
            job.quant_info[candidate.precision][role] = candidate.build(job.staging / rel,
                                                                       job.onnx_dir / QUANT_DIR / name)
            job.graphs[candidate.precision][role] = f"{ONNX_DIR}/{QUANT_DIR}/{name}"


def _assemble_service(job: _Export) -> None:
    """The graphs' metadata (runtime layout, sizes), the service files and ``model_metadata.json``."""
    model, exported, graphs, staging = job.model, job.exported, job.graphs, job.staging
    job.stop_ids = sorted({int(i) for i in (job.prompt.get("stop_token_ids") or [job.prompt["eos_token_id"]])})
    job.runtime = {
        "format_version": EXPORT_FORMAT_VERSION,
        "architecture": job.architecture,
        "graphs": graphs,
        **exported.layout,
        "stop_token_ids": job.stop_ids,
        "max_positions": getattr(model.config, "max_position_embeddings", None) if job.architecture == "causal" else None,
        "max_prompt_tokens": 2048,
        "vocab_size": int(model.config.vocab_size),
    }
    sizes = {
        "fp32_bytes": sum(graph_bytes(staging / rel) for rel in graphs["fp32"].values()),
        "torch_parameters": int(sum(p.numel() for p in model.parameters())),
    }
    for precision in graphs:
        if precision != "fp32":
            sizes[f"{precision}_bytes"] = sum(graph_bytes(staging / rel) for rel in graphs[precision].values())
            sizes[f"{precision}_to_fp32_ratio"] = round(sizes[f"{precision}_bytes"] / sizes["fp32_bytes"], 4)
    job.sizes = sizes
    int8_decoder = (job.quant_info.get("int8") or {}).get("decoder")
    job.meta = GraphMeta(
        **_graph_meta(job.resolved, model, job.architecture, exported, dict(exported.files)),
        sizes=sizes,
        # TinyForgeAI's key: how quantized.onnx (the int8 decoder graph) was made, kept for its users.
        quantization=int8_decoder,
        quantization_candidates=job.quant_info,  # precision -> graph role -> how it was made
        runtime=job.runtime,
    )
    write_result(job.onnx_dir / ONNX_META_FILE, job.meta)
    _copy_service_files(staging, job.resolved.model_dir, job.tokenizer, job.prompt)
    write_result(
        staging / MODEL_METADATA_FILE,
        ModelMetadata(
            model_path=str(job.resolved.root),
            created_time=job.meta.export_time,
            source="tinyforge-exporter",
            model_stub=False,
            architecture=job.architecture,
            base_model=public_model_name(job.resolved.manifest.base_model),
        ),
    )


def _check_parity(job: _Export, parity_inputs: list[str] | None, max_new_tokens: int, emit: EventCallback) -> None:
    """Every precision's answers against the trained model's (teacher-forced and generated),
    each timed on the same runs. Torch answers once, as long as the GGUF check needs them too."""
    from core.exporter import parity
    from core.exporter.onnx_predict import load_runtime_module
    from core.exporter.parity_inputs import parity_texts

    job.texts, job.inputs_source = parity_texts(job.resolved.root, job.resolved.manifest, parity_inputs)
    runtime = load_runtime_module()
    job.generators = parity.LazySessions(list(job.graphs), lambda p: runtime.OnnxGenerator(job.staging, precision=p))
    job.hf_prompts = [_hf_encode(job.tokenizer, job.prompt, t) for t in job.texts]
    if job.exported.fallback_errors:
        fallback = "; ".join(job.exported.fallback_errors)
        job.warnings.append(f"fell back to the {job.exported.exporter} exporter ({fallback})")
    longest = max(max_new_tokens, job.gguf_plan.fmt.max_new_tokens if job.gguf_plan is not None else 0)
    job.check = parity.check_parity(
        job.model, job.architecture, job.generators, job.texts, job.hf_prompts, job.stop_ids,
        job.prompt.get("decoder_start_token_id"), max_new_tokens, job.gate, reference_tokens=longest,
        speed_order=job.graph_cache.speed_order(job.graph_key) if job.graph_cache is not None else None,
    )
    job.torch_runs = job.check.torch_runs
    job.parity_report = job.check.report
    job.parity_report.n_inputs, job.parity_report.inputs_source = len(job.texts), job.inputs_source
    job.warnings += job.check.warnings
    for precision in job.check.onnx_answers:
        emit(_parity_metric(precision, job.parity_report.results[precision]))


def _choose_served(job: _Export, emit: EventCallback) -> None:
    """Serve the fastest precision that passed the gate; drop the failed and unchecked candidates."""
    job.latency = job.check.latency
    graphs = job.graphs
    results = job.parity_report.results
    quantized = {p: results[p] for p in graphs if p != "fp32" and results[p].checked}
    job.served, job.served_reason = choose_served(quantized, job.latency, job.gate)
    emit(Log(f"serving {job.served}: {job.served_reason}"))
    job.candidates = _candidate_table(graphs, job.descriptions, job.sizes, job.latency, job.parity_report, job.served,
                                      job.quant_info)
    for precision in list(graphs):  # a failed candidate is not shipped (int8's quantized.onnx always is)
        if precision not in ("fp32", "int8", job.served):
            for rel in graphs.pop(precision).values():
                _remove_graph(job.staging / rel)
            del job.generators[precision]
            job.candidates[precision].kept = False
    job.runtime["graphs"] = graphs
    job.runtime["served_precision"] = job.served
    job.meta.runtime = job.runtime  # the model holds a copy of what it was built with
    write_result(job.onnx_dir / ONNX_META_FILE, job.meta)
    job.generators.clear()  # the ONNX sessions: every answer is recorded; the self-test runs its own
    if job.graph_cache is not None and job.check.speeds:  # the next export of this base checks fastest first
        job.graph_cache.remember_speeds(job.graph_key, job.check.speeds)


def _self_test(job: _Export, enabled: bool, max_new_tokens: int) -> SelfTest:
    """Start the service on loopback and compare its answers with predict's (unless disabled)."""
    from core.exporter import serve

    if not enabled:
        return SelfTest(passed=None, skipped=True)
    asked = _SELF_TEST_INPUTS  # the parity stage compared every input in process, with the same runtime
    test = serve.self_test(job.staging, job.texts[:asked], job.check.onnx_answers[job.served][:asked],
                           max_new_tokens, precision=job.served)
    if not test.passed:
        job.warnings.append(f"service self-test failed: {test.error or 'answers differ from predict'}")
    return test


class _GgufWriter:
    """The GGUF files written on a thread (stopped by the export's token or by :meth:`stop`)."""

    def __init__(self, job: _Export, cancel: CancelToken | None) -> None:
        from core.exporter.gguf_export import write_gguf_files
        from core.run_layout import GGUF_DIR

        assert job.gguf_plan is not None
        plan, folder, name = job.gguf_plan, job.staging / GGUF_DIR, _gguf_model_name(job)
        self.token = LinkedCancelToken(cancel)
        self.durations: dict[str, float] = {}
        self.error: BaseException | None = None

        def write() -> None:
            try:
                self.durations = write_gguf_files(folder, plan, name, self.token)
            except BaseException as exc:  # handed to the export's thread by finish()
                self.error = exc

        self.thread = threading.Thread(target=write, name="gguf-writer", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.token.cancel()
        self.thread.join()

    def finish(self) -> dict[str, float]:
        """Wait for the files; a failure is the export's, said as a GGUF one."""
        self.thread.join()
        if isinstance(self.error, (Cancelled, ExportError)):
            raise self.error
        if self.error is not None:
            raise ExportError(f"GGUF export failed while writing the files: {type(self.error).__name__}: "
                              f"{self.error}") from self.error
        return self.durations


def _gguf_model_name(job: _Export) -> str:
    name = public_model_name(job.resolved.manifest.base_model) or job.resolved.root.name
    return f"{name} (TinyForge fine-tune)"


def _export_gguf(job: _Export, emit: EventCallback, cancel: CancelToken | None) -> None:
    """``gguf/``: the files for llama.cpp and Ollama, checked against the trained model."""
    from core.exporter.gguf_export import export_gguf
    from core.run_layout import GGUF_DIR

    assert job.gguf_plan is not None  # planned when the model was loaded
    runs = {tuple(ids): run for ids, run in zip(job.hf_prompts, job.torch_runs, strict=True)}
    report, warnings = export_gguf(job.staging / GGUF_DIR, job.gguf_plan, job.model, job.tokenizer, job.texts,
                                   _gguf_model_name(job), job.gate, emit, cancel, torch_runs=runs,
                                   written=job.gguf_written)
    report.folder = str(job.target / GGUF_DIR)
    job.gguf_report = report
    job.warnings += warnings


def _write_report(job: _Export, test: SelfTest, timings: dict[str, float]) -> ExportReport:
    """``export_report.json``: where everything is, how it measured and what is served."""
    graphs, target, check = job.graphs, job.target, job.check
    report = ExportReport(
        onnx_path=str(target / graphs["fp32"]["decoder"]),
        quantized_path=str(target / graphs["int8"]["decoder"]) if "int8" in graphs else None,
        export_time=job.meta.export_time,
        model_path=str(job.resolved.root),
        model_stub=False,
        architecture=job.architecture,
        base_model=job.resolved.manifest.base_model,
        exporter=job.exported.exporter,
        opset=job.exported.opset,
        graph_source=job.graph_source,
        graphs={p: {role: str(target / rel) for role, rel in files.items()} for p, files in graphs.items()},
        sizes=job.sizes,
        parity=job.parity_report,
        latency=job.latency,
        self_test=test,
        served_precision=job.served,
        served_reason=job.served_reason,
        gate=ExportGate(**asdict(job.gate)),
        candidates=job.candidates,
        samples=[
            {"input": t, "torch": a, **{f"onnx_{p}": got[i] for p, got in check.onnx_answers.items() if i < len(got)}}
            for i, (t, a) in enumerate(zip(job.texts, check.torch_answers, strict=True))
        ][:4],
        warnings=job.warnings,
        durations_s=timings,
    )
    if job.gguf_report is not None:  # every field, defaults too, as this section was always written
        report.gguf = GgufReport.model_validate(job.gguf_report.model_dump())
    job.generators.clear()  # the ONNX sessions, before the folder is renamed into place
    write_result(job.staging / EXPORT_REPORT_FILE, report)
    return report


def _graph_meta(resolved: ResolvedModel, model: Any, architecture: str, exported: ExportedGraphs,
                files: dict[str, str]) -> dict[str, Any]:
    """``model.onnx.meta.json``'s common part: where the graphs came from and what they take."""
    import torch

    return {
        "exported_from": str(resolved.model_dir),
        "export_time": utc_now_iso(),
        "version": EXPORT_FORMAT_VERSION,
        "exporter": f"torch.onnx ({exported.exporter}), torch {torch.__version__}",
        "opset": exported.opset,
        "graphs": {role: {"path": path, **exported.io[role].model_dump()} for role, path in files.items()},
        "inputs": exported.io["decoder"].inputs,
        "outputs": exported.io["decoder"].outputs,
        "source_model": {
            "model_type": resolved.manifest.model_type if "model_type" in resolved.manifest.model_fields_set else "hf",
            "architecture": architecture,
            "base_model": public_model_name(resolved.manifest.base_model),
            "hf_model_type": getattr(model.config, "model_type", None),
            "n_records": resolved.manifest.n_records,
        },
    }


def _candidate_table(graphs: dict[str, dict[str, str]], descriptions: dict[str, str], sizes: dict[str, Any],
                     latency: LatencyReport, parity_report: ParityReport, served: str,
                     quant_info: dict[str, dict[str, Quantization]]) -> dict[str, Candidate]:
    """Per precision: what it is, how each graph was quantized, its size, speed, agreement with
    the trained model, verdict."""
    table: dict[str, Candidate] = {}
    for precision in graphs:
        result = parity_report.results.get(precision) or ParityResult()
        figures = latency.backends.get(f"onnx_{precision}")
        table[precision] = Candidate(
            description=descriptions.get(precision, precision),
            quantization=quant_info.get(precision, {}),
            size_bytes=sizes.get(f"{precision}_bytes"),
            ms_per_token=figures.median_ms_per_token if figures is not None else None,
            speedup_vs_torch=latency.speedup(precision),
            teacher_forced_agreement=result.teacher_forced_agreement,
            generation_match_rate=result.generation_match_rate,
            passed=result.passed,
            served=precision == served,
            kept=True,
            checked=result.checked,
            note=result.note or (f"stopped after {result.n_compared} inputs: it cannot pass the gate"
                                 if result.stopped_early else ""),
        )
    return table


def _remove_graph(path: Path) -> None:
    """A graph file and its external-data file, if any."""
    for candidate in (path, path.with_name(path.name + ".data")):
        candidate.unlink(missing_ok=True)


def _parity_metric(precision: str, result: ParityResult) -> Metric:
    """A Metric event with the numeric parity values of one precision."""
    values = {
        f"{precision}_{key}": float(value)
        for key, value in result.to_json().items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    return Metric(0, values)


def _load_torch_model(resolved: ResolvedModel) -> tuple[Any, Any, str]:
    """The merged HF model in fp32 eval mode, its tokenizer and the architecture."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the export reports its own progress; a second bar is noise
    try:
        config = AutoConfig.from_pretrained(str(resolved.model_dir))
    except Exception as exc:
        raise ExportError(f"{resolved.model_dir} has no usable config.json: {exc}") from exc
    architecture = resolved.manifest.architecture or ""
    if architecture not in ("causal", "seq2seq"):
        architecture = "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"
    auto = AutoModelForSeq2SeqLM if architecture == "seq2seq" else AutoModelForCausalLM
    model = auto.from_pretrained(str(resolved.model_dir), dtype=torch.float32, use_safetensors=True)
    model.eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(resolved.model_dir))
    except Exception as exc:
        raise ExportError(f"{resolved.model_dir} has no usable tokenizer: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"the service needs a fast tokenizer ({TOKENIZER_FILE}); this model has only a slow one")
    return model, tokenizer, architecture


def _prompt_format(resolved: ResolvedModel, tokenizer: Any, model: Any, architecture: str) -> dict[str, Any]:
    """``tinyforge_prompt.json`` of the model, or one derived the same way training would."""
    path = resolved.model_dir / PROMPT_FILE
    if path.is_file():
        data = read_json(path)
        if not data.get("stop_token_ids"):
            data["stop_token_ids"] = [data["eos_token_id"]]
        return data
    from core.models.prompting import build_prompt_format

    start = getattr(model.config, "decoder_start_token_id", None)
    return build_prompt_format(tokenizer, architecture, decoder_start_token_id=start).to_dict()


def _hf_encode(tokenizer: Any, prompt: dict[str, Any], text: str) -> list[int]:
    rendered = f"{prompt.get('prompt_prefix', '')}{text}{prompt.get('prompt_suffix', '')}"
    return list(tokenizer(rendered, add_special_tokens=bool(prompt.get("add_special_tokens", True)))["input_ids"])


def _copy_service_files(staging: Path, model_dir: Path, tokenizer: Any, prompt: dict[str, Any]) -> None:
    """Service template, tokenizer.json and the prompt format into the service folder."""
    copy_service_template(staging)
    if (model_dir / TOKENIZER_FILE).is_file():
        shutil.copy2(model_dir / TOKENIZER_FILE, staging / TOKENIZER_FILE)
    else:
        tokenizer.backend_tokenizer.save(str(staging / TOKENIZER_FILE))
    for extra in ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "config.json"):
        if (model_dir / extra).is_file():
            (staging / MODEL_CONFIG_DIR).mkdir(exist_ok=True)
            shutil.copy2(model_dir / extra, staging / MODEL_CONFIG_DIR / extra)
    write_json_atomic(staging / PROMPT_FILE, prompt)


# --------------------------------------------------------------------------- TinyForgeAI's ONNX hook


def public_model_name(name: str | None) -> str | None:
    """What a service folder says its base model is: a hub id or built-in name as it is, a local
    folder by its last part only (the folder's absolute path would ship with the service, its
    Docker image and every answer it gives)."""
    if not name:
        return name
    if Path(name).is_absolute() or name.startswith((".", "~")):
        return Path(name).name or name
    return name


def export_to_onnx(model_path: str | os.PathLike[str], output_dir: str | os.PathLike[str]) -> str:
    """Write ``output_dir/model.onnx`` and ``model.onnx.meta.json`` (TinyForgeAI's ONNX hook, kept
    for its users).

    For a dry-run ``model_stub.json`` (or its folder) it writes a placeholder, which says so in
    its content; for a real trained model (training output folder, its
    ``model_manifest.json`` or ``model/`` folder) the real fp32 graph(s), exported by the same
    code as :func:`export_real` (a seq2seq model adds ``encoder.onnx``). Returns the path of
    ``model.onnx``. Raises ``FileNotFoundError`` for a missing model and ``ValueError``
    (:class:`ExportError`) for a file that is not a model. Only the graph files it writes are
    replaced in ``output_dir``; use :func:`core.exporter.builder.build` for a runnable service.
    """
    source = resolve_model_source(model_path)
    out = Path(output_dir).expanduser().absolute()
    if source.kind == "stub":
        return str(_export_placeholder(source.path, out))
    return str(_export_graph_files(resolve_trained_model(source.path), out))


def _export_placeholder(stub_path: Path, out: Path) -> Path:
    """A dry run's placeholder ``model.onnx`` and its metadata (the whole stub as source_model)."""
    model_ref = str(stub_path.absolute())
    export_time = utc_now_iso()
    onnx_path = out / ONNX_GRAPH_FILE
    # Metadata first: a reader that finds the placeholder also finds what it stands for.
    write_result(
        out / ONNX_META_FILE,
        GraphMeta(
            exported_from=model_ref,
            export_time=export_time,
            version="0.1-stub",
            source_model=read_model_stub(stub_path).to_json(),
        ),
    )
    write_text_atomic(
        onnx_path,
        "# TinyForgeAI ONNX placeholder\n"
        f"# Exported: {export_time}\n"
        f"# Source: {model_ref}\n"
        "# This is a stub file for testing purposes.\n",
    )
    return onnx_path


def _export_graph_files(resolved: ResolvedModel, out: Path) -> Path:
    """Export the real fp32 graph(s) of a trained model into ``out`` with their metadata.

    The graphs are exported and checked in a staging folder beside ``out/model.onnx`` and moved
    into place only when complete, so a failure leaves ``out`` as it was.
    """
    model, _tokenizer, architecture = _load_torch_model(resolved)
    with staging_folder(out / ONNX_GRAPH_FILE) as work:  # beside the graph; removed however this ends
        try:
            exported = export_graphs(model, architecture, work)
            files = {role: Path(rel).name for role, rel in exported.files.items()}
            check_graphs(work, files)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
        write_result(work / ONNX_META_FILE,
                     GraphMeta(**_graph_meta(resolved, model, architecture, exported, files), layout=exported.layout))
        # The graph's external data (if any) first, the metadata last.
        names = sorted((p.name for p in work.iterdir()), key=lambda n: (n.endswith(".meta.json"), not n.endswith(".data")))
        for name in names:
            os.replace(work / name, out / name)
    return out / ONNX_GRAPH_FILE
