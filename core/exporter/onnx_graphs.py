"""Graph building: turn a loaded torch model into checked fp32 ONNX graph files.

This is the layer under :mod:`core.exporter.onnx_export`, which owns the orchestration (resolving
the model, stages, events, the staging folder, the report). Here live the torch wrapper modules
with flat tensor inputs/outputs that build the KV cache object inside ``forward``, the dynamo /
TorchScript export of one wrapper, :func:`export_graphs` that exports every graph of a model
(with exporter fallback) and :func:`check_graphs` that runs the ONNX checker over the result.

Decoder-only: one graph serves both prefill and decode steps::

    input_ids, attention_mask, position_ids, past_key_values.{i}.key/value
        -> logits (last position only), present.{i}.key/value

Encoder-decoder: ``onnx/encoder.onnx`` (input_ids, attention_mask -> encoder_hidden_states)
and ``onnx/model.onnx``, the decoder with a self-attention cache (cross-attention keys are
recomputed from the encoder states each step, cheap for small models).

torch, transformers and onnx are imported inside the functions that use them, so importing this
module stays light.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.events import Cancelled
from core.exporter.errors import ExportError
from core.run_layout import ENCODER_GRAPH_FILE, ONNX_DIR, ONNX_GRAPH_FILE

logger = logging.getLogger(__name__)

__all__ = ["EXTERNAL_FROM_BYTES", "ExportedGraphs", "GraphIO", "cache_layout", "check_graphs", "export_graphs",
           "graph_bytes", "save_graph"]

EXTERNAL_FROM_BYTES = 64 << 20  # graphs with more weights than this keep them in <name>.data


def _cache_kwarg(model: Any) -> str:
    """Name of the cache keyword of ``model.forward``: newer transformers call it ``cache``."""
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
                # Traced without the weights: exporting them, the tracer holds two more copies
                # of every weight (2.8 GB peak for the starter); they are put in afterwards.
                torch.onnx.export(
                    module,
                    args,
                    str(path),
                    input_names=spec["inputs"],
                    output_names=spec["outputs"],
                    dynamic_axes=spec["axes"],
                    opset_version=opset,
                    dynamo=False,
                    do_constant_folding=False,
                    export_params=False,
                )
            _put_in_parameters(path, module, spec["inputs"])
    if chatter.getvalue().strip():
        logger.debug("%s exporter output:\n%s", exporter, chatter.getvalue().strip())
    return opset


def _put_in_parameters(path: Path, module: Any, inputs: list[str]) -> None:
    """Make the parameter inputs of a graph traced with ``export_params=False`` initializers
    holding ``module``'s tensors, one at a time. A weight read only through ``Transpose`` is
    stored transposed (the quantizers need a MatMul's weight as an initializer)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    tensors = {**dict(module.named_buffers()), **dict(module.named_parameters())}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    nested = any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute)
    outputs = {o.name for o in graph.output}
    for value in [v for v in graph.input if v.name not in inputs]:
        tensor = tensors.get(value.name)
        if tensor is None:
            raise ExportError(f"the traced graph reads {value.name!r}, which is no tensor of the model")
        array = tensor.detach().cpu().numpy()
        users = readers.get(value.name, [])
        transposes = [n for n in users if n.op_type == "Transpose" and len(n.input) == 1]
        for node in transposes:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(np.transpose(array, perm)),
                                                             node.output[0]))
            graph.node.remove(node)
        if nested or len(transposes) < len(users) or value.name in outputs:
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), value.name))
        graph.input.remove(value)
    save_graph(model, path)


def save_graph(model: Any, path: Path, location: str | None = None) -> None:
    """Save an ONNX model; large weights beside it as ``location`` (default ``<name>.data``):
    serialising a 600 MB protobuf takes seconds and a copy of it in memory, writing bytes does not."""
    import onnx

    large = sum(i.ByteSize() for i in model.graph.initializer) > EXTERNAL_FROM_BYTES
    onnx.save_model(model, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
                    location=location or path.name + ".data", size_threshold=1024)


class GraphIO(BaseModel):
    """A graph's input and output names."""

    inputs: list[str]
    outputs: list[str]


