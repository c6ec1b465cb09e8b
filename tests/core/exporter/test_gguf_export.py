"""GGUF export: llama.cpp's tensor layout, the parity gate, the Modelfile and embedded template,
llama.cpp's tokenizer, refusals, cancel, the command line and ``predict`` on a GGUF file.

Tiny random Llamas: a chat model (BPE tokenizer with merges, SmolLM2's template, grouped-query
attention, tied embeddings) and ``tiny-causal`` (byte tokenizer, plain prompt, untied output).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.events import Cancelled, CancelToken, Progress
from core.exporter.candidates import Gate
from core.exporter.errors import ExportError
from core.exporter.gguf_runtime import llama_cpp_available
from tests.core.export_helpers import SAMPLE, save_trained_model
from tests.core.exporter.gguf_helpers import (
    CHATML_TEMPLATE,
    NO_SYSTEM_TEMPLATE,
    SMOL_TEMPLATE,
    USER_TOKEN,
    build_bpe_tokenizer,
    make_chat_model,
    modelfile_fields,
    render_go_template,
    tiny_llama,
)

QUESTION = "How do I reset my password?"
needs_llama_cpp = pytest.mark.skipif(not llama_cpp_available(), reason="llama-cpp-python is not installed")
_MODELS: dict[str, Path] = {}


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Training output of the tiny chat Llama."""
    if "chat" not in _MODELS:
        _MODELS["chat"] = make_chat_model(tmp_path_factory.mktemp("gguf_models") / "chat")
    return _MODELS["chat"]


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Training output of ``tiny-causal`` (plain prompt, BOS added, untied output)."""
    from core.models.tiny import build_tiny_model

    if "byte" not in _MODELS:
        model, tokenizer = build_tiny_model("tiny-causal")
        _MODELS["byte"] = save_trained_model(model, tokenizer, "tiny-causal", "causal",
                                             tmp_path_factory.mktemp("gguf_models") / "byte", max_new_tokens=24)
    return _MODELS["byte"]


@pytest.fixture(scope="module")
def service(chat_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chat model exported with ``foremforge export --gguf``."""
    from core.cli import main

    out = tmp_path_factory.mktemp("gguf_service") / "service"
    assert main(["export", "--model", str(chat_model), "--out", str(out), "--gguf", "--quiet"]) == 0
    return out


def _loaded(root: Path) -> tuple[Any, Any, Any]:
    from core.training.predict import load_for_predict

    return load_for_predict(root)


def _write(root: Path, folder: Path, file_type: str = "F16", model: Any = None, **vocab_changes: Any) -> Path:
    """One GGUF file of the model in ``root`` (or of ``model`` with its tokenizer)."""
    from core.exporter.gguf_export import prepare_gguf
    from core.exporter.gguf_writer import write_gguf

    trained, tokenizer, fmt = _loaded(root)
    plan = prepare_gguf(model if model is not None else trained, tokenizer, fmt)
    path = folder / f"model-{file_type}.gguf"
    write_gguf(path, file_type, plan.tensors, plan.hparams, dataclasses.replace(plan.vocab, **vocab_changes), "t",
               fmt.to_dict())
    return path


def _field(path: Path, key: str) -> Any:
    from gguf import GGUFReader

    return GGUFReader(str(path)).get_field(key).contents()


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- the file itself


