"""Real fine-tuning on tiny models: memorising the sample, LoRA outputs, cancel/resume, starter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.events import CancelToken, Progress
from core.jsonio import read_json
from core.training.hf_train import run_real_training
from core.training.predict import predict
from tests.core.training_helpers import ROOT, EventRecorder, sample_records, tiny_config, write_jsonl


def test_importing_training_modules_loads_no_torch() -> None:
    code = (
        "import sys\n"
        "import core.models, core.models.registry, core.models.prompting, core.models.tiny\n"
        "import core.models.starter, core.models.batching\n"
        "import core.training.hf_train, core.training.child_supervisor, core.training.child_main, core.training.predict\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("base", ["tiny-causal", "tiny-seq2seq"])
def test_full_finetune_memorises_the_sample(tmp_path, base) -> None:
    out = tmp_path / "out"
    recorder = EventRecorder()
    report = run_real_training(tiny_config(out, base, epochs=300), on_event=recorder)

    assert report["status"] == "completed"
    for record in sample_records():
        assert predict(out, record["input"], max_new_tokens=128) == record["output"]
    # the model/ subfolder works too
    assert predict(out / "model", sample_records()[0]["input"], max_new_tokens=128) == sample_records()[0]["output"]

    saved = read_json(out / "training_report.json")
    assert saved["status"] == "completed" and saved["n_records"] == 3 and saved["n_train"] == 3
    assert saved["n_eval"] == 0 and saved["world_size"] == 1 and saved["base_model"] == base
    assert len([h for h in saved["log_history"] if "loss" in h]) == 300
    assert saved["tokens_per_second"] > 0 and len(saved["dataset_sha256"]) == 64
    assert set(saved["versions"]) == {"torch", "transformers", "peft"}
    manifest = read_json(out / "model_manifest.json")
    assert manifest["model_type"] == "tinyforge_hf" and manifest["model_dir"] == "model"
    assert manifest["architecture"] == ("seq2seq" if base == "tiny-seq2seq" else "causal")
    assert "lora_applied" not in manifest
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "model" / "tinyforge_prompt.json").is_file()
    assert not (out / "adapter").exists() and not (out / "checkpoints").exists()
    assert not list(tmp_path.glob(".out.*")), "temp folder left beside the output"

    stages = [e.stage for e in recorder.of("stage")]
    assert stages[:3] == ["validate", "load", "train"]
    assert any(e.total == 300 for e in recorder.of("progress"))
    assert any("loss" in e.values for e in recorder.of("metric"))
    assert recorder.of("artifact") and recorder.of("finished")[-1].status == "completed"


def test_same_seed_same_losses(tmp_path) -> None:
    a = run_real_training(tiny_config(tmp_path / "a", max_steps=5))
    b = run_real_training(tiny_config(tmp_path / "b", max_steps=5))
    losses = [[h["loss"] for h in r["log_history"] if "loss" in h] for r in (a, b)]
    assert losses[0] == losses[1] and len(losses[0]) == 5


@pytest.mark.parametrize(("base", "targets", "auto"), [
    ("tiny-causal", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
     "AutoModelForCausalLM"),
    ("tiny-seq2seq", ["q", "k", "v", "o", "wi", "wo"], "AutoModelForSeq2SeqLM"),
])
def test_lora_writes_adapter_and_merged_model(tmp_path, base, targets, auto) -> None:
    import transformers

    out = tmp_path / "out"
    report = run_real_training(tiny_config(out, base, lora=True, max_steps=3))
    assert report["lora_applied"] is True
    # The recipe's LoRA: every linear projection, rank 16, alpha 2 x rank.
    assert report["lora_config"] == {"r": 16, "alpha": 32, "target_modules": targets}
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    manifest = read_json(out / "model_manifest.json")
    assert manifest["lora_config"] == report["lora_config"] and manifest["lora_timestamp"]
    model = getattr(transformers, auto).from_pretrained(out / "model", use_safetensors=True)
    assert not any("lora" in name for name, _ in model.named_parameters())
    transformers.AutoTokenizer.from_pretrained(out / "model")
    assert isinstance(predict(out, "How can I contact support?", max_new_tokens=8), str)


def test_eval_split_and_truncation_report(tmp_path) -> None:
    records = sample_records() * 4  # 12 records: 10 % held out by default
    data = write_jsonl(tmp_path / "twelve.jsonl", records)
    recorder = EventRecorder()
    report = run_real_training(tiny_config(tmp_path / "out", data=data, max_steps=4, max_length=40),
                               on_event=recorder)
    assert report["n_records"] == 12 and report["n_eval"] == 1 and report["n_train"] == 11
    assert any("eval_loss" in h for h in report["log_history"])
    assert report["n_truncated"] == 12
    assert all(h["loss"] > 0 for h in report["log_history"] if "loss" in h)  # answers kept despite the cut
    assert any("longer than max_length" in e.message for e in recorder.of("log"))


def test_cancel_saves_checkpoint_and_resume_continues(tmp_path) -> None:
    out = tmp_path / "out"
    token = CancelToken()

    def cancel_at_three(event) -> None:
        if isinstance(event, Progress) and event.step == 3:
            token.cancel()

    recorder = EventRecorder(cancel_at_three)
    report = run_real_training(tiny_config(out, epochs=20), on_event=recorder, cancel=token)
    assert report["status"] == "cancelled" and report["global_step"] == 3
    assert report["checkpoint"] == "checkpoints/checkpoint-3"
    assert (out / "checkpoints" / "checkpoint-3" / "trainer_state.json").is_file()
    assert read_json(out / "training_report.json")["status"] == "cancelled"
    assert not (out / "model").exists()
    assert recorder.of("finished")[-1].status == "cancelled"

    resumed = run_real_training(tiny_config(out, epochs=20, resume=True))
    assert resumed["status"] == "completed" and resumed["resumed_from"] == "checkpoint-3"
    assert resumed["global_step"] == 20
    assert (out / "model" / "model.safetensors").is_file() and not (out / "checkpoints").exists()


def test_cancel_before_training_writes_nothing(tmp_path) -> None:
    token = CancelToken()
    token.cancel()
    report = run_real_training(tiny_config(tmp_path / "out"), cancel=token)
    assert report["status"] == "cancelled"
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_prompt_format_file_is_plain_json(tmp_path) -> None:
    from core.models.prompting import PromptFormat, load_prompt_format

    out = tmp_path / "out"
    run_real_training(tiny_config(out, max_steps=1))
    raw = json.loads((out / "model" / "tinyforge_prompt.json").read_text(encoding="utf-8"))
    assert raw["architecture"] == "causal" and raw["eos_token_id"] in raw["stop_token_ids"]
    assert load_prompt_format(out / "model") == PromptFormat.from_dict(raw)




REPHRASED_FACTS = Path(__file__).parent / "data" / "rephrased_facts"


@pytest.mark.slow
def test_starter_model_learns_facts_with_the_default_recipe(tmp_path) -> None:
    """``--use-lora`` and nothing else (the recipe picks every setting): the starter model states
    facts it never saw before, asked word for word and asked in words written by hand (never
    trained, never generated)."""
    from core.training.config import LoraSettings, TrainConfig
    from core.training.evaluate import rouge_l_f1

    out = tmp_path / "out"
    config = TrainConfig(data_path=str(REPHRASED_FACTS / "train.jsonl"), output_dir=str(out),
                         lora=LoraSettings(enabled=True), device="cpu",
                         eval_data_path=str(REPHRASED_FACTS / "rephrased.jsonl"))
    report = run_real_training(config)
    assert report["status"] == "completed" and report["total_steps"] >= 40
    assert len(report["lora_config"]["target_modules"]) == 7 and report["recipe"]["chosen"]
    assert report["variants"]["questions"] == 6 and report["variants"]["phrasings_per_question"] >= 5
    assert read_json(out / "model" / "tinyforge_prompt.json")["template"] == "chat"
    evaluation = read_json(out / "evaluation.json")
    train, mine = evaluation["splits"]["train"], evaluation["splits"]["data"]
    assert train["reproduced"] >= 5 and train["tuned_rouge_l"] >= 0.8 > train["base_rouge_l"], evaluation["verdict"]
    assert evaluation["verdict"].startswith("learned:")
    # Asked in other words: the right facts, where the base model states none of them.
    assert mine["n"] == 6 and mine["answered"] >= 3 > mine["base_answered"], evaluation["verdict"]
    records = [json.loads(line) for line in (REPHRASED_FACTS / "train.jsonl").read_text().splitlines()]
    scores = [rouge_l_f1(predict(out, r["input"]), r["output"]) for r in records[:2]]
    assert min(scores) >= 0.8, scores
    _starter_gguf_answers_like_the_trained_model(out, tmp_path / "gguf")


def _starter_gguf_answers_like_the_trained_model(out: Path, folder: Path) -> None:
    """The fine-tuned starter as GGUF, checked in llama.cpp itself (CI sets
    TINYFORGE_REQUIRE_LLAMA_CPP=1): the recommended file passes the gate, llama.cpp tokenizes our
    prompts into our ids, and it answers the dataset's questions, both phrasings, as ``predict``."""
    import os

    from core.events import noop
    from core.exporter.candidates import Gate
    from core.exporter.gguf_export import export_gguf, prepare_gguf
    from core.exporter.gguf_runtime import llama_cpp_available
    from core.exporter.onnx_export import _load_torch_model, resolve_trained_model
    from core.models.prompting import load_prompt_format

    if not llama_cpp_available():
        if os.environ.get("TINYFORGE_REQUIRE_LLAMA_CPP") == "1":
            pytest.fail("TINYFORGE_REQUIRE_LLAMA_CPP=1 but llama-cpp-python is not installed (make installs it)")
        return
    from core.exporter.gguf_predict import gguf_answerer

    model, tokenizer, _ = _load_torch_model(resolve_trained_model(out))
    fmt = load_prompt_format(out / "model")
    questions = [json.loads(line)["input"] for name in ("train.jsonl", "rephrased.jsonl")
                 for line in (REPHRASED_FACTS / name).read_text().splitlines()]
    report, _ = export_gguf(folder, prepare_gguf(model, tokenizer, fmt), model, tokenizer, questions,
                            "starter", Gate(), noop)
    del model
    recommended = next(row for row in report.files if row.recommended)
    assert recommended.passed and recommended.checked_in.startswith("llama.cpp"), report.files
    assert report.tokenization is not None and report.tokenization.passed, report.tokenization
    answer = gguf_answerer(folder / recommended.file)
    same = [answer(q) == predict(out, q) for q in questions]
    assert sum(same) >= 0.9 * len(same), same


def test_local_folder_base_model(tmp_path) -> None:
    """Any HF-format folder works; its architecture comes from its config."""
    from core.models.registry import resolve_base_model
    from core.models.tiny import build_tiny_model

    folder = tmp_path / "my-t5"
    model, tokenizer = build_tiny_model("tiny-seq2seq")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert resolve_base_model(str(folder)).architecture == "seq2seq"
    report = run_real_training(tiny_config(tmp_path / "out", base=str(folder), lora=True, max_steps=1))
    # The recipe's LoRA targets: every linear projection of a T5 block (the head is left out).
    assert report["status"] == "completed" and report["lora_config"]["target_modules"] == ["q", "k", "v", "o", "wi", "wo"]
