"""Real export of a trained model: ONNX fp32 + int8 graphs, parity report and a runnable service.

``export_real`` is what ``core.exporter.builder.build`` calls for a real trained folder. The
whole service folder is assembled in a temp folder beside ``output_dir`` (graphs, tokenizer,
prompt format, service template, metadata, report), checked (parity against torch, latency,
a live self-test of the service on loopback) and only then renamed into place.

Graphs. Decoder-only: one graph serves both prefill and decode steps::

    input_ids, attention_mask, position_ids, past_key_values.{i}.key/value
        -> logits (last position only), present.{i}.key/value

Encoder-decoder: ``onnx/encoder.onnx`` (input_ids, attention_mask -> encoder_hidden_states)
and ``onnx/model.onnx``, the decoder with a self-attention cache (cross-attention keys are
recomputed from the encoder states each step, cheap for small models).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.events import (
    ArtifactWritten,
    Cancelled,
    CancelToken,
    EventCallback,
    Failed,
    Finished,
    Log,
    Metric,
    Progress,
    StageStarted,
    noop,
)
from core.exporter.errors import ExportError
from core.jsonio import read_json, utc_now_iso, write_json_atomic

logger = logging.getLogger(__name__)

__all__ = ["EXPORT_FORMAT_VERSION", "ResolvedModel", "export_graphs", "export_real", "resolve_trained_model"]

EXPORT_FORMAT_VERSION = "1.0"
MANIFEST_FILENAME = "model_manifest.json"
PROMPT_FILENAME = "tinyforge_prompt.json"
SERVICE_TEMPLATE = Path(__file__).with_name("service_template")
_STAGES = (
    "loading the trained model",
    "exporting the fp32 ONNX graph",
    "checking the graphs",
    "quantizing to int8",
    "assembling the service folder",
    "checking parity against torch",
    "measuring latency",
    "self-testing the service",
    "writing the report",
)


@dataclass(frozen=True)
class ResolvedModel:
    """A trained model on disk: its HF folder, the training output folder and its manifest."""

    model_dir: Path
    root: Path
    manifest: dict[str, Any]


def resolve_trained_model(model_path: str | os.PathLike[str]) -> ResolvedModel:
    """Accept a training output folder (with ``model_manifest.json``), the manifest itself or
    the ``model/`` folder; raise :class:`ExportError` with a clear message otherwise."""
    path = Path(model_path).expanduser().absolute()
    if not path.exists():
        raise ExportError(f"Model path not found: {path}")
    if path.is_file():
        if path.name != MANIFEST_FILENAME:
            raise ExportError(f"{path} is not a trained model: pass the training output folder")
        path = path.parent
    manifest: dict[str, Any] = {}
    root = path
    if (path / MANIFEST_FILENAME).is_file():
        manifest = _read_manifest(path / MANIFEST_FILENAME)
        model_dir = path / str(manifest.get("model_dir") or "model")
    elif (path.parent / MANIFEST_FILENAME).is_file() and (path / "config.json").is_file():
        root = path.parent
        manifest = _read_manifest(path.parent / MANIFEST_FILENAME)
        model_dir = path
    else:
        model_dir = path
    if not (model_dir / "config.json").is_file():
        raise ExportError(
            f"{path} is not a trained model: expected {MANIFEST_FILENAME} with a model/ folder, "
            "or a Hugging Face model folder holding config.json and weights"
        )
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("*.bin")):
        raise ExportError(f"{model_dir} holds no model weights (*.safetensors)")
    return ResolvedModel(model_dir=model_dir, root=root, manifest=manifest)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ExportError(f"{path} is not a model manifest")
    return data


# --------------------------------------------------------------------------- graph wrappers


def _cache_kwarg(model: Any) -> str:
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _flat_cache(cache: Any) -> list[Any]:
    """Keys and values of every layer of a DynamicCache, flattened as k0, v0, k1, v1, ..."""
    flat: list[Any] = []
    for layer in cache.layers:
        flat += [layer.keys, layer.values]
    return flat


def _make_wrappers(model: Any, architecture: str, n_layers: int) -> dict[str, Any]:
    """nn.Modules with flat tensor inputs/outputs that build the cache object inside forward."""
    import torch
    from transformers import DynamicCache

    cache_name = _cache_kwarg(model)
    config = model.config

    def build_cache(past: tuple[Any, ...]) -> Any:
        cache = DynamicCache(config=config)
        for i in range(n_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        return cache

    if architecture == "causal":
        import inspect

        keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}

        class CausalStep(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, position_ids, *past):  # type: ignore[no-untyped-def]
                out = self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    use_cache=True,
                    **{cache_name: build_cache(past)},
                    **keep,
                )
                cache = getattr(out, "cache", None) or out.past_key_values
                return (out.logits[:, -1:, :], *_flat_cache(cache))

        return {"decoder": CausalStep().eval()}

    from transformers import EncoderDecoderCache
    from transformers.modeling_outputs import BaseModelOutput

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model.get_encoder()

        def forward(self, input_ids, attention_mask):  # type: ignore[no-untyped-def]
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    class DecoderStep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask, *past):  # type: ignore[no-untyped-def]
            cache = EncoderDecoderCache(build_cache(past), DynamicCache(config=config))
            out = self.model(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden_states),
                attention_mask=encoder_attention_mask,
                decoder_input_ids=decoder_input_ids,
                use_cache=True,
                **{cache_name: cache},
            )
            result = getattr(out, "cache", None) or out.past_key_values
            return (out.logits[:, -1:, :], *_flat_cache(result.self_attention_cache))

    return {"encoder": Encoder().eval(), "decoder": DecoderStep().eval()}


def cache_layout(config: Any, architecture: str) -> dict[str, int]:
    """Number of cached layers, key/value heads and head size, read from the HF config."""
    if architecture == "seq2seq":
        n_layers = getattr(config, "num_decoder_layers", None) or config.num_layers
        heads = config.num_heads
        head_dim = config.d_kv
    else:
        n_layers = config.num_hidden_layers
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return {"num_layers": int(n_layers), "num_kv_heads": int(heads), "head_dim": int(head_dim)}


def _io_spec(architecture: str, layout: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Input/output names and dynamic axes of each graph."""
    n = layout["num_layers"]
    past = [f"past_key_values.{i}.{k}" for i in range(n) for k in ("key", "value")]
    present = [f"present.{i}.{k}" for i in range(n) for k in ("key", "value")]
    past_axes = {0: "batch", 2: "past_sequence"}
    present_axes = {0: "batch", 2: "total_sequence"}
    if architecture == "causal":
        inputs = ["input_ids", "attention_mask", "position_ids", *past]
        axes = {
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "total_sequence"},
            "position_ids": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"},
        }
        axes.update({name: past_axes for name in past})
        axes.update({name: present_axes for name in present})
        return {"decoder": {"inputs": inputs, "outputs": ["logits", *present], "axes": axes}}
    dec_inputs = ["decoder_input_ids", "encoder_hidden_states", "encoder_attention_mask", *past]
    dec_axes = {
        "decoder_input_ids": {0: "batch", 1: "decoder_sequence"},
        "encoder_hidden_states": {0: "batch", 1: "encoder_sequence"},
        "encoder_attention_mask": {0: "batch", 1: "encoder_sequence"},
        "logits": {0: "batch"},
    }
    dec_axes.update({name: past_axes for name in past})
    dec_axes.update({name: present_axes for name in present})
    enc_axes = {
        "input_ids": {0: "batch", 1: "encoder_sequence"},
        "attention_mask": {0: "batch", 1: "encoder_sequence"},
        "encoder_hidden_states": {0: "batch", 1: "encoder_sequence"},
    }
    return {
        "encoder": {"inputs": ["input_ids", "attention_mask"], "outputs": ["encoder_hidden_states"], "axes": enc_axes},
        "decoder": {"inputs": dec_inputs, "outputs": ["logits", *present], "axes": dec_axes},
    }