def test_f16_has_llama_cpp_names_types_hparams_and_rotary_order(chat_model: Path, tmp_path: Path) -> None:
    from gguf import GGMLQuantizationType, GGUFReader

    model, _, _ = _loaded(chat_model)
    path = _write(chat_model, tmp_path)
    reader = GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    per_layer = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "attn_norm",
                 "ffn_norm")
    assert set(tensors) == {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{name}.weight" for i in range(2) for name in per_layer
    }  # tied embeddings: no output.weight
    assert tensors["blk.0.attn_norm.weight"].tensor_type == GGMLQuantizationType.F32
    assert tensors["blk.0.ffn_up.weight"].tensor_type == GGMLQuantizationType.F16
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    for layer in range(2):
        for proj, gguf_name, heads in (("q_proj", "attn_q", 4), ("k_proj", "attn_k", 2)):
            torch_weight = state[f"model.layers.{layer}.self_attn.{proj}.weight"]
            stored = np.asarray(tensors[f"blk.{layer}.{gguf_name}.weight"].data, dtype=np.float32)
            assert stored.shape == torch_weight.shape
            assert not np.allclose(stored, torch_weight, atol=1e-2)  # the rows were reordered
            rows, half = torch_weight.shape[0], torch_weight.shape[0] // heads // 2
            # llama.cpp interleaves each head's rotary pairs; undo it and the trained weights come back.
            undone = stored.reshape(heads, half, 2, -1).swapaxes(1, 2).reshape(rows, -1)
            np.testing.assert_allclose(undone, torch_weight, atol=2e-3)
    np.testing.assert_allclose(np.asarray(tensors["token_embd.weight"].data, dtype=np.float32),
                               state["model.embed_tokens.weight"], atol=2e-3)
    expected = {
        "general.architecture": "llama", "llama.block_count": 2, "llama.embedding_length": 64,
        "llama.feed_forward_length": 128, "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
        "llama.context_length": 512, "llama.rope.dimension_count": 16, "llama.vocab_size": model.config.vocab_size,
        "general.file_type": 1, "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.add_bos_token": False, "tokenizer.ggml.eos_token_id": 2,
    }
    assert {key: _field(path, key) for key in expected} == expected
    assert _field(path, "llama.rope.freq_base") == pytest.approx(model.config.rope_parameters["rope_theta"])
    assert _field(path, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    types = _field(path, "tokenizer.ggml.token_type")
    tokens = _field(path, "tokenizer.ggml.tokens")
    assert [types[tokens.index(t)] for t in ("<|im_end|>", USER_TOKEN, "Ġcosts")] == [3, 4, 1]


@pytest.mark.parametrize("name", ["chat", "byte"])
def test_every_file_type_computes_the_trained_logits(name: str, chat_model: Path, byte_model: Path,
                                                     tmp_path: Path) -> None:
    """Dequantized by transformers' GGUF loader (names, permutation, tied or separate output)."""
    import torch

    from core.exporter.gguf_runtime import TransformersGgufRuntime
    from core.models.prompting import encode_prompt

    root = chat_model if name == "chat" else byte_model
    model, tokenizer, fmt = _loaded(root)
    ids = encode_prompt(tokenizer, fmt, QUESTION)
    with torch.inference_mode():
        expected = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    tolerance = {"F16": 0.02, "Q8_0": 0.1, "Q4_0": 1.0}
    for file_type, atol in tolerance.items():
        got = TransformersGgufRuntime(_write(root, tmp_path, file_type)).logits(ids)
        assert np.max(np.abs(got - expected)) < atol, file_type
    assert ("output.weight" in {t for t in _tensor_names(tmp_path / "model-F16.gguf")}) == (name == "byte")


@pytest.mark.parametrize("rope", [
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 64, "rope_theta": 500000.0},
    {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0},
], ids=["llama3", "linear"])
def test_scaled_rotary_embeddings_compute_the_trained_logits(rope: dict[str, Any], tmp_path: Path) -> None:
    """Llama 3.1's frequency factors (``rope_freqs``) and linear scaling, in each runtime."""
    import torch

    from core.exporter.gguf_export import prepare_gguf
    from core.exporter.gguf_runtime import LlamaCppRuntime, TransformersGgufRuntime
    from core.exporter.gguf_writer import write_gguf
    from core.models.prompting import build_prompt_format, encode_prompt

    tokenizer = build_bpe_tokenizer("gpt-2")
    fmt = build_prompt_format(tokenizer, "causal")
    model = tiny_llama(tokenizer, rope_parameters=rope)
    plain = tiny_llama(tokenizer)
    with torch.no_grad():  # larger weights: logits of a few units, where a wrong rotation shows
        for p, q in zip(model.parameters(), plain.parameters(), strict=True):
            p.mul_(3)
            q.copy_(p)
    plan = prepare_gguf(model, tokenizer, fmt)
    path = tmp_path / "model-F16.gguf"
    write_gguf(path, "F16", plan.tensors, plan.hparams, plan.vocab, "t", fmt.to_dict())
    ids = encode_prompt(tokenizer, fmt, QUESTION * 4)
    with torch.inference_mode():
        expected = model(input_ids=torch.tensor([ids])).logits[0].numpy()
        unscaled = plain(input_ids=torch.tensor([ids])).logits[0].numpy()
    assert np.max(np.abs(unscaled - expected)) > 1.0  # the scaling matters at these positions
    runtimes = [TransformersGgufRuntime(path, model.config.rope_parameters)]
    if llama_cpp_available():
        runtimes.append(LlamaCppRuntime(path, 256))
    for runtime in runtimes:
        assert np.max(np.abs(runtime.logits(ids) - expected)) < 0.1, runtime.checked_in


