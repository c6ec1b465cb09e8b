"""Code and scripts written for TinyForgeAI keep working against ``core`` (issue 11).

Names, exception types and wording that TinyForgeAI's users rely on; the deliberate
differences (README, "Coming from TinyForgeAI") are pinned down here too.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from core.cli import main as cli_main
from core.exporter.builder import build, get_template_dir
from core.exporter.errors import ExportError, ModelNotFoundError, OutputExistsError
from core.exporter.onnx_export import export_to_onnx, get_onnx_metadata
from core.exporter.quantize import QUANTIZE_MODES, get_quantized_metadata, quantize_onnx

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample_qna.jsonl"


def _stub(folder: Path, **extra: Any) -> Path:
    """A dry-run artifact as the trainer writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model_stub.json"
    path.write_text(json.dumps({"model_type": "tinyforge_stub", "n_records": 3, "notes": "dry-run artifact", **extra}))
    return path


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli_main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- builder


def test_template_dir_holds_the_service_files() -> None:
    folder = get_template_dir()
    assert folder.is_dir()
    for name in ("app.py", "model_loader.py", "schemas.py", "requirements.txt"):
        assert (folder / name).is_file(), name


def test_missing_model_is_file_not_found_and_export_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        build(tmp_path / "absent" / "model.bin", tmp_path / "svc")
    assert isinstance(info.value, ExportError) and isinstance(info.value, ModelNotFoundError)
    assert "not found" in str(info.value) and str(tmp_path / "absent") in str(info.value)
    assert not (tmp_path / "svc").exists()


