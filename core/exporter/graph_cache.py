"""Exported ONNX graphs kept per base model: fine-tunes of one base share one graph.

Tracing a model into ONNX is most of an export's time, and what it produces depends on the
model's architecture and config, the export options and the library versions, not on the
weights. The first export of a base model keeps its graph here with the weights left out:
each weight initializer is *bound* to the torch parameter it holds (by name, else by value,
plain or transposed). A later export of any fine-tune with the same key fills in its own
parameters and checks the result against torch on the exporter's example inputs before using
it; a graph that does not match is thrown away and the model traced afresh. The export's
parity stage then checks the graph against torch as it checks every graph.

An entry is a folder ``<cache>/<key>/`` holding the graph files (weights left out, other
constants kept) and ``graph.json`` (what :func:`core.exporter.onnx_graphs.export_graphs`
returned, plus the bindings). Entries are small (the structure, not the weights); the least
recently used are pruned beyond :data:`KEEP_ENTRIES`. The folder is
``$TINYFORGE_GRAPH_CACHE``, else ``onnx-graphs/`` in the model cache; ``TINYFORGE_GRAPH_CACHE=off``
turns the cache off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.exporter.onnx_graphs import ExportedGraphs

logger = logging.getLogger(__name__)

__all__ = ["GRAPH_FORMAT", "GraphCache", "default_graph_cache", "graph_key"]

GRAPH_FORMAT = 1  # bump when the wrappers or the graph layout of onnx_graphs change
KEEP_ENTRIES = 16
_MANIFEST = "graph.json"
_CONFIG_NOISE = ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "_commit_hash")


def default_graph_cache() -> Path | None:
    """``$TINYFORGE_GRAPH_CACHE`` (None when it says ``off``), else ``onnx-graphs/`` in the model cache."""
    env = os.environ.get("TINYFORGE_GRAPH_CACHE")
    if env and env.strip().lower() in ("off", "0", "no", "false"):
        return None
    if env:
        return Path(env).expanduser()
    from core.models.starter import cache_root

    return cache_root() / "onnx-graphs"


def graph_key(model: Any, architecture: str, exporter: str) -> str:
    """What a graph depends on: config, parameter names and shapes, export options, versions."""
    import onnx
    import torch
    import transformers

    from core import __version__

    config = {k: v for k, v in model.config.to_dict().items() if k not in _CONFIG_NOISE}
    try:
        import onnxscript

        onnxscript_version = onnxscript.__version__
    except ImportError:
        onnxscript_version = None
    described = {
        "format": GRAPH_FORMAT,
        "tinyforge": __version__,
        "architecture": architecture,
        "exporter": exporter,
        "versions": [torch.__version__, transformers.__version__, onnx.__version__, onnxscript_version],
        "config": config,
        "tensors": [(name, list(t.shape), str(t.dtype)) for name, t in _named_tensors(model).items()],
    }
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _named_tensors(model: Any) -> dict[str, Any]:
    """Every parameter and buffer of ``model`` by name, tied parameters once."""
    tensors = dict(model.named_parameters())
    tensors.update({name: b for name, b in model.named_buffers() if name not in tensors})
    return tensors


@dataclass(frozen=True)
class Binding:
    """Where an initializer's data comes from: a torch tensor, as it is or transposed."""

    tensor: str
    transposed: bool = False


class CacheEntry(BaseModel):
    """``graph.json`` of an entry: what :func:`export_graphs` wrote, each graph's bindings
    (initializer -> parameter) and how fast the quantized precisions ran here."""

    model_config = ConfigDict(extra="allow")

    key: str = ""
    created: float = 0.0
    exported: ExportedGraphs
    bindings: dict[str, dict[str, Binding]] = Field(default_factory=dict)
    ms_per_token: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> CacheEntry:
        """The entry in ``path``; ``ValueError`` (a ``ValidationError`` or bad JSON) when it is not one."""
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def text(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=1)


