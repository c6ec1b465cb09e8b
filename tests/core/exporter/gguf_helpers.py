"""Helpers of the GGUF tests: tiny Llama models with real BPE tokenizers and chat templates, and
the subset of Ollama's Go templates a Modelfile of ours uses.

The tiny models are random Llamas (grouped-query attention, tied embeddings like SmolLM2) with a
BPE tokenizer trained in milliseconds on the sample data, so merges, the pre-tokenizer, added
tokens and the chat template all take part, as they do for the starter model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.core.export_helpers import SAMPLE, save_trained_model

# SmolLM2-135M-Instruct's chat template: a default system line when none is given.
SMOL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# ChatML without a default system line: the system block appears only when asked for.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Mistral-like: no system role at all.
NO_SYSTEM_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ raise_exception('no system role') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{% endfor %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
USER_TOKEN = "ACME-42"  # an added token that is not special: llama.cpp's USER_DEFINED
_LLAMA3_SPLIT = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)


def build_bpe_tokenizer(pre: str = "smollm", chat_template: str = SMOL_TEMPLATE) -> Any:
    """A byte-level BPE tokenizer trained on the sample data, pre-splitting text as llama.cpp's
    ``pre`` (gpt-2 | smollm | llama-bpe) does, with SmolLM2's special tokens and ``chat_template``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from core.exporter.gguf_check import TOKENIZER_SAMPLES

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pre != "llama-bpe")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = {
        "gpt-2": byte_level,
        "smollm": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level]),
        "llama-bpe": pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated", invert=False), byte_level]
        ),
    }[pre]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    corpus = [r["input"] + " " + r["output"] for r in records] + list(TOKENIZER_SAMPLES)
    corpus += [f"Order {n} costs {n * 7 % 1000}.{n % 100:02d} dollars" for n in range(200)]
    tok.train_from_iterator(corpus * 3, trainer)
    tok.add_tokens([USER_TOKEN])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
        unk_token="<|endoftext|>", chat_template=chat_template, model_max_length=512,
    )


def tiny_llama(tokenizer: Any, seed: int = 0, tied: bool = True, rope_parameters: dict[str, Any] | None = None) -> Any:
    """A random tiny Llama for ``tokenizer``: 4 query heads sharing 2 key/value heads."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5,
        tie_word_embeddings=tied, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **({"rope_parameters": rope_parameters} if rope_parameters else {}),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config).eval()


def make_chat_model(out: Path, steps: int = 60) -> Path:
    """A training output of a tiny chat Llama (SmolLM2's template), fitted on the sample data."""
    tokenizer = build_bpe_tokenizer()
    return save_trained_model(tiny_llama(tokenizer), tokenizer, "tiny-chat-llama", "causal", out, steps=steps,
                              max_new_tokens=24)


def modelfile_fields(text: str) -> dict[str, str]:
    """``FROM``, ``TEMPLATE``, ``SYSTEM`` and the ``PARAMETER`` lines of a Modelfile (as Ollama
    reads them: triple-quoted values may span lines); parameters repeat, so they are joined."""
    fields: dict[str, str] = {}
    for match in re.finditer(r'^(\w+) (?:"""(.*?)"""|([^\n]*))$', text, flags=re.S | re.M):
        key, value = match.group(1), match.group(2) if match.group(2) is not None else match.group(3)
        fields[key] = f"{fields[key]}\n{value}" if key in fields else value
    return fields


def render_go_template(template: str, system: str, prompt: str | list[tuple[str, str]]) -> str:
    """Render the Go template subset our Modelfiles use as Ollama does: text, ``{{ .System }}``,
    ``{{ .Prompt }}``, ``{{ if .System }}...{{ else }}...{{ end }}``, ``{{ range .Messages }}`` with
    ``{{ if eq .Role "user" }}``/``{{ else if eq .Role "assistant" }}`` and ``{{ .Content }}``, and
    string literals such as ``{{ "{{" }}``. ``prompt`` is one question or (role, content) messages."""
    messages = [("user", prompt)] if isinstance(prompt, str) else list(prompt)
    question = prompt if isinstance(prompt, str) else ""
    parts = re.split(r"(\{\{.*?\}\})", template, flags=re.S)

    def run(i: int, message: tuple[str, str] | None, out: list[str]) -> int:
        """Render parts from ``i`` until an unmatched ``end``/``else``; return that index."""
        while i < len(parts):
            part = parts[i]
            if not (part.startswith("{{") and part.endswith("}}")):
                out.append(part)
                i += 1
                continue
            action = part[2:-2].strip()
            if action == "end" or action.startswith("else"):
                return i
            if action.startswith("if "):
                i = branch(i, message, out)
            elif action == "range .Messages":
                body = i + 1
                for item in messages:
                    i = run(body, item, out)
                if not messages:
                    i = run(body, None, [])
                assert parts[i].strip("{} ") == "end", "range without end"
                i += 1
            else:
                values = {".System": system, ".Prompt": question,
                          ".Content": message[1] if message else "", ".Role": message[0] if message else ""}
                if action in values:
                    out.append(values[action])
                elif action.startswith('"'):
                    out.append(json.loads(action))
                else:
                    raise AssertionError(f"unsupported template action {part!r}")
                i += 1
        return i

    def test(condition: str, message: tuple[str, str] | None) -> bool:
        if condition == ".System":
            return bool(system)
        match = re.fullmatch(r'eq \.Role "(\w+)"', condition)
        assert match, f"unsupported condition {condition!r}"
        return message is not None and message[0] == match.group(1)

    def branch(i: int, message: tuple[str, str] | None, out: list[str]) -> int:
        """An ``if`` chain from part ``i``: render the first branch whose test holds."""
        taken = False
        condition = parts[i][2:-2].strip()[3:]
        while True:
            holds = not taken and (condition == "" or test(condition, message))
            i = run(i + 1, message, out if holds else [])
            taken = taken or holds
            action = parts[i][2:-2].strip()
            if action == "end":
                return i + 1
            condition = action[len("else if "):] if action.startswith("else if ") else ""

    out: list[str] = []
    end = run(0, None, out)
    assert end == len(parts), "unbalanced {{ if }} / {{ end }}"
    return "".join(out)
