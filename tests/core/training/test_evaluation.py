"""evaluation.json after a real training, `foremforge evaluate`, `predict --data`, and the metrics."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.jsonio import read_json
from core.run_layout import SplitMeans
from core.training.evaluate import exact_match, rouge_l_f1, split_indices, verdict
from core.training.hf_train import run_real_training
from core.training.predict import predict
from tests.core.training_helpers import ROOT, SAMPLE, sample_records, tiny_config


def test_rouge_l_and_exact_match() -> None:
    assert rouge_l_f1("the cat sat", "the cat sat") == 1.0
    assert rouge_l_f1("", "anything") == 0.0 and rouge_l_f1("", "") == 1.0
    # LCS "a c" of 3 candidate words and 4 reference words: P 2/3, R 2/4 -> F1 4/7.
    assert rouge_l_f1("a x c", "a b c d") == pytest.approx(4 / 7)
    assert rouge_l_f1("Hello, World!", "hello world") == 1.0  # case and punctuation do not count
    assert exact_match(" Go  to Settings ", "go to settings") and not exact_match("go", "go to")


def test_split_matches_the_trainers_and_parity_helper() -> None:
    from core.exporter.parity_inputs import _held_out

    texts = [f"q{i}" for i in range(36)]
    train, held = split_indices(36, None, 42)
    assert len(held) == 4 and sorted(train + held) == list(range(36))
    assert _held_out(texts, {"seed": 42}) == [texts[i] for i in held]


def test_verdict_says_plainly_what_happened() -> None:
    learned = {"train": SplitMeans(n=36, reproduced=34, tuned_rouge_l=0.93, base_rouge_l=0.12),
               "eval": SplitMeans(n=4, reproduced=0, tuned_rouge_l=0.41, base_rouge_l=0.12)}
    text = verdict(learned)
    assert text.startswith("learned: reproduces 34 of 36 training answers")
    assert "held-out answers closer to the references than the base model's (0.41 vs 0.12)" in text
    not_learned = {"train": SplitMeans(n=36, reproduced=0, tuned_rouge_l=0.13, base_rouge_l=0.12)}
    assert verdict(not_learned).startswith("not learned:") and "no held-out phrasings or records" in verdict(not_learned)


def test_training_writes_an_evaluation_that_shows_learning(tmp_path) -> None:
    out = tmp_path / "out"
    report = run_real_training(tiny_config(out, epochs=300, eval_split=0.34))
    evaluation = read_json(out / "evaluation.json")
    assert report["evaluation"]["verdict"] == evaluation["verdict"]
    train, held = evaluation["splits"]["train"], evaluation["splits"]["eval"]
    assert (train["n"], held["n"]) == (2, 1)
    # The memorised training answers are reproduced word for word; the random base model's are not.
    assert train["tuned_rouge_l"] == 1.0 and train["reproduced"] == 2 and train["tuned_exact"] == 1.0
    assert train["base_rouge_l"] < 0.3 and train["loss"] < train["base_loss"]
    assert held["perplexity"] > 1 and evaluation["verdict"].startswith("learned: reproduces 2 of 2 training answers")
    rows = evaluation["rows"]
    assert {r["split"] for r in rows} == {"train", "eval"} and len(rows) == 3
    by_input = {r["input"]: r for r in rows}
    for record in sample_records():
        row = by_input[record["input"]]
        assert row["reference"] == record["output"]
        if row["split"] == "train":  # the same answers `foremforge predict` gives
            assert row["tuned_answer"] == predict(out, record["input"]) == record["output"]
    assert evaluation["max_new_tokens"] == 128


def test_lora_evaluation_compares_with_the_untouched_base_model(tmp_path) -> None:
    """The base answers come from the same weights with the adapter off: equal to a fresh base model."""
    from core.models.prompting import build_prompt_format
    from core.models.registry import load_base_model, resolve_base_model
    from core.training.predict import generate_answer

    out = tmp_path / "out"
    report = run_real_training(tiny_config(out, lora=True, max_steps=3))
    assert report["recipe"]["lora_targets"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                "down_proj"]
    assert report["config"]["lora"]["r"] == 16 and report["lora_config"]["r"] == 16
    evaluation = read_json(out / "evaluation.json")
    model, tokenizer = load_base_model(resolve_base_model("tiny-causal"), seed=0)
    model.eval()
    fmt = build_prompt_format(tokenizer, "causal", 256)
    for row in evaluation["rows"]:
        assert row["base_answer"] == generate_answer(model, tokenizer, fmt, row["input"])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def test_evaluate_and_predict_on_a_whole_file(tmp_path) -> None:
    out = tmp_path / "out"
    run_real_training(tiny_config(out, epochs=300))
    (out / "evaluation.json").unlink()

    done = _cli("evaluate", "--model", str(out), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["splits"]["train"]["reproduced"] == 3 and (out / "evaluation.json").is_file()

    done = _cli("evaluate", "--model", str(out), "--data", str(SAMPLE))
    assert done.returncode == 0, done.stderr
    assert "3 of 3 answers match their reference" in done.stdout
    assert (out / "evaluations" / "sample_qna.json").is_file()

    done = _cli("predict", "--model", str(out), "--data", str(SAMPLE))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["line"] for r in lines] == [1, 2, 3]
    assert all(r["output"] == r["reference"] for r in lines)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "x", "output": "y"}\n{"input": 5}\n', encoding="utf-8")
    done = _cli("predict", "--model", str(out), "--data", str(bad))
    assert done.returncode == 1 and "line 2" in done.stderr and "Traceback" not in done.stderr
    done = _cli("predict", "--model", str(out))
    assert done.returncode == 2 and "--input" in done.stderr

    # A retrain into the same folder still replaces it whole (the evaluations are ours).
    run_real_training(tiny_config(out, max_steps=1))
    assert not (out / "evaluations").exists()


def test_predict_data_reads_what_the_dataset_scan_reads(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """A ``\\r`` inside a record (JSON whitespace) and a record without a reference: both answered."""
    from core import answering

    data = tmp_path / "mixed.jsonl"
    data.write_bytes(b'{"input": "first",\r "output": "ref"}\n{"input": "second"}\n')
    assert [(n, r["input"]) for n, r in answering.question_records(data)] == [(1, "first"), (2, "second")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "ok"}\n{"output": "no input"}\n', encoding="utf-8")
    from core.training.dataset import DatasetError

    with pytest.raises(DatasetError, match="line 2"):
        list(answering.question_records(bad))


def test_parity_asks_the_held_out_phrasings_of_a_run_with_variants(tmp_path) -> None:  # noqa: ANN001
    """With variants every record trained: the export's parity check asks the phrasings held out
    (questions in other words, where a quantized graph drifts first), not records it trained on."""
    from core.exporter.parity_inputs import parity_texts
    from core.run_layout import ModelManifest, PhrasingRow
    from core.training.variants import write_variants_jsonl

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"input": f"q{i}?", "output": f"a{i}"}) + "\n" for i in range(12)))
    root = tmp_path / "out"
    root.mkdir()
    (root / "training_report.json").write_text(json.dumps({"config": {"data_path": str(data), "seed": 42}}))
    rows = [PhrasingRow(input=f"q{i}?", output=f"a{i}", fact=i, source="original", split="train") for i in range(12)]
    rows += [PhrasingRow(input=f"in other words {i}?", output=f"a{i}", fact=i, source="generated", split="unseen")
             for i in range(3)]
    write_variants_jsonl(root / "variants.jsonl", rows)
    texts, _ = parity_texts(root, ModelManifest(), None)
    assert texts[:3] == ["in other words 0?", "in other words 1?", "in other words 2?"]
    assert set(texts[3:]) <= {f"q{i}?" for i in range(12)} and len(texts) == 12