class ExportedGraphs(BaseModel):
    """What :func:`export_graphs` wrote (kept as such in the graph cache's ``graph.json``)."""

    model_config = ConfigDict(extra="allow")

    files: dict[str, str]  # role (decoder; seq2seq also encoder) -> path relative to the service folder
    exporter: str  # "torchscript" or "dynamo"
    opset: int
    layout: dict[str, int]  # num_layers, num_kv_heads, head_dim (cache_layout)
    io: dict[str, GraphIO]
    fallback_errors: list[str] = Field(default_factory=list)  # exporters tried first, and why they failed


def export_graphs(
    model: Any, architecture: str, onnx_dir: Path, exporter: str = "auto"
) -> ExportedGraphs:
    """Export the fp32 graph(s) of ``model`` into ``onnx_dir``.

    ``exporter`` is ``dynamo`` (torch.export based), ``torchscript`` (the legacy tracer, still in
    torch 2.13) or ``auto``: the tracer first, dynamo as the fallback. On the starter model the
    tracer takes 13 s where dynamo takes 90 s and 4 GB, and its graph answers the same (parity
    checks every export); T5's relative attention defeats torch.export today.
    Returns what it wrote: the files per role, the exporter, opset, cache layout and io names.
    """
    layout = cache_layout(model.config, architecture)
    spec = _io_spec(architecture, layout)
    wrappers = _make_wrappers(model, architecture, layout["num_layers"])
    dummies = _dummy_inputs(model, architecture, layout)
    files = ({"decoder": ONNX_GRAPH_FILE} if architecture == "causal"
             else {"encoder": ENCODER_GRAPH_FILE, "decoder": ONNX_GRAPH_FILE})
    if exporter == "auto":
        order = ["torchscript", "dynamo"]
    else:
        order = [exporter]
    errors: list[str] = []
    for name in order:
        try:
            opset = 0
            for role, rel in files.items():
                opset = _export_one(wrappers[role], dummies[role], spec[role], onnx_dir / rel, name)
            return ExportedGraphs(
                files={role: f"{ONNX_DIR}/{rel}" for role, rel in files.items()},
                exporter=name,
                opset=opset,
                layout=layout,
                io={role: GraphIO(inputs=spec[role]["inputs"], outputs=spec[role]["outputs"]) for role in files},
                fallback_errors=errors,
            )
        except Cancelled:
            raise
        except Exception as exc:  # try the next exporter; keep why this one failed
            logger.warning("%s exporter failed: %s", name, exc)
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:400])
            for rel in files.values():
                for leftover in onnx_dir.glob(f"{rel}*"):
                    leftover.unlink(missing_ok=True)
    raise ExportError("could not export the model to ONNX: " + "; ".join(errors))


def check_graphs(root: Path, files: dict[str, str]) -> None:
    """Run the ONNX checker over every graph in ``files`` (role -> path relative to ``root``),
    so a malformed graph fails the export here rather than at load time in the service."""
    import onnx

    for rel in files.values():
        onnx.checker.check_model(str(root / rel))


def graph_bytes(path: Path) -> int:
    """Size of a graph including external data files beside it."""
    total = path.stat().st_size
    for extra in path.parent.glob(f"{path.name}.data"):
        total += extra.stat().st_size
    return total


def graph_logit_diff(model: Any, architecture: str, onnx_dir: Path, files: dict[str, str]) -> float:
    """Max |difference| between each graph's first output and torch's on the exporter's example
    inputs (batch 2, a non-empty cache): a quick check that a graph holds this model's weights."""
    import numpy as np
    import onnxruntime as ort
    import torch

    layout = cache_layout(model.config, architecture)
    spec = _io_spec(architecture, layout)
    wrappers = _make_wrappers(model, architecture, layout["num_layers"])
    dummies = _dummy_inputs(model, architecture, layout)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # loads in a fraction
    worst = 0.0
    for role, rel in files.items():
        session = ort.InferenceSession(str(onnx_dir / Path(rel).name), options, providers=["CPUExecutionProvider"])
        feed = {name: tensor.numpy() for name, tensor in zip(spec[role]["inputs"], dummies[role], strict=True)}
        got = session.run([spec[role]["outputs"][0]], feed)[0]
        with torch.inference_mode():
            want = wrappers[role](*dummies[role])
        want = (want[0] if isinstance(want, tuple) else want).float().numpy()
        worst = max(worst, float(np.max(np.abs(got - want))))
        del session
    return worst