class GraphCache:
    """Graphs without their weights under ``root``, one folder per :func:`graph_key`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def restore(self, key: str, model: Any, onnx_dir: Path) -> ExportedGraphs | None:
        """Write the cached graph of ``key`` with ``model``'s weights into ``onnx_dir``; return what
        ``export_graphs`` would have, or None when there is no usable entry."""
        from core.run_layout import ENCODER_GRAPH_FILE, ONNX_GRAPH_FILE

        entry = self.root / key
        manifest_path = entry / _MANIFEST
        if not manifest_path.is_file():
            return None
        try:
            manifest = CacheEntry.read(manifest_path)
            tensors = _named_tensors(model)
            for role, rel in manifest.exported.files.items():
                _fill(entry / Path(rel).name, manifest.bindings[role], tensors, onnx_dir / Path(rel).name)
        except Exception as exc:  # a damaged or foreign entry: trace afresh, do not fail the export
            logger.warning("the cached graph %s is not usable (%s); exporting afresh", entry, exc)
            for graph in (ONNX_GRAPH_FILE, ENCODER_GRAPH_FILE):  # each graph and its external data
                for rel in (graph, f"{graph}.data"):
                    (onnx_dir / rel).unlink(missing_ok=True)
            return None
        os.utime(manifest_path)  # recently used: kept when older entries are pruned
        return manifest.exported

    def store(self, key: str, model: Any, onnx_dir: Path, exported: ExportedGraphs) -> None:
        """Keep the graphs ``export_graphs`` just wrote into ``onnx_dir`` (weights left out).

        Never raises: a cache that cannot be written only costs the next export its time."""
        if (self.root / key / _MANIFEST).is_file():
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
            try:
                tensors = _named_tensors(model)
                bindings = {role: _strip(onnx_dir / Path(rel).name, tensors, staging / Path(rel).name)
                            for role, rel in exported.files.items()}
                manifest = CacheEntry(key=key, created=time.time(), exported=exported, bindings=bindings)
                (staging / _MANIFEST).write_text(manifest.text(), encoding="utf-8")
                try:
                    os.replace(staging, self.root / key)
                except OSError:  # another export stored the same key meanwhile
                    pass
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            self._prune()
        except Exception as exc:
            logger.warning("could not keep the exported graph in %s: %s", self.root, exc)

    def speed_order(self, key: str) -> list[str] | None:
        """The quantized precisions of this base model's last export here, fastest first."""
        try:
            speeds = CacheEntry.read(self.root / key / _MANIFEST).ms_per_token
        except (OSError, ValueError):
            return None
        return sorted(speeds, key=lambda precision: speeds[precision]) if speeds else None

    def remember_speeds(self, key: str, ms_per_token: dict[str, float]) -> None:
        """Keep how fast each quantized precision ran (orders the next export's checks)."""
        from core.jsonio import write_text_atomic

        path = self.root / key / _MANIFEST
        try:
            manifest = CacheEntry.read(path)
            manifest.ms_per_token = {**manifest.ms_per_token, **ms_per_token}
            write_text_atomic(path, manifest.text())
        except (OSError, ValueError) as exc:
            logger.warning("could not note the candidates' speeds in %s: %s", path, exc)

    def drop(self, key: str) -> None:
        """Remove the entry of ``key`` (one that did not match torch)."""
        shutil.rmtree(self.root / key, ignore_errors=True)

    def _prune(self) -> None:
        entries = sorted((p for p in self.root.iterdir() if (p / _MANIFEST).is_file()),
                         key=lambda p: (p / _MANIFEST).stat().st_mtime, reverse=True)
        for old in entries[KEEP_ENTRIES:]:
            shutil.rmtree(old, ignore_errors=True)


def _strip(graph_path: Path, tensors: dict[str, Any], destination: Path) -> dict[str, Binding]:
    """Save ``graph_path`` to ``destination`` with every initializer that holds a torch tensor
    emptied; return those bindings. Other initializers (computed constants) keep their data."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(graph_path), load_external_data=True)
    arrays = {name: _numpy(tensor) for name, tensor in tensors.items()}
    by_print: dict[tuple[Any, ...], list[Binding]] = {}
    for name, array in arrays.items():  # every tensor as it is and transposed, by a cheap fingerprint
        by_print.setdefault(_fingerprint(array), []).append(Binding(name))
        if array.ndim == 2:
            by_print.setdefault(_fingerprint(array.T), []).append(Binding(name, True))
    bindings: dict[str, Binding] = {}
    for init in proto.graph.initializer:
        data = numpy_helper.to_array(init)
        binding = _bind(init.name, data, arrays, by_print)
        if binding is None:
            continue
        bindings[init.name] = binding
        init.ClearField("raw_data")
        init.ClearField("float_data")
        del init.external_data[:]
        init.data_location = onnx.TensorProto.DEFAULT
    onnx.save_model(proto, str(destination))
    return bindings


def _fingerprint(array: Any) -> tuple[Any, ...]:
    """Shape, dtype and a few values spread over the tensor: equal tensors share it, and
    different ones almost never do (candidates are compared in full afterwards)."""
    flat = array.reshape(-1) if array.flags.c_contiguous else None
    size = array.size
    picks = [0, size // 3, size // 2, (2 * size) // 3, size - 1] if size else []
    if flat is None:  # a transposed view: index it by coordinates
        values = [array[index // array.shape[1], index % array.shape[1]] for index in picks]
    else:
        values = [flat[index] for index in picks]
    return (array.shape, str(array.dtype), tuple(float(v) for v in values))


def _bind(name: str, data: Any, arrays: dict[str, Any], by_print: dict[tuple[Any, ...], list[Binding]]) -> Binding | None:
    """The torch tensor ``data`` holds: the one of its name (the exporter keeps parameter names),
    else the only one of equal value, as it is or transposed (a folded ``Transpose``)."""
    import numpy as np

    for candidate in (name, name.removeprefix("model."), name.removeprefix("encoder.")):
        array = arrays.get(candidate)
        if array is not None and array.shape == data.shape and array.dtype == data.dtype \
                and np.array_equal(array, data):
            return Binding(candidate)
    if data.size < 2:
        return None
    found = [b for b in by_print.get(_fingerprint(data), [])
             if np.array_equal(arrays[b.tensor].T if b.transposed else arrays[b.tensor], data)]
    return found[0] if len(found) == 1 else None


def _numpy(tensor: Any) -> Any:
    return tensor.detach().cpu().numpy()


def _fill(cached: Path, bindings: dict[str, Binding], tensors: dict[str, Any], destination: Path) -> None:
    """Write the cached graph ``cached`` to ``destination`` with the bound initializers filled in
    from ``tensors`` (weights beside it, in ``<name>.data``, when they are large)."""
    import numpy as np
    import onnx

    from core.exporter.onnx_graphs import save_graph

    proto = onnx.load(str(cached), load_external_data=False)
    for init in proto.graph.initializer:
        binding = bindings.get(init.name)
        if binding is None:
            continue
        data = _numpy(tensors[binding.tensor])
        data = np.ascontiguousarray(data.T if binding.transposed else data)
        if list(data.shape) != list(init.dims):
            raise ValueError(f"{init.name}: shape {list(data.shape)} in the model, {list(init.dims)} in the graph")
        init.raw_data = data.tobytes()
    destination.parent.mkdir(parents=True, exist_ok=True)
    save_graph(proto, destination)
