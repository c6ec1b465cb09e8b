"""The data shapes people already have: one rule list, tables, conversations as the model sees them."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.models.light_tokenizer import LightTokenizer
from core.models.prompting import (
    build_prompt_format,
    conversation_segments,
    encode_example,
    encode_pair,
)
from core.models.tiny import build_byte_backend
from core.training.dataset import iter_conversations, load_jsonl, validate_file
from core.training.formats import Context, Pair, normalize_row, parse_columns

ROOT = Path(__file__).resolve().parents[3]

# A ChatML template like SmolLM2's (a default system line when none is given).
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# A template that refuses a system message (like some Mistral/Gemma ones).
NO_SYSTEM = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ '[' + message['role'] + '] ' + message['content'] + '</s>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}"
)


def chat_tokenizer(template: str = CHATML) -> LightTokenizer:
    backend = build_byte_backend("causal")
    backend.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    return LightTokenizer(backend, "<|im_end|>" if template == CHATML else "</s>", "<pad>", "<s>", template)


def plain_tokenizer() -> LightTokenizer:
    return LightTokenizer(build_byte_backend("causal"), "</s>", "<pad>", "<s>")


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# One conversation, written in every shape.
QUESTION, ANSWER = "When do you open on Sundays?", "We open at 11 am on Sundays."
SAME_EXCHANGE = {
    "input/output": {"input": QUESTION, "output": ANSWER},
    "messages": {"messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}]},
    "conversations": {"conversations": [{"from": "human", "value": QUESTION}, {"from": "gpt", "value": ANSWER}]},
    "conversations (role/content)": {"conversations": [{"role": "user", "content": QUESTION},
                                                        {"role": "assistant", "content": ANSWER}]},
    "prompt/completion": {"prompt": QUESTION, "completion": ANSWER},
    "prompt/completion (messages)": {"prompt": [{"role": "user", "content": QUESTION}],
                                     "completion": [{"role": "assistant", "content": ANSWER}]},
    "instruction": {"instruction": QUESTION, "input": "", "output": ANSWER},
    "keys in other case": {" Input": QUESTION, "OUTPUT ": ANSWER},
    "content parts": {"messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}]},
                                   {"role": "assistant", "content": ANSWER}]},
}


@pytest.mark.parametrize("tokenizer", [chat_tokenizer(), plain_tokenizer()], ids=["chat", "plain"])
def test_every_shape_of_one_exchange_trains_on_the_same_ids(tmp_path: Path, tokenizer: LightTokenizer) -> None:
    fmt = build_prompt_format(tokenizer, "causal", 128)
    reference = encode_example(tokenizer, fmt, QUESTION, ANSWER, 128)
    for name, row in SAME_EXCHANGE.items():
        path = write_jsonl(tmp_path / f"{name.replace('/', '_')}.jsonl", [row, row])
        report = validate_file(path)
        assert report.valid, (name, report.problems)
        (_, _, conversation), _ = list(iter_conversations(path))
        pair = conversation.pair()
        assert (pair[0], pair[1]) == (QUESTION, ANSWER), name
        assert encode_pair(tokenizer, fmt, pair[0], pair[1], 128, pair.context) == reference, name


SYSTEM = "You answer for Harbor Books."
TURNS = [("user", "Hi!"), ("assistant", "Hello, how can I help?"), ("user", QUESTION), ("assistant", ANSWER)]
SAME_CONVERSATION = {
    "messages": {"messages": [{"role": "system", "content": SYSTEM}] + [{"role": r, "content": c} for r, c in TURNS]},
    "conversations": {"conversations": [{"from": "system", "value": SYSTEM}] + [
        {"from": "human" if r == "user" else "gpt", "value": c} for r, c in TURNS]},
    "prompt/completion": {"prompt": [{"role": "system", "content": SYSTEM}] + [
        {"role": r, "content": c} for r, c in TURNS[:-1]], "completion": [{"role": "assistant", "content": ANSWER}]},
}


def test_a_conversation_renders_as_the_chat_template_and_trains_its_answers(tmp_path: Path) -> None:
    tokenizer = chat_tokenizer()
    fmt = build_prompt_format(tokenizer, "causal", 256)
    messages = [{"role": "system", "content": SYSTEM}] + [{"role": r, "content": c} for r, c in TURNS]
    whole = tokenizer.apply_chat_template(messages).removesuffix("\n")  # training ends at the answer's end token
    encoded = []
    for name, row in SAME_CONVERSATION.items():
        path = write_jsonl(tmp_path / f"{name.replace('/', '_')}.jsonl", [row])
        (_, rule, conversation), = iter_conversations(path)
        assert conversation.system == SYSTEM and list(conversation.turns) == TURNS, name
        pair = conversation.pair()
        assert pair.context == Context(SYSTEM, tuple(TURNS[:2]))
        encoded.append(encode_pair(tokenizer, fmt, pair[0], pair[1], 256, pair.context))
    assert all(e == encoded[0] for e in encoded)
    ex = encoded[0]
    assert ex.input_ids == tokenizer(whole, add_special_tokens=False)["input_ids"]
    trained = [i for i, label in zip(ex.input_ids, ex.labels, strict=True) if label != -100]
    both = tokenizer("Hello, how can I help?<|im_end|>" + ANSWER + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert trained == both  # every assistant answer and its end token, nothing else
    last = encode_pair(tokenizer, fmt, pair[0], pair[1], 256, pair.context, loss_on="last")
    assert [i for i, label in zip(last.input_ids, last.labels, strict=True) if label != -100] == tokenizer(
        ANSWER + "<|im_end|>", add_special_tokens=False)["input_ids"]
    # the generation prompt of the last question is the training text up to its answer
    prompt = fmt.render_conversation(SYSTEM, TURNS[:-1])
    assert whole.startswith(prompt) and whole[len(prompt):] == ANSWER + "<|im_end|>"


def test_a_long_conversation_keeps_its_last_answer_and_drops_its_start() -> None:
    tokenizer = chat_tokenizer()
    fmt = build_prompt_format(tokenizer, "causal", 64)
    history = tuple(TURNS[:2]) * 6
    ex = encode_pair(tokenizer, fmt, QUESTION, ANSWER, 64, Context(SYSTEM, history))
    assert ex.truncated and len(ex.input_ids) == 64 and ex.n_tokens > 64
    answer_ids = tokenizer(ANSWER + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert ex.input_ids[-len(answer_ids):] == answer_ids and ex.labels[-len(answer_ids):] == answer_ids


def test_one_question_renders_as_the_single_prompt_and_a_template_without_system_role_opens_with_it() -> None:
    for tokenizer in (chat_tokenizer(), plain_tokenizer(), chat_tokenizer(NO_SYSTEM)):
        fmt = build_prompt_format(tokenizer, "causal", 128)
        assert fmt.render_conversation(None, [("user", QUESTION)]) == fmt.render(QUESTION)
    fmt = build_prompt_format(chat_tokenizer(NO_SYSTEM), "causal", 128)
    assert fmt.render_conversation(SYSTEM, [("user", QUESTION)]) == f"[user] {SYSTEM}\n\n{QUESTION}</s>[assistant] "
    pieces = conversation_segments(fmt, None, TURNS)
    assert "".join(p.text for p in pieces) == "".join(f"[{r}] {c}</s>" for r, c in TURNS)


def test_a_pair_keeps_its_context_through_pickling_and_is_still_a_pair() -> None:
    pair = Pair("q", "a", Context("s", (("user", "x"), ("assistant", "y"))))
    question, answer = pair
    assert (question, answer) == ("q", "a") and pair == ("q", "a")
    again = pickle.loads(pickle.dumps(pair))
    assert again.context == pair.context and tuple(again) == ("q", "a")


def test_alpaca_input_joins_the_instruction_and_its_system_is_kept() -> None:
    rule, conv = normalize_row({"Instruction": "Translate to French", "input": "cat", "output": "chat",
                                "system": "Be terse."})
    assert rule == "instruction" and conv.question == "Translate to French\n\ncat" and conv.system == "Be terse."


@pytest.mark.parametrize(("row", "kind", "words"), [
    ({"messages": [{"role": "user", "content": "q"}]}, "bad_conversation", "end with an assistant answer"),
    ({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}, "bad_conversation",
     "expected user"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"},
                   {"role": "assistant", "content": "a"}]}, "bad_conversation", "may only come first"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]}, "bad_conversation",
     "role 'bot'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "a"}]}, "bad_conversation",
     "role 'tool'"),
    ({"messages": "hello"}, "bad_conversation", "must be a list"),
    ({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]}, "not_string", "content"),
    ({"chosen": "a", "rejected": "b"}, "unsupported_format", "preference data"),
    ({"text": "once upon a time"}, "unsupported_format", "bare 'text'"),
    ({"q": "x", "a": "y"}, "unknown_format", "--columns"),
    ({"instruction": "x"}, "missing_field", "'output'"),
    ({"prompt": "x"}, "missing_field", "'completion'"),
    ({"input": "q", "output": "a", "messages": [{"role": "user", "content": "other"},
                                                 {"role": "assistant", "content": "a"}]},
     "ambiguous_row", "input/output and the messages rule"),
])
def test_a_row_that_fits_no_rule_gets_one_line_with_its_number(tmp_path: Path, row: Any, kind: str,
                                                                words: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"input": "a", "output": "b"}, row] if kind != "ambiguous_row" else [
        row, row])
    report = validate_file(path)
    assert not report.valid
    problem = report.problems[0]
    assert problem.kind == kind and words in problem.message, problem
    assert problem.line == (1 if kind == "ambiguous_row" else 2)
    assert "\n" not in problem.message


def test_the_same_conversation_under_two_rules_is_one_row(tmp_path: Path) -> None:
    row = {"input": "q", "output": "a", "messages": [{"role": "user", "content": "q"},
                                                     {"role": "assistant", "content": "a"}]}
    assert validate_file(write_jsonl(tmp_path / "d.jsonl", [row])).valid


def test_a_file_that_mixes_formats_is_refused_with_the_lines(tmp_path: Path) -> None:
    chat = SAME_EXCHANGE["messages"]
    rows = [chat] * 4 + [SAME_EXCHANGE["instruction"], chat, SAME_EXCHANGE["input/output"]]
    report = validate_file(write_jsonl(tmp_path / "d.jsonl", rows))
    assert not report.valid and report.format == "messages"
    assert report.format_counts == {"messages": 5, "instruction": 1, "input/output": 1}
    found = {p.line: p.message for p in report.problems if p.kind == "mixed_formats"}
    assert set(found) == {5, 7}
    assert "instruction rows (line 5) in a file of messages rows (first at line 1)" in found[5]


def test_the_scan_in_parallel_workers_reads_every_format_the_same(tmp_path: Path) -> None:
    rows = [SAME_CONVERSATION["messages"], SAME_EXCHANGE["messages"]] * 400
    path = write_jsonl(tmp_path / "big.jsonl", rows + [{"messages": [{"role": "user", "content": "q"}]}])
    one, two = validate_file(path, workers=1), validate_file(path, workers=2)
    assert one.model_dump(exclude={"path"}) == two.model_dump(exclude={"path"})
    assert one.format_counts == {"messages": 800} and one.problems[0].line == 801


def test_jsonl_numbers_stay_a_problem_and_load_jsonl_reads_any_format(tmp_path: Path) -> None:
    report = validate_file(write_jsonl(tmp_path / "n.jsonl", [{"input": 5, "output": "b"}]))
    assert report.problems[0].kind == "not_string"
    path = write_jsonl(tmp_path / "m.jsonl", [SAME_CONVERSATION["messages"], SAME_EXCHANGE["input/output"]])
    first, second = load_jsonl(path)
    assert first == {"input": QUESTION, "output": ANSWER, "system": SYSTEM,
                     "history": [{"role": r, "content": c} for r, c in TURNS[:2]]}
    assert second == SAME_EXCHANGE["input/output"]


# ----------------------------------------------------------------------------- tables


def test_csv_quoting_newlines_bom_and_a_header_that_fits(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_bytes(b'\xef\xbb\xbfinput,output,notes\r\n"Hours, please?","Nine to five.\nClosed Sundays.",x\r\n'
                     b"\r\nWi-Fi?,HarborGuest,\r\n")
    report = validate_file(path)
    assert report.valid and report.n_records == 2 and report.format == "input/output"
    rows = list(iter_conversations(path))
    assert [line for line, _, _ in rows] == [2, 5]
    assert rows[0][2].question == "Hours, please?" and rows[0][2].answer == "Nine to five.\nClosed Sundays."


def test_a_tsv_in_utf16_is_read_and_a_header_that_fits_no_rule_asks_for_columns(tmp_path: Path) -> None:
    path = tmp_path / "faq.tsv"
    path.write_text("Frage\tAntwort\nÖffnungszeiten?\tNeun bis fünf.\n", encoding="utf-16")
    report = validate_file(path)
    assert not report.valid and len(report.problems) == 1
    assert report.problems[0].line == 1 and "--columns question=COLUMN,answer=COLUMN" in report.problems[0].message
    columns = parse_columns("question=Frage, answer=Antwort")
    report = validate_file(path, columns=columns)
    assert report.valid and report.n_records == 1
    (_, _, conversation), = iter_conversations(path, columns)
    assert (conversation.question, conversation.answer) == ("Öffnungszeiten?", "Neun bis fünf.")


@pytest.mark.parametrize(("content", "line", "words"), [
    ('input,output\n"a,b\n', 2, "cannot be read"),
    ("input,output\na,b,c\n", 2, "3 cells"),
    ("input,input\na,b\n", 1, "twice"),
    ("input,\na,b\n", 1, "no name"),
])
def test_a_broken_table_row_names_its_line(tmp_path: Path, content: str, line: int, words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    report = validate_file(path)
    assert not report.valid and report.problems[0].line == line and words in report.problems[0].message


def test_a_json_array_reads_numbers_as_text_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "faq.json"
    path.write_text(json.dumps([{"instruction": "Room count?", "output": 42}, {"instruction": "x", "output": "y"}]))
    report = validate_file(path)
    assert report.valid and report.format == "instruction"
    assert report.warnings[0].kind == "number_as_text" and report.warnings[0].line == 1
    path.write_text(json.dumps({"a": 1}))
    assert "array of objects" in validate_file(path).problems[0].message


def test_a_bad_column_mapping_is_one_line() -> None:
    with pytest.raises(ValueError, match="name the answer column"):
        parse_columns("question=Q")
    with pytest.raises(ValueError, match="unknown role 'reply'"):
        parse_columns("question=Q,reply=A")


# ----------------------------------------------------------------------------- commands


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                            "HOME": str(cwd), "TINYFORGE_GRAPH_CACHE": "off"})


def test_validate_prints_the_format_and_token_lengths(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "chat.jsonl", [SAME_CONVERSATION["messages"]] * 3)
    done = run_cli("validate", "--data", str(path), "--base-model", "tiny-causal", "--max-length", "64",
                   "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "format: messages (OpenAI / TRL chat), 3 of 3 rows" in done.stdout
    assert "would be truncated at max_length 64" in done.stdout  # the byte-level tiny model: a token a byte
    table = tmp_path / "faq.csv"
    table.write_text("Q,A\nhi,there\n")
    done = run_cli("validate", "--data", str(table), "--quiet", cwd=tmp_path)
    assert done.returncode == 1 and "--columns question=COLUMN,answer=COLUMN" in done.stdout


def test_train_on_a_csv_with_columns_and_on_conversations(tmp_path: Path) -> None:
    table = tmp_path / "faq.csv"
    table.write_text("Q,A\n" + "".join(f"question {i}?,answer {i}.\n" for i in range(6)))
    done = run_cli("train", "--data", str(table), "--out", str(tmp_path / "run"), "--base-model", "tiny-causal",
                   "--columns", "question=Q,answer=A", "--max-steps", "2", "--no-variants", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "run" / "training_report.json").read_text())
    assert report["config"]["columns"] == {"question": "Q", "answer": "A"}
    chat = write_jsonl(tmp_path / "chat.jsonl", [SAME_CONVERSATION["messages"]] * 4 + [SAME_EXCHANGE["messages"]] * 4)
    done = run_cli("train", "--data", str(chat), "--out", str(tmp_path / "chat_run"), "--base-model", "tiny-causal",
                   "--max-steps", "2", "--variants", "1", "--loss-on", "last", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    evaluation = json.loads((tmp_path / "chat_run" / "evaluation.json").read_text())
    assert any(row["input"] == QUESTION for row in evaluation["rows"])
    ask = write_jsonl(tmp_path / "ask.jsonl", [
        {"messages": [{"role": "system", "content": SYSTEM}] + [{"role": r, "content": c} for r, c in TURNS[:-1]]},
        SAME_EXCHANGE["conversations"], {"input": "plain question"}])
    done = run_cli("predict", "--model", str(tmp_path / "chat_run"), "--data", str(ask), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["input"] for r in rows] == [QUESTION, QUESTION, "plain question"]
    assert "reference" not in rows[0] and rows[1]["reference"] == ANSWER


def test_a_row_to_answer_may_end_on_its_question() -> None:
    from core.training.formats import FormatProblem, question_row

    asked = question_row({"messages": [{"role": "system", "content": SYSTEM}] + [
        {"role": r, "content": c} for r, c in TURNS[:-1]]})
    assert asked == {"input": QUESTION, "context": Context(SYSTEM, tuple(TURNS[:2]))}
    with pytest.raises(FormatProblem, match="expected user"):
        question_row({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]})


def test_follow_ups_train_as_often_as_a_questions_phrasings_and_the_evaluation_shows_their_context(
        tmp_path: Path) -> None:
    from core.training.hf_train import run_real_training
    from tests.core.training_helpers import tiny_config

    singles = [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
                             {"role": "assistant", "content": a}]}
               for q, a in (("What are your opening hours?", "From 9 to 5."), ("How much is a day pass?", "12 pounds."),
                            ("Where is the shop?", "On Mill Lane."))]
    data = write_jsonl(tmp_path / "chat.jsonl", singles + [SAME_CONVERSATION["messages"]])
    out = tmp_path / "out"
    report = run_real_training(tiny_config(out, data=str(data), variants=1, epochs=1.0))
    phrasings, repeats = report["variants"]["n_train_phrasings"], report["variants"]["follow_up_repeats"]
    assert repeats == max(1, round(phrasings / 3)) > 1 and report["variants"]["n_follow_ups"] == 1
    assert report["n_train_pairs"] == phrasings + repeats
    rows = json.loads((out / "evaluation.json").read_text())["rows"]
    follow_up = next(r for r in rows if r["input"] == QUESTION)
    assert follow_up["system"] == SYSTEM and follow_up["history"][0] == {"role": "user", "content": "Hi!"}
    assert all(r["system"] == SYSTEM for r in rows)  # the singles' phrasings keep their system message


REAL_TOOL_FILES = {  # written after each tool's documented format (tests/core/training/data/formats)
    "openai_chat.jsonl": ("messages", None),
    "sharegpt.json": ("conversations", None),
    "alpaca_data.json": ("instruction", None),
    "trl_prompt_completion.jsonl": ("prompt/completion", None),
    "faq_excel.csv": ("input/output", "question=Question,answer=Answer"),
}


@pytest.mark.parametrize("name", sorted(REAL_TOOL_FILES))
def test_files_in_real_tools_formats_train_with_no_change_but_the_file(tmp_path: Path, name: str) -> None:
    from core.training.hf_train import run_real_training
    from tests.core.training_helpers import tiny_config

    rule, columns = REAL_TOOL_FILES[name]
    path = ROOT / "tests" / "core" / "training" / "data" / "formats" / name
    mapping = parse_columns(columns) or None
    report = validate_file(path, columns=mapping)
    assert report.valid and report.format == rule, report.problems
    trained = run_real_training(tiny_config(tmp_path / "out", data=path, max_steps=1, columns=mapping))
    assert trained["status"] == "completed" and trained["n_records"] == report.n_records
    assert (tmp_path / "out" / "evaluation.json").is_file()