def test_other_rotary_scalings_are_refused() -> None:
    from transformers import LlamaConfig

    from core.exporter.gguf_writer import llama_hparams

    config = LlamaConfig(rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0})
    with pytest.raises(ExportError, match="supports plain, linear and Llama 3 rotary embeddings; .* 'dynamic'"):
        llama_hparams(config)


def _tensor_names(path: Path) -> list[str]:
    from gguf import GGUFReader

    return [t.name for t in GGUFReader(str(path)).tensors]


def test_not_llama_family_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    from core.exporter.onnx_export import export_real
    from tests.core.export_helpers import make_trained_model

    t5 = make_trained_model("tiny-seq2seq", tmp_path / "t5", steps=0)
    with pytest.raises(ExportError, match=r"^GGUF export supports Llama-family models .*'t5'$"):
        export_real(t5, tmp_path / "service", gguf=True)
    assert not (tmp_path / "service").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["t5"]  # no staging folder left beside it


def test_unsupported_tokenizer_is_one_line(chat_model: Path) -> None:
    from core.exporter.gguf_vocab import read_vocab

    model, tokenizer, fmt = _loaded(chat_model)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec["pre_tokenizer"] = {"type": "Whitespace"}
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    other = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), eos_token="<|im_end|>")
    with pytest.raises(ExportError, match="pre-splits text as Whitespace, which llama.cpp has no name for"):
        read_vocab(other, fmt, model.config.vocab_size)


# --------------------------------------------------------------------------- the gate