def _dummy_inputs(model: Any, architecture: str, layout: dict[str, int]) -> dict[str, tuple[Any, ...]]:
    """Example tensors with batch 2, a non-empty past and distinct lengths (none 0 or 1, so the
    tracer keeps every dimension symbolic)."""
    import torch

    batch, seq, past_len, enc_len = 2, 3, 4, 5
    vocab = int(model.config.vocab_size)
    generator = torch.Generator().manual_seed(0)
    past = tuple(
        torch.randn(batch, layout["num_kv_heads"], past_len, layout["head_dim"], generator=generator)
        for _ in range(2 * layout["num_layers"])
    )
    if architecture == "causal":
        ids = torch.randint(0, vocab, (batch, seq), generator=generator)
        mask = torch.ones(batch, past_len + seq, dtype=torch.long)
        positions = torch.arange(past_len, past_len + seq).unsqueeze(0).expand(batch, -1).contiguous()
        return {"decoder": (ids, mask, positions, *past)}
    enc_ids = torch.randint(0, vocab, (batch, enc_len), generator=generator)
    enc_mask = torch.ones(batch, enc_len, dtype=torch.long)
    with torch.inference_mode():
        hidden = model.get_encoder()(input_ids=enc_ids, attention_mask=enc_mask).last_hidden_state
    dec_ids = torch.randint(0, vocab, (batch, seq), generator=generator)
    return {"encoder": (enc_ids, enc_mask), "decoder": (dec_ids, hidden.clone(), enc_mask, *past)}


