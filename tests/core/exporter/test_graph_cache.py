"""The ONNX graph cache: a second fine-tune of one base model reuses the traced graph with its own
weights, checked against torch; a graph that does not match, or a damaged entry, is traced afresh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.export_helpers import make_trained_model


@pytest.fixture(scope="module")
def two_fine_tunes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Per architecture two fine-tunes of one tiny base model (same config, other weights)."""
    root = tmp_path_factory.mktemp("fine-tunes")
    return {
        arch: (make_trained_model(name, root / f"{arch}-a", steps=20, seed=0),
               make_trained_model(name, root / f"{arch}-b", steps=30, seed=1))
        for arch, name in (("causal", "tiny-causal"), ("seq2seq", "tiny-seq2seq"))
    }


def _export(model: Path, out: Path, cache: Path) -> dict:
    from core.exporter.onnx_export import export_real

    return export_real(model, out, max_new_tokens=12, self_test=False, quantize="none", graph_cache=cache)


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if (p / "graph.json").is_file())


@pytest.mark.parametrize("arch", ["causal", "seq2seq"])
def test_a_second_fine_tune_reuses_the_graph_with_its_own_weights(two_fine_tunes, tmp_path: Path, arch: str) -> None:
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import load_file

    from core.exporter.onnx_predict import predict_onnx
    from core.training.predict import predict

    first, second = two_fine_tunes[arch]
    cache = tmp_path / "graphs"
    report = _export(first, tmp_path / "svc-a", cache)
    assert report.graph_source == "exported"
    (entry,) = _entries(cache)
    from core.exporter.onnx_graphs import graph_bytes

    fresh = graph_bytes(tmp_path / "svc-a" / "onnx" / "model.onnx")
    assert graph_bytes(entry / "model.onnx") < fresh / 2  # the structure, not the weights

    report = _export(second, tmp_path / "svc-b", cache)
    assert report.graph_source == "cache"
    assert report.parity_of("fp32").passed, report.parity_of("fp32")
    # The graph holds the second model's weights, not the first one's.
    weights = load_file(str(second / "model" / "model.safetensors"))
    graph = onnx.load(str(tmp_path / "svc-b" / "onnx" / "model.onnx"))
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    bound = [name for name in weights if any(k.endswith(name) for k in initializers)]
    assert bound, "no weight of the model found among the graph's initializers"
    for name in bound:
        key = next(k for k in initializers if k.endswith(name))
        assert (initializers[key] == weights[name]).all(), name
    for question in ("How do I reset my password?", "What is your refund policy?"):
        assert predict_onnx(tmp_path / "svc-b", question, max_new_tokens=12, precision="fp32") == predict(
            second, question, max_new_tokens=12)


def test_a_cached_graph_that_does_not_match_torch_is_traced_afresh(two_fine_tunes, tmp_path: Path) -> None:
    first, second = two_fine_tunes["causal"]
    cache = tmp_path / "graphs"
    _export(first, tmp_path / "svc-a", cache)
    (entry,) = _entries(cache)
    manifest = json.loads((entry / "graph.json").read_text())
    bindings = manifest["bindings"]["decoder"]
    # Bind one projection to another of the same shape: the filled graph computes something else.
    names = sorted(n for n, b in bindings.items() if b["tensor"].endswith(("q_proj.weight", "o_proj.weight")))
    assert len(names) >= 2
    bindings[names[0]], bindings[names[1]] = bindings[names[1]], bindings[names[0]]
    (entry / "graph.json").write_text(json.dumps(manifest))
    logs: list[str] = []
    from core.events import Log
    from core.exporter.onnx_export import export_real

    report = export_real(second, tmp_path / "svc-b", max_new_tokens=12, self_test=False, quantize="none",
                         graph_cache=cache, on_event=lambda e: logs.append(e.message) if isinstance(e, Log) else None)
    assert report.graph_source == "exported" and report.parity_of("fp32").passed
    assert any("does not match this model" in line for line in logs)
    (fresh,) = _entries(cache)  # the bad entry replaced by a good one
    assert json.loads((fresh / "graph.json").read_text())["bindings"]["decoder"][names[0]] != bindings[names[0]]


def test_a_damaged_entry_is_ignored_and_the_cache_can_be_off(two_fine_tunes, tmp_path: Path, monkeypatch) -> None:
    first, _ = two_fine_tunes["causal"]
    cache = tmp_path / "graphs"
    _export(first, tmp_path / "svc-a", cache)
    (entry,) = _entries(cache)
    (entry / "model.onnx").write_bytes(b"not a graph")
    report = _export(first, tmp_path / "svc-b", cache)
    assert report.graph_source == "exported" and report.parity_of("fp32").passed
    # An entry that restores but does not run (a binding to a tensor of another shape).
    (entry,) = _entries(cache)
    manifest = json.loads((entry / "graph.json").read_text())
    bindings = manifest["bindings"]["decoder"]
    name = next(n for n, b in bindings.items() if b["tensor"].endswith("q_proj.weight"))
    bindings[name] = {"tensor": next(b["tensor"] for b in bindings.values() if b["tensor"].endswith("up_proj.weight")),
                      "transposed": bindings[name]["transposed"]}
    (entry / "graph.json").write_text(json.dumps(manifest))
    report = _export(first, tmp_path / "svc-c", cache)
    assert report.graph_source == "exported" and report.parity_of("fp32").passed

    from core.exporter.graph_cache import default_graph_cache

    monkeypatch.setenv("TINYFORGE_GRAPH_CACHE", "off")
    assert default_graph_cache() is None
    monkeypatch.setenv("TINYFORGE_GRAPH_CACHE", str(tmp_path / "elsewhere"))
    assert default_graph_cache() == tmp_path / "elsewhere"


def test_candidates_are_checked_in_the_order_the_last_export_measured(two_fine_tunes, tmp_path: Path) -> None:
    from core.exporter.graph_cache import GraphCache
    from core.exporter.onnx_export import export_real

    first, second = two_fine_tunes["causal"]
    cache = tmp_path / "graphs"
    export_real(first, tmp_path / "svc-a", max_new_tokens=12, self_test=False, graph_cache=cache)
    (entry,) = _entries(cache)
    speeds = json.loads((entry / "graph.json").read_text())["ms_per_token"]
    assert set(speeds) == {"int8", "int8_block", "int4_block"} and all(ms > 0 for ms in speeds.values())
    slowest = max(speeds, key=speeds.get)
    GraphCache(cache).remember_speeds(entry.name, {slowest: 0.001})  # now it is the fastest on record
    report = export_real(second, tmp_path / "svc-b", max_new_tokens=12, self_test=False, graph_cache=cache)
    checked_in_order = [name for name in report.parity.seconds if name in speeds]
    assert checked_in_order[0] == slowest  # no probe: the recorded order