def test_existing_output_is_file_exists_before_the_model_is_read(tmp_path: Path) -> None:
    # Not a TinyForge artifact: reading it would fail, so only an early check names the folder.
    model = tmp_path / "weights.bin"
    model.write_bytes(b"\x00\x01 not json")
    out = tmp_path / "svc"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError) as info:
        build(model, out)
    assert isinstance(info.value, OutputExistsError) and "already exists" in str(info.value)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_build_refuses_a_file_that_is_not_a_tinyforge_artifact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deliberate difference: TinyForgeAI wrapped any file; we say it is not a model."""
    model = tmp_path / "weights.bin"
    model.write_text("fake model data")
    with pytest.raises(ExportError, match="Expected JSON"):
        build(model, tmp_path / "svc")
    weights = tmp_path / "pytorch_model.bin"
    with open(weights, "wb") as handle:  # sparse: big on paper, nothing to read
        handle.truncate(64 << 20)
    def read_model_stub(path: object) -> object:
        raise AssertionError(f"{path} should not be read")

    monkeypatch.setattr("core.exporter.service_build.read_model_stub", read_model_stub)
    with pytest.raises(ExportError, match="Expected JSON"):
        build(weights, tmp_path / "svc")
    assert not (tmp_path / "svc").exists()


def test_build_returns_the_metadata_without_onnx(tmp_path: Path) -> None:
    """Deliberate difference: TinyForgeAI returned None here."""
    result = build(_stub(tmp_path / "m"), tmp_path / "svc")
    assert result == json.loads((tmp_path / "svc" / "model_metadata.json").read_text())
    assert result["model_stub"] is True


# ----------------------------------------------------------------------------- ONNX helpers, dry run


def test_export_to_onnx_writes_the_seed_placeholder(tmp_path: Path) -> None:
    stub = _stub(tmp_path / "m", lora_applied=True)
    out = tmp_path / "deep" / "onnx"
    path = export_to_onnx(stub, out)
    assert path == str(out / "model.onnx")
    lines = Path(path).read_text().splitlines()
    assert lines[0] == "# TinyForgeAI ONNX placeholder"
    assert lines[2] == f"# Source: {stub}"
    meta = get_onnx_metadata(path)
    assert meta == json.loads((out / "model.onnx.meta.json").read_text())
    assert meta["exported_from"] == str(stub) and meta["version"] == "0.1-stub"
    assert meta["source_model"] == json.loads(stub.read_text())
    assert lines[1] == f"# Exported: {meta['export_time']}"


def test_export_to_onnx_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        export_to_onnx(tmp_path / "nothing.json", tmp_path / "out")
    binary = tmp_path / "model.bin"
    binary.write_text("binary data")
    with pytest.raises(ValueError, match="Expected JSON"):
        export_to_onnx(binary, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_metadata_readers_return_none_without_a_sidecar(tmp_path: Path) -> None:
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"\x08\x07")
    assert get_onnx_metadata(graph) is None
    assert get_quantized_metadata(tmp_path / "quantized.onnx") is None


@pytest.mark.parametrize("mode", QUANTIZE_MODES)
def test_quantize_onnx_on_a_placeholder_writes_the_seed_document(tmp_path: Path, mode: str) -> None:
    onnx_path = export_to_onnx(_stub(tmp_path / "m"), tmp_path / "onnx")
    source_meta = get_onnx_metadata(onnx_path)
    out = tmp_path / "new" / "quant"
    path = quantize_onnx(onnx_path, out, mode=mode)
    assert path == str(out / "quantized.onnx")
    document = json.loads(Path(path).read_text())
    assert set(document) == {"exported_from", "export_time", "version", "quantized", "mode", "quantize_time"}
    assert document["quantized"] is True and document["mode"] == mode
    assert (document["exported_from"], document["export_time"], document["version"]) == (
        source_meta["exported_from"], source_meta["export_time"], "0.1-stub",
    )
    meta = get_quantized_metadata(path)
    assert meta == json.loads((out / "quantized.onnx.meta.json").read_text())
    assert meta["quantized"] is True and meta["mode"] == mode
    assert meta["source_model"] == source_meta["source_model"] and meta["exported_from"] == source_meta["exported_from"]
    assert meta["quantize_time"] == document["quantize_time"]


def test_quantize_onnx_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        quantize_onnx(tmp_path / "absent.onnx", tmp_path / "q")
    onnx_path = export_to_onnx(_stub(tmp_path / "m"), tmp_path / "onnx")
    for mode in ("int2", "INT8", "int8_dynamic", ""):
        with pytest.raises(ValueError, match="Invalid quantization mode"):
            quantize_onnx(onnx_path, tmp_path / "q", mode=mode)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x12\x34 not a protobuf \xff\xff")
    with pytest.raises(ValueError, match="not an ONNX graph"):
        quantize_onnx(junk, tmp_path / "q")
    assert not (tmp_path / "q" / "quantized.onnx").exists()


def test_build_keeps_the_seed_json_quantized_placeholder(tmp_path: Path) -> None:
    """Deliberate difference: a dry-run service's quantized.onnx is a JSON document (TinyForgeAI's
    docs show one), not comment lines."""
    report = build(_stub(tmp_path / "m"), tmp_path / "svc", export_onnx=True)
    document = json.loads(Path(report["quantized_path"]).read_text())
    assert document["quantized"] is True and document["mode"] == "int8" and document["version"] == "0.1-stub"


# ----------------------------------------------------------------------------- ONNX helpers, real graphs


@pytest.fixture(scope="module")
def real_graph(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny causal model exported by ``export_to_onnx`` (the real fp32 graph)."""
    out = tmp_path_factory.mktemp("seed_onnx")
    (out / "notes.txt").write_text("mine")  # the export must leave what it did not write
    return Path(export_to_onnx(tiny_models["causal"], out))


def _ids(text: str) -> list[int]:
    """The tiny models' byte tokenizer: <s> (3), then each UTF-8 byte b as 4 + b."""
    return [3] + [4 + b for b in text.encode()]