def _export_one(module: Any, args: tuple[Any, ...], spec: dict[str, Any], path: Path, exporter: str) -> int:
    """Export one wrapper with ``exporter`` (dynamo | torchscript); return the opset used."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporters print progress to stdout; a child process may use stdout for JSON-line events.
    chatter = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            from torch.export import Dim

            dims: dict[str, Any] = {}

            def dim(name: str) -> Any:
                if name not in dims:
                    dims[name] = Dim(name.replace("-", "_"))
                return dims[name]

            names = spec["inputs"]
            fixed = [n for n in names if not n.startswith("past_key_values.")]
            shapes: dict[str, Any] = {
                n: {axis: dim(label) for axis, label in spec["axes"][n].items()} for n in fixed
            }
            if len(fixed) < len(names):
                shapes["past"] = tuple(
                    {axis: dim(label) for axis, label in spec["axes"][n].items()} for n in names[len(fixed):]
                )
            opset = 18
            program = torch.onnx.export(
                module,
                args,
                input_names=spec["inputs"],
                output_names=spec["outputs"],
                dynamic_shapes=shapes,
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
            if program is None:
                raise ExportError("the dynamo exporter returned no program")
            program.save(str(path))
        else:
            opset = 17
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(
                    module,
                    args,
                    str(path),
                    input_names=spec["inputs"],
                    output_names=spec["outputs"],
                    dynamic_axes=spec["axes"],
                    opset_version=opset,
                    dynamo=False,
                )
    if chatter.getvalue().strip():
        logger.debug("%s exporter output:\n%s", exporter, chatter.getvalue().strip())
    return opset


def export_graphs(
    model: Any, architecture: str, onnx_dir: Path, exporter: str = "auto"
) -> dict[str, Any]:
    """Export the fp32 graph(s) of ``model`` into ``onnx_dir``.

    ``exporter`` is ``dynamo`` (torch.export based), ``torchscript`` (the legacy tracer, still in
    torch 2.13) or ``auto``: dynamo first for decoder-only models, the tracer first for
    encoder-decoders (T5's relative attention defeats torch.export today), the other as fallback.
    Returns ``{"files": {role: relative path}, "exporter", "opset", "layout", "io"}``.
    """
    layout = cache_layout(model.config, architecture)
    spec = _io_spec(architecture, layout)
    wrappers = _make_wrappers(model, architecture, layout["num_layers"])
    dummies = _dummy_inputs(model, architecture, layout)
    files = {"decoder": "model.onnx"} if architecture == "causal" else {"encoder": "encoder.onnx", "decoder": "model.onnx"}
    if exporter == "auto":
        order = ["dynamo", "torchscript"] if architecture == "causal" else ["torchscript", "dynamo"]
    else:
        order = [exporter]
    errors: list[str] = []
    for name in order:
        try:
            opset = 0
            for role, rel in files.items():
                opset = _export_one(wrappers[role], dummies[role], spec[role], onnx_dir / rel, name)
            return {
                "files": {role: f"onnx/{rel}" for role, rel in files.items()},
                "exporter": name,
                "opset": opset,
                "layout": layout,
                "io": {role: {"inputs": spec[role]["inputs"], "outputs": spec[role]["outputs"]} for role in files},
                "fallback_errors": errors,
            }
        except Cancelled:
            raise
        except Exception as exc:  # try the next exporter; keep why this one failed
            logger.warning("%s exporter failed: %s", name, exc)
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:400])
            for rel in files.values():
                for leftover in onnx_dir.glob(f"{rel}*"):
                    leftover.unlink(missing_ok=True)
    raise ExportError("could not export the model to ONNX: " + "; ".join(errors))


def _graph_bytes(path: Path) -> int:
    """Size of a graph including external data files beside it."""
    total = path.stat().st_size
    for extra in path.parent.glob(f"{path.name}.data"):
        total += extra.stat().st_size
    return total


# --------------------------------------------------------------------------- export_real


class _Stages:
    """Progress over the fixed list of stages, with cancel polled at every boundary."""

    def __init__(self, emit: EventCallback, cancel: CancelToken | None) -> None:
        self.emit, self.cancel, self.index, self.current = emit, cancel, 0, _STAGES[0]
        self.timings: dict[str, float] = {}
        self._started = time.perf_counter()

    def next(self, name: str) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        now = time.perf_counter()
        if self.index:
            self.timings[self.current] = round(now - self._started, 3)
        self._started = now
        self.index += 1
        self.current = name
        self.emit(Progress("export", self.index, len(_STAGES), name))


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
) -> dict[str, Any]:
    """Export a trained model to a runnable ONNX service folder and return its report.

    Raises :class:`ExportError` (or ``OutputExistsError``) with a readable message for user
    mistakes and failures, :class:`core.events.Cancelled` when ``cancel`` is set; in every
    failure case nothing is left at ``output_dir`` that was not there before.
    """
    from core.exporter.builder import staged_output_dir

    emit = on_event or noop
    if quantize not in ("int8", "none"):
        raise ExportError(f"Unknown quantization {quantize!r}: use 'int8' or 'none'")
    resolved = resolve_trained_model(model_path)
    target = Path(output_dir).expanduser().absolute()
    stages = _Stages(emit, cancel)
    emit(StageStarted("export", f"exporting {resolved.model_dir} to ONNX"))
    try:
        with staged_output_dir(target, overwrite) as staging:
            report = _export_into(staging, target, resolved, quantize, stages, emit, parity_inputs, max_new_tokens, self_test, exporter)
    except Cancelled:
        raise
    except ExportError as exc:
        emit(Failed(str(exc), "export error"))
        raise
    except Exception as exc:
        message = f"ONNX export failed while {stages.current}: {type(exc).__name__}: {exc}"
        emit(Failed(message, traceback.format_exc()))
        raise ExportError(message) from exc
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        emit(ArtifactWritten(str(path)))
    for warning in report.get("warnings", []):
        emit(Log(warning, "warning"))
    emit(Log(f"Service folder ready: {target}"))
    emit(Finished("completed", report))
    return report


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
) -> dict[str, Any]:
    import torch

    from core.exporter import parity, serve

    stages.next(_STAGES[0])
    model, tokenizer, architecture = _load_torch_model(resolved)
    prompt = _prompt_format(resolved, tokenizer, model, architecture)
    onnx_dir = staging / "onnx"

    stages.next(_STAGES[1])
    emit(Log(f"exporting {architecture} model ({sum(p.numel() for p in model.parameters()):,} parameters)"))
    exported = export_graphs(model, architecture, onnx_dir, exporter=exporter)
    emit(Log(f"fp32 graph written with the {exported['exporter']} exporter (opset {exported['opset']})"))

    stages.next(_STAGES[2])
    import onnx

    for rel in exported["files"].values():
        onnx.checker.check_model(str(staging / rel))

    stages.next(_STAGES[3])
    graphs: dict[str, dict[str, str]] = {"fp32": dict(exported["files"])}
    quant_info: dict[str, Any] | None = None
    if quantize == "int8":
        from core.exporter.quantize import quantize_int8

        graphs["int8"] = {}
        for role, rel in exported["files"].items():
            name = "quantized.onnx" if role == "decoder" else f"{role}_quantized.onnx"
            quant_info = quantize_int8(staging / rel, onnx_dir / "quant" / name)
            graphs["int8"][role] = f"onnx/quant/{name}"

    stages.next(_STAGES[4])
    stop_ids = sorted({int(i) for i in (prompt.get("stop_token_ids") or [prompt["eos_token_id"]])})
    runtime = {
        "format_version": EXPORT_FORMAT_VERSION,
        "architecture": architecture,
        "graphs": graphs,
        **exported["layout"],
        "stop_token_ids": stop_ids,
        "max_positions": getattr(model.config, "max_position_embeddings", None) if architecture == "causal" else None,
        "max_prompt_tokens": 2048,
        "vocab_size": int(model.config.vocab_size),
    }
    sizes = {
        "fp32_bytes": sum(_graph_bytes(staging / rel) for rel in graphs["fp32"].values()),
        "torch_parameters": int(sum(p.numel() for p in model.parameters())),
    }
    if "int8" in graphs:
        sizes["int8_bytes"] = sum(_graph_bytes(staging / rel) for rel in graphs["int8"].values())
        sizes["int8_to_fp32_ratio"] = round(sizes["int8_bytes"] / sizes["fp32_bytes"], 4)
    export_time = utc_now_iso()
    meta = {
        "exported_from": str(resolved.model_dir),
        "export_time": export_time,
        "version": EXPORT_FORMAT_VERSION,
        "exporter": f"torch.onnx ({exported['exporter']}), torch {torch.__version__}",
        "opset": exported["opset"],
        "graphs": {role: {"path": rel, **exported["io"][role]} for role, rel in exported["files"].items()},
        "inputs": exported["io"]["decoder"]["inputs"],
        "outputs": exported["io"]["decoder"]["outputs"],
        "source_model": {
            "model_type": resolved.manifest.get("model_type", "hf"),
            "architecture": architecture,
            "base_model": resolved.manifest.get("base_model"),
            "hf_model_type": getattr(model.config, "model_type", None),
            "n_records": resolved.manifest.get("n_records"),
        },
        "sizes": sizes,
        "quantization": quant_info,
        "runtime": runtime,
    }
    write_json_atomic(onnx_dir / "model.onnx.meta.json", meta)
    _copy_service_files(staging, resolved.model_dir, tokenizer, prompt)
    model_ref = str(resolved.root)
    write_json_atomic(
        staging / "model_metadata.json",
        {
            "model_path": model_ref,
            "created_time": export_time,
            "source": "tinyforge-exporter",
            "model_stub": False,
            "architecture": architecture,
            "base_model": resolved.manifest.get("base_model"),
        },
    )

    stages.next(_STAGES[5])
    texts, inputs_source = parity.parity_texts(resolved.root, resolved.manifest, parity_inputs)
    from core.exporter.onnx_predict import load_runtime_module

    generators = {p: load_runtime_module().OnnxGenerator(staging, precision=p) for p in graphs}
    hf_prompts = [_hf_encode(tokenizer, prompt, t) for t in texts]
    warnings_out: list[str] = []
    if exported["fallback_errors"]:
        fallback = "; ".join(exported["fallback_errors"])
        warnings_out.append(f"fell back to the {exported['exporter']} exporter ({fallback})")
    check = parity.check_parity(
        model, architecture, generators, texts, hf_prompts, stop_ids, prompt.get("decoder_start_token_id"),
        max_new_tokens,
    )
    parity_report = {"n_inputs": len(texts), "inputs_source": inputs_source, **check.report}
    warnings_out += check.warnings
    for precision in generators:
        emit(_parity_metric(precision, parity_report[precision]))

    stages.next(_STAGES[6])
    latency = parity.measure_all_latency(
        model, architecture, generators, check.onnx_prompts, hf_prompts, stop_ids,
        prompt.get("decoder_start_token_id"), max_new_tokens,
    )

    stages.next(_STAGES[7])
    service_precision = "int8" if "int8" in graphs else "fp32"
    if self_test:
        test = serve.self_test(staging, texts, check.onnx_answers[service_precision], max_new_tokens, precision=service_precision)
        if not test.get("passed"):
            warnings_out.append(f"service self-test failed: {test.get('error') or 'answers differ from predict'}")
    else:
        test = {"passed": None, "skipped": True}

    stages.next(_STAGES[8])
    report = {
        "onnx_path": str(target / graphs["fp32"]["decoder"]),
        "quantized_path": str(target / graphs["int8"]["decoder"]) if "int8" in graphs else None,
        "export_time": export_time,
        "model_path": model_ref,
        "model_stub": False,
        "architecture": architecture,
        "base_model": resolved.manifest.get("base_model"),
        "exporter": exported["exporter"],
        "opset": exported["opset"],
        "graphs": {p: {role: str(target / rel) for role, rel in files.items()} for p, files in graphs.items()},
        "sizes": sizes,
        "parity": parity_report,
        "latency": latency,
        "self_test": test,
        "service_precision": service_precision,
        "samples": [
            {"input": t, "torch": a, **{f"onnx_{p}": check.onnx_answers[p][i] for p in check.onnx_answers}}
            for i, (t, a) in enumerate(zip(texts, check.torch_answers, strict=True))
        ][:4],
        "warnings": warnings_out,
        "durations_s": stages.timings,
    }
    del generators
    write_json_atomic(staging / "export_report.json", report)
    return report


def _parity_metric(precision: str, result: dict[str, Any]) -> Metric:
    """A Metric event with the numeric parity values of one precision."""
    values = {
        f"{precision}_{key}": float(value)
        for key, value in result.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    return Metric(0, values)


def _load_torch_model(resolved: ResolvedModel) -> tuple[Any, Any, str]:
    """The merged HF model in fp32 eval mode, its tokenizer and the architecture."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(str(resolved.model_dir))
    except Exception as exc:
        raise ExportError(f"{resolved.model_dir} has no usable config.json: {exc}") from exc
    architecture = str(resolved.manifest.get("architecture") or "")
    if architecture not in ("causal", "seq2seq"):
        architecture = "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"
    auto = AutoModelForSeq2SeqLM if architecture == "seq2seq" else AutoModelForCausalLM
    model = auto.from_pretrained(str(resolved.model_dir), dtype=torch.float32)
    model.eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(resolved.model_dir))
    except Exception as exc:
        raise ExportError(f"{resolved.model_dir} has no usable tokenizer: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError("the service needs a fast tokenizer (tokenizer.json); this model has only a slow one")
    return model, tokenizer, architecture


def _prompt_format(resolved: ResolvedModel, tokenizer: Any, model: Any, architecture: str) -> dict[str, Any]:
    """``tinyforge_prompt.json`` of the model, or one derived the same way training would."""
    path = resolved.model_dir / PROMPT_FILENAME
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
    for item in SERVICE_TEMPLATE.iterdir():
        if item.name == "__pycache__" or item.name.endswith(".pyc"):
            continue
        if item.is_dir():
            shutil.copytree(item, staging / item.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(item, staging / item.name)
    run_script = staging / "run.sh"
    if run_script.exists():
        run_script.chmod(0o755)
    if (model_dir / "tokenizer.json").is_file():
        shutil.copy2(model_dir / "tokenizer.json", staging / "tokenizer.json")
    else:
        tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
    for extra in ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "config.json"):
        if (model_dir / extra).is_file():
            (staging / "model_config").mkdir(exist_ok=True)
            shutil.copy2(model_dir / extra, staging / "model_config" / extra)
    write_json_atomic(staging / PROMPT_FILENAME, prompt)