def test_files_are_gated_and_the_smallest_passing_one_is_recommended(chat_model: Path, tmp_path: Path) -> None:
    from core.exporter.gguf_check import check_file
    from core.exporter.gguf_export import export_gguf, prepare_gguf
    from core.exporter.gguf_runtime import open_runtime
    from core.exporter.parity_runs import torch_greedy
    from core.models.prompting import encode_prompt

    model, tokenizer, fmt = _loaded(chat_model)
    texts = [json.loads(line)["input"] for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    events: list[Any] = []
    report, warnings = export_gguf(tmp_path / "gguf", prepare_gguf(model, tokenizer, fmt), model, tokenizer, texts,
                                   "t", Gate(), events.append)
    rows = {row.file_type: row for row in report.files}
    assert [r.file for r in report.files] == [f"model-{t}.gguf" for t in ("F16", "Q8_0", "Q4_0")]
    assert rows["Q4_0"].size_mb < rows["Q8_0"].size_mb < rows["F16"].size_mb
    # Checked smallest first: the first that passes is recommended, the larger ones are not checked.
    checked = [r for r in reversed(report.files) if r.checked]
    runtime_name = "llama.cpp 0.3.36" if llama_cpp_available() else "transformers gguf loader"
    assert all(r.checked_in == runtime_name for r in checked) and report.checked_in == runtime_name
    assert checked[-1].passed and not any(r.passed for r in checked[:-1])
    assert report.recommended == checked[-1].file
    for row in report.files[: 3 - len(checked)]:
        assert row.passed is None and "is smaller and answers like the trained model" in row.note
    assert [r.file for r in report.files if r.recommended] == [report.recommended]
    assert modelfile_fields((tmp_path / "gguf" / "Modelfile").read_text())["FROM"] == f"./{report.recommended}"
    assert len(warnings) == sum(r.checked and not r.passed for r in report.files)
    steps = [e.step for e in events if isinstance(e, Progress) and e.stage == "gguf"]
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 8
    readme = (tmp_path / "gguf" / "README.md").read_text()
    assert all(r.file in readme for r in report.files)

    prompts = [encode_prompt(tokenizer, fmt, t) for t in texts]
    runs = [torch_greedy(model, "causal", p, fmt.max_new_tokens, set(fmt.stop_token_ids)) for p in prompts]
    # The F16 file answers exactly like the trained model (checked alone when a smaller file passed).
    runtime = open_runtime(tmp_path / "gguf" / "model-F16.gguf", 256)
    result = check_file(runtime, prompts, runs, fmt.max_new_tokens, set(fmt.stop_token_ids), Gate())
    runtime.close()
    assert result.passed and result.exact_match == 1.0 and not result.stopped_early

    # A file of other weights drifts: the gate fails it.
    stranger = _write(chat_model, tmp_path, model=tiny_llama(tokenizer, seed=7, tied=False))
    runtime = open_runtime(stranger, 256)
    result = check_file(runtime, prompts, runs, fmt.max_new_tokens, set(fmt.stop_token_ids), Gate())
    runtime.close()
    assert not result.passed and result.agreement < 0.5 and result.exact_match == 0.0
    assert result.stopped_early and result.n_compared < len(prompts)  # its verdict was known early


def test_a_gate_no_file_passes_recommends_f16_and_says_so(chat_model: Path, tmp_path: Path) -> None:
    from core.exporter.gguf_export import export_gguf, prepare_gguf

    model, tokenizer, fmt = _loaded(chat_model)
    report, warnings = export_gguf(tmp_path / "gguf", prepare_gguf(model, tokenizer, fmt), model, tokenizer,
                                   [QUESTION], "t", Gate(min_teacher_forced=1.01), lambda event: None)
    assert not any(r.passed for r in report.files)
    assert report.recommended == "model-F16.gguf"
    assert warnings[-1] == "no GGUF file passed the gate; the Modelfile uses the unquantized F16 file"


def test_without_llama_cpp_the_transformers_loader_checks_the_files(
    chat_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.exporter import gguf_check, gguf_runtime
    from core.exporter.gguf_export import export_gguf, prepare_gguf

    monkeypatch.setattr(gguf_runtime, "llama_cpp_available", lambda: False)
    monkeypatch.setattr(gguf_check, "llama_cpp_available", lambda: False)
    model, tokenizer, fmt = _loaded(chat_model)
    events: list[Any] = []
    report, _ = export_gguf(tmp_path / "gguf", prepare_gguf(model, tokenizer, fmt), model, tokenizer, [QUESTION],
                            "t", Gate(), events.append)
    assert {row.checked_in for row in report.files if row.checked} == {"transformers gguf loader"} == {report.checked_in}
    recommended = next(row for row in report.files if row.recommended)
    assert recommended.passed and recommended.exact_match == 1.0
    assert report.tokenization is not None and report.tokenization.skipped == "llama-cpp-python is not installed"
    assert any("install llama-cpp-python to check them in llama.cpp itself" in getattr(e, "message", "")
               for e in events)
    assert "(checked in transformers gguf loader)" in (tmp_path / "gguf" / "README.md").read_text()


# --------------------------------------------------------------------------- prompts


def _modelfile_for(template: str | None) -> tuple[Any, Any, dict[str, str]]:
    """A tokenizer with ``template`` (None: no chat template), its prompt format and the fields of
    the Modelfile written for it."""
    from core.exporter.modelfile import modelfile_text, ollama_template
    from core.models.prompting import build_prompt_format

    tokenizer = build_bpe_tokenizer("gpt-2", template or SMOL_TEMPLATE)
    if template is None:
        tokenizer.chat_template = None
    fmt = build_prompt_format(tokenizer, "causal")
    text = modelfile_text("model-Q8_0.gguf", ollama_template(tokenizer, fmt), ["<|im_end|>"], 512, 128)
    return tokenizer, fmt, modelfile_fields(text)


@pytest.mark.parametrize("template", [SMOL_TEMPLATE, CHATML_TEMPLATE, NO_SYSTEM_TEMPLATE, None],
                         ids=["default-system", "chatml", "no-system-role", "plain"])
def test_modelfile_template_renders_the_training_prompt(template: str | None) -> None:
    """As Ollama renders ``TEMPLATE`` for one question (``.System`` from ``SYSTEM``), character
    for character; a system message the user sets lands where the chat template puts it."""
    tokenizer, fmt, fields = _modelfile_for(template)
    for question in (QUESTION, "Zürich 😀 {{ .Prompt }} 12345?"):
        rendered = render_go_template(fields["TEMPLATE"], fields.get("SYSTEM", ""), question)
        assert rendered == fmt.render(question)
    if template in (SMOL_TEMPLATE, CHATML_TEMPLATE):
        messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": QUESTION}]
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert render_go_template(fields["TEMPLATE"], "Answer briefly.", QUESTION) == expected
    assert ("SYSTEM" in fields) == (template == SMOL_TEMPLATE)
    assert fields["PARAMETER"].splitlines() == ['stop "<|im_end|>"', "num_ctx 512", "num_predict 128",
                                               "temperature 0", "repeat_penalty 1"]


@pytest.mark.parametrize("template", [SMOL_TEMPLATE, CHATML_TEMPLATE, NO_SYSTEM_TEMPLATE, None],
                         ids=["default-system", "chatml", "no-system-role", "plain"])
def test_modelfile_template_renders_a_conversation_as_training_does(template: str | None) -> None:
    """Ollama's chat (``.Messages``): earlier turns and a system message render as training renders them."""
    tokenizer, fmt, fields = _modelfile_for(template)
    turns = [("user", "Hi!"), ("assistant", "Hello, how can I help?"), ("user", QUESTION)]
    default = fields.get("SYSTEM", "")
    assert render_go_template(fields["TEMPLATE"], default, turns) == fmt.render_conversation(None, turns)
    assert render_go_template(fields["TEMPLATE"], "Be brief.", turns) == fmt.render_conversation("Be brief.", turns)


def test_a_template_with_go_braces_is_escaped() -> None:
    from core.exporter.modelfile import ollama_template
    from core.models.prompting import build_prompt_format

    tokenizer = build_bpe_tokenizer("gpt-2", "{{ '{{user}}: ' + messages[0]['content'] + '\n{{bot}}: ' }}")
    fmt = build_prompt_format(tokenizer, "causal")
    template = ollama_template(tokenizer, fmt).template
    assert render_go_template(template, "", QUESTION) == f"{{{{user}}}}: {QUESTION}\n{{{{bot}}}}: "


@pytest.mark.parametrize("name", ["chat", "byte"])
def test_embedded_chat_template_renders_the_training_prompt(name: str, chat_model: Path, byte_model: Path,
                                                            tmp_path: Path) -> None:
    """The GGUF's ``tokenizer.chat_template`` rendered with Jinja, as llama.cpp's ``--jinja`` does."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    root = chat_model if name == "chat" else byte_model
    _, tokenizer, fmt = _loaded(root)
    path = _write(root, tmp_path)
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(_field(path, "tokenizer.chat_template"))
    for question in (QUESTION, "Café 😀\n  code: {'a': 1}"):
        rendered = template.render(messages=[{"role": "user", "content": question}], add_generation_prompt=True,
                                   bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token)
        assert rendered == fmt.render(question)


# --------------------------------------------------------------------------- llama.cpp's tokenizer


@needs_llama_cpp
@pytest.mark.parametrize("pre", ["gpt-2", "smollm", "llama-bpe", "byte"])
def test_llama_cpp_tokenizes_like_the_trained_tokenizer(pre: str, byte_model: Path, tmp_path: Path) -> None:
    from core.exporter.gguf_check import check_tokenization
    from core.exporter.gguf_vocab import read_vocab
    from core.exporter.gguf_writer import llama_hparams, llama_tensors, write_gguf
    from core.models.prompting import build_prompt_format

    if pre == "byte":
        _, tokenizer, fmt = _loaded(byte_model)
    else:
        tokenizer = build_bpe_tokenizer(pre)
        fmt = build_prompt_format(tokenizer, "causal")
    model = tiny_llama(tokenizer)
    hparams = llama_hparams(model.config)
    vocab = read_vocab(tokenizer, fmt, hparams.vocab_size)
    assert vocab.pre == ("gpt-2" if pre == "byte" else pre)
    write_gguf(tmp_path / "m.gguf", "F16", llama_tensors(model, hparams), hparams, vocab, "t", fmt.to_dict())
    texts = [QUESTION, f"Order 12345 for {USER_TOKEN}: 3.5 kg, café 😀", "  spaces\n\nand\ttabs  "]
    result = check_tokenization(tmp_path / "m.gguf", tokenizer, fmt, texts)
    assert result.mismatches == []
    assert result.passed and result.n_matched == result.n_checked == 3 + 5


@needs_llama_cpp
def test_the_tokenizer_check_catches_a_wrong_pre_tokenizer(tmp_path: Path) -> None:
    from core.exporter.gguf_check import check_tokenization
    from core.exporter.gguf_vocab import read_vocab
    from core.exporter.gguf_writer import llama_hparams, llama_tensors, write_gguf
    from core.models.prompting import build_prompt_format

    tokenizer = build_bpe_tokenizer("gpt-2")  # merges digits ("Ġ12"); smollm splits every digit
    fmt = build_prompt_format(tokenizer, "causal")
    model = tiny_llama(tokenizer)
    hparams = llama_hparams(model.config)
    vocab = dataclasses.replace(read_vocab(tokenizer, fmt, hparams.vocab_size), pre="smollm")
    write_gguf(tmp_path / "m.gguf", "F16", llama_tensors(model, hparams), hparams, vocab, "t", fmt.to_dict())
    result = check_tokenization(tmp_path / "m.gguf", tokenizer, fmt, ["Order 12345"])
    assert result.passed is False and result.mismatches


# --------------------------------------------------------------------------- the export


def test_export_gguf_on_the_command_line(service: Path) -> None:
    from core.run_layout import read_export_report
    from core.staging import OWNED_LIST

    report = read_export_report(service)
    assert report.gguf is not None and report.gguf.folder == str(service / "gguf")
    assert [row.file for row in report.gguf.files] == ["model-F16.gguf", "model-Q8_0.gguf", "model-Q4_0.gguf"]
    for row in report.gguf.files:
        assert (service / "gguf" / row.file).stat().st_size == pytest.approx(row.size_mb * 1e6, abs=5e3)
        if row.checked:
            assert row.agreement is not None and row.exact_match is not None and row.tokens_per_s
        else:  # a smaller file passed first
            assert row.passed is None and "is smaller" in row.note
    assert sum(row.checked for row in report.gguf.files) >= 1
    assert modelfile_fields((service / "gguf" / "Modelfile").read_text())["FROM"] == f"./{report.gguf.recommended}"
    readme = (service / "gguf" / "README.md").read_text()
    assert "ollama create my-model -f Modelfile" in readme and f"llama-cli -m {report.gguf.recommended}" in readme
    assert report.gguf.tokenization is not None
    assert report.gguf.tokenization.passed is (True if llama_cpp_available() else None)
    assert "writing and checking GGUF files" in report.durations_s
    assert (service / "onnx" / "model.onnx").is_file()  # the service is built as always
    owned = json.loads((service / OWNED_LIST).read_text())["entries"]
    assert {"gguf", "gguf/Modelfile", "gguf/README.md", "gguf/model-Q4_0.gguf"} <= set(owned)


def test_dry_run_with_gguf_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import main

    stub = tmp_path / "model_stub.json"
    stub.write_text(json.dumps({"model_type": "tinyforge_stub", "n_records": 3}))
    assert main(["export", "--model", str(stub), "--out", str(tmp_path / "svc"), "--gguf", "--export-onnx",
                 "--quiet"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "warning: GGUF export needs a trained model; this is a dry-run stub, so no gguf/ folder is written"
    ]
    assert (tmp_path / "svc" / "onnx" / "model.onnx").is_file() and not (tmp_path / "svc" / "gguf").exists()


def test_missing_gguf_package_is_one_line_and_nothing_is_written(
    chat_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.cli import main

    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf raises ImportError
    assert main(["export", "--model", str(chat_model), "--out", str(tmp_path / "svc"), "--gguf", "--quiet"]) == 1
    assert capsys.readouterr().err.splitlines() == ["Error: GGUF export needs the gguf package: pip install gguf==0.19.0"]
    assert list(tmp_path.iterdir()) == []


def test_a_folder_not_ours_is_refused(chat_model: Path, tmp_path: Path) -> None:
    from core.exporter.builder import build

    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="refusing to replace .* not a TinyForge service folder"):
        build(chat_model, target, overwrite=True, gguf=True)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_cancel_while_writing_gguf_leaves_the_old_output(chat_model: Path, service: Path, tmp_path: Path) -> None:
    import threading

    from core.exporter.builder import build

    target = tmp_path / "service"
    shutil.copytree(service, target)
    before = _snapshot(target)
    token = CancelToken()
    seen: list[str] = []

    def on_event(event: Any) -> None:
        if isinstance(event, Progress) and event.stage == "export":
            seen.append(event.message)
            if event.message == "quantizing to int8":  # the GGUF files are being written meanwhile
                token.cancel()

    with pytest.raises(Cancelled):
        build(chat_model, target, overwrite=True, gguf=True, on_event=on_event, cancel=token)
    assert seen[-1] == "quantizing to int8"
    assert not [t for t in threading.enumerate() if t.name.startswith("gguf-writer")]  # stopped and joined
    assert _snapshot(target) == before
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["service"]


# --------------------------------------------------------------------------- predict


@needs_llama_cpp
def test_predict_with_a_gguf_file_answers_like_the_trained_model(
    chat_model: Path, service: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.cli import main
    from core.training.predict import predict

    for question in (QUESTION, "What is your refund policy?"):
        assert main(["predict", "--model", str(service / "gguf" / "model-F16.gguf"), "--input", question]) == 0
        assert capsys.readouterr().out == predict(chat_model, question) + "\n"


def test_predict_with_a_gguf_file_without_llama_cpp_is_one_line(
    service: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.cli import main
    from core.exporter import gguf_runtime

    monkeypatch.setattr(gguf_runtime, "llama_cpp_available", lambda: False)
    assert main(["predict", "--model", str(service / "gguf" / "model-Q8_0.gguf"), "--input", QUESTION]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("Error: Answering with a GGUF file needs llama.cpp's Python binding: "
                                               "pip install 'tinyforge-studio[gguf]'")