def _logits(path: Path, text: str) -> Any:
    """Last-position logits of a decoder graph for ``text``, with an empty KV cache."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = _ids(text)
    feed: dict[str, Any] = {}
    for spec in session.get_inputs():
        if spec.name == "input_ids":
            feed[spec.name] = np.array([ids], dtype=np.int64)
        elif spec.name == "attention_mask":
            feed[spec.name] = np.ones((1, len(ids)), dtype=np.int64)
        elif spec.name == "position_ids":
            feed[spec.name] = np.arange(len(ids), dtype=np.int64)[None]
        else:  # past keys/values: batch 1, past length 0
            shape = [1 if dim == "batch" else 0 if isinstance(dim, str) else dim for dim in spec.shape]
            feed[spec.name] = np.zeros(shape, dtype=np.float32)
    return session.run(["logits"], feed)[0][0, -1]


@pytest.mark.slow
def test_export_to_onnx_writes_a_real_graph_for_a_trained_model(real_graph: Path, tiny_models: dict[str, Path]) -> None:
    import onnx

    onnx.checker.check_model(str(real_graph))
    assert sorted(p.name for p in real_graph.parent.iterdir()) == ["model.onnx", "model.onnx.meta.json", "notes.txt"]
    meta = get_onnx_metadata(real_graph)
    assert meta["exported_from"] == str(tiny_models["causal"] / "model")
    assert meta["version"] != "0.1-stub" and meta["source_model"]["architecture"] == "causal"
    assert meta["inputs"][:3] == ["input_ids", "attention_mask", "position_ids"]
    # The graph computes the trained model: same last-position logits as torch.
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_models["causal"] / "model"), dtype=torch.float32).eval()
    for text in ("How do I reset my password?", "Something else"):
        with torch.no_grad():
            want = model(input_ids=torch.tensor([_ids(text)])).logits[0, -1].numpy()
        assert float(np.max(np.abs(_logits(real_graph, text) - want))) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "node"),
    [("int8", "MatMulInteger"), ("uint8", "MatMulInteger"), ("int4", "MatMulNBits"), ("fp16", None)],
)
def test_quantize_onnx_on_a_real_graph_quantizes_for_real(
    real_graph: Path, tmp_path: Path, mode: str, node: str | None
) -> None:
    import numpy as np
    import onnx

    path = Path(quantize_onnx(real_graph, tmp_path / "q", mode=mode))
    onnx.checker.check_model(str(path))
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    if node:
        assert node in ops
    else:
        halves = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
        assert halves and sum(np.prod(t.dims) for t in halves) > 10_000
    assert path.stat().st_size < 0.8 * real_graph.stat().st_size
    meta = get_quantized_metadata(path)
    assert meta["quantized"] is True and meta["mode"] == mode
    assert meta["exported_from"] == get_onnx_metadata(real_graph)["exported_from"]
    assert meta["quantization"]["quantized_bytes"] == path.stat().st_size
    # Close to the fp32 graph: same top token, small logit error.
    for text in ("How do I reset my password?", "What is your refund policy?"):
        want, got = _logits(real_graph, text), _logits(path, text)
        assert int(np.argmax(got)) == int(np.argmax(want))
        assert float(np.max(np.abs(got - want))) < 0.25 * float(np.max(np.abs(want)))


# ----------------------------------------------------------------------------- dataset and LoRA


@pytest.mark.parametrize(
    ("content", "line", "keys"),
    [
        ('{"input": "a"}\n', 1, "'output'"),
        ('{"input": "a", "output": "b"}\n{"output": "b"}\n', 2, "'input'"),
        ('{"input": "a", "output": "b"}\n\n{"text": "x"}\n', 3, "'input' and 'output'"),
    ],
)
def test_load_jsonl_names_the_missing_keys(tmp_path: Path, content: str, line: int, keys: str) -> None:
    from core.training.dataset import load_jsonl, validate_file

    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match="missing keys") as info:
        load_jsonl(path)
    assert f"line {line}" in str(info.value) and keys in str(info.value)
    problem = validate_file(path).problems[0]
    # a bare 'text' row also says what it is (plain language-model text)
    assert problem.line == line and problem.message.startswith(f"missing keys: {keys}")


@pytest.mark.parametrize("model", [None, "x", ["model_type"]])
def test_apply_lora_rejects_a_model_that_is_not_a_dict(model: object) -> None:
    from core.training.peft_adapter import apply_lora

    with pytest.raises(ValueError, match="must be a non-None dictionary"):
        apply_lora(model)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- foremforge init


def test_init_yes_creates_the_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = _cli(capsys, "init", "--yes")
    assert code == 0
    for name in ("backend", "connectors", "docs", "tests", "examples"):
        assert (tmp_path / name).is_dir() and f"Created directory: {name}/" in out
    for name in ("README.md", ".env.example", "examples/sample_qna.jsonl"):
        assert (tmp_path / name).is_file() and f"Created file: {name}" in out
    assert "Initialization complete" in out
    assert (tmp_path / "examples" / "sample_qna.jsonl").read_text() == SAMPLE.read_text()
    assert "foremforge train" in (tmp_path / "README.md").read_text()

    code, out, _ = _cli(capsys, "init", "--yes")
    assert code == 0 and "Nothing to create" in out and "Already exists: README.md" in out
    assert "Created" not in out


def test_init_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("my readme")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("my notes")
    code, out, _ = _cli(capsys, "init", "--yes")
    assert code == 0
    assert (tmp_path / "README.md").read_text() == "my readme"
    assert (tmp_path / "docs" / "notes.md").read_text() == "my notes"
    assert "Already exists: README.md" in out and "Already exists: docs/" in out
    assert "Created file: .env.example" in out and "Created file: README.md" not in out


def test_init_with_a_file_in_the_way_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tests").write_text("a file, not a folder")
    code, _, err = _cli(capsys, "init", "--yes")
    assert code == 1 and err.startswith("Error:") and "tests" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tests"]


@pytest.mark.parametrize(("answer", "code"), [("n\n", 1), ("\n", 1), ("", 1), ("y\n", 0)])
def test_init_asks_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], answer: str, code: int
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    got, out, _ = _cli(capsys, "init")
    assert got == code
    if code:
        assert "Aborted" in out and list(tmp_path.iterdir()) == []
    else:
        assert "Initialization complete" in out and (tmp_path / ".env.example").is_file()


# ----------------------------------------------------------------------------- train / export output


def test_train_dry_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "train", "--data", str(SAMPLE), "--out", str(tmp_path / "m"), "--dry-run")
    assert code == 0
    assert "dry-run" in out and "n_records: 3" in out and str(tmp_path / "m" / "model_stub.json") in out


def test_export_aliases_and_where_the_service_went(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stub = _stub(tmp_path / "m")
    out_dir = tmp_path / "svc"
    code, out, _ = _cli(capsys, "export", "--model", str(stub), "--out", str(out_dir))
    assert code == 0 and (out_dir / "model_metadata.json").is_file()
    assert "microservice" in out and str(out_dir) in out and "onnx_path" not in out

    code, out, _ = _cli(capsys, "export", "--model", str(stub), "--out", str(tmp_path / "svc2"), "--export-onnx")
    assert code == 0
    report = json.loads((tmp_path / "svc2" / "export_report.json").read_text())
    assert f"onnx_path: {report['onnx_path']}" in out


def test_cli_errors_start_with_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stub = _stub(tmp_path / "m")
    (tmp_path / "svc").mkdir()
    code, out, err = _cli(capsys, "export", "--model", str(stub), "--out", str(tmp_path / "svc"))
    assert code == 1 and err.startswith("Error:") and "already exists" in err and out == ""
    code, _, err = _cli(capsys, "train", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o"), "--dry-run")
    assert code == 1 and "Error: file not found" in err
    code, _, err = _cli(capsys, "export", "--out", str(tmp_path / "x"))
    assert code == 2 and "Error: the following arguments are required: --model-path/--model" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "--model-p", "M", "--output-dir", "O"],
        ["export", "--model-path", "M", "--output", "O"],
        ["export", "--model-path", "M", "--output-dir", "O", "--export"],
        ["train", "--data", "D", "--out", "O", "--dry"],
        ["validate", "--da", "D"],
    ],
)
def test_no_prefix_matching(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """Only the spelled-out options and the explicit aliases are accepted."""
    code, _, err = _cli(capsys, *argv)
    assert code == 2 and "Error:" in err
    assert not (tmp_path / "O").exists()


def test_int4_quantizer_import_leaves_logging_alone() -> None:
    """ONNX Runtime's 4-bit quantizer module calls logging.basicConfig(INFO) when imported."""
    import subprocess
    import sys

    code = (
        "import logging\n"
        "from core.exporter.quantize import _import_nbits_quantizer\n"
        "_import_nbits_quantizer()\n"
        "root = logging.getLogger()\n"
        "assert not root.handlers and root.level == logging.WARNING, (root.handlers, root.level)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_init_in_a_read_only_or_deleted_folder_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a traceback, after part of the layout was created (reliability round two, item 8)."""
    import os

    monkeypatch.chdir(tmp_path)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path else real_access(path, mode))
    code, _, err = _cli(capsys, "init", "--yes")
    assert code == 1 and "no write permission" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing created
    monkeypatch.setattr(os, "access", real_access)

    def disk_full(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "mkdir", disk_full)
    code, _, err = _cli(capsys, "init", "--yes")
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    monkeypatch.undo()
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    code, _, err = _cli(capsys, "init", "--yes")
    assert code == 1 and "the current folder no longer exists" in err
