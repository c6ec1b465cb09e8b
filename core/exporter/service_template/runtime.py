"""Greedy text generation with ONNX Runtime, ``tokenizers`` and numpy only (no torch).

This file is copied into every exported service folder and is also what
``core.exporter.onnx_predict`` loads, so the service and ``foremforge predict`` share one
implementation. It reads, relative to the service folder:

* ``onnx/model.onnx.meta.json`` -> ``runtime``: architecture, graph files per precision,
  input/output names, cache layout, stop ids;
* ``tokenizer.json`` and ``tinyforge_prompt.json``: how an input (or a conversation, see
  :func:`render_conversation`) becomes ids and when to stop.

Decoder-only models use one graph for prefill and decode steps (``input_ids``,
``attention_mask``, ``position_ids``, ``past_key_values.N.key/value`` -> ``logits``,
``present.N.key/value``). Encoder-decoder models use ``encoder.onnx`` once, then the decoder
graph with a self-attention cache.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

META_FILE = "onnx/model.onnx.meta.json"
PROMPT_FILE = "tinyforge_prompt.json"
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_MAX_PROMPT_TOKENS = 2048
DEFAULT_MAX_NEW_TOKENS = 128

__all__ = [
    "Completion",
    "OnnxGenerator",
    "RuntimeFormatError",
    "available_precisions",
    "confidence_from_logprobs",
    "default_precision",
    "render_conversation",
    "split_system",
]
_TURN_KEYS = ("system_prefix", "system_to_user", "user_to_assistant", "assistant_to_user")


class RuntimeFormatError(ValueError):
    """The folder is not an exported TinyForge ONNX service (or lacks the asked precision)."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:
        raise RuntimeFormatError(f"{path.name} not found in {path.parent}: not an exported ONNX service") from exc
    except ValueError as exc:
        raise RuntimeFormatError(f"{path} is not valid JSON: {exc}") from exc


def available_precisions(service_dir: str | os.PathLike[str]) -> list[str]:
    """The precisions whose graph files all exist in ``service_dir``."""
    root = Path(service_dir)
    meta = _read_json(root / META_FILE).get("runtime") or {}
    found = []
    for precision, graphs in (meta.get("graphs") or {}).items():
        if graphs and all((root / rel).is_file() for rel in graphs.values()):
            found.append(precision)
    return found


def default_precision(service_dir: str | os.PathLike[str]) -> str:
    """``$TINYFORGE_PRECISION`` if set, else the export's ``served_precision`` (the fastest graph
    that passed the parity gate), else fp32."""
    wanted = os.environ.get("TINYFORGE_PRECISION", "").strip().lower()
    if wanted:
        return wanted
    served = (_read_json(Path(service_dir) / META_FILE).get("runtime") or {}).get("served_precision")
    found = available_precisions(service_dir)
    return served if served in found else "fp32"


def session_options(threads: int | None = None) -> Any:
    """Session options tuned for small-batch CPU generation: full graph optimisation, one
    sequential executor, ``threads`` intra-op threads (``$TINYFORGE_THREADS``, else all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is None:
        threads = int(os.environ.get("TINYFORGE_THREADS", "0") or 0)
    options.intra_op_num_threads = max(0, int(threads))  # 0: ONNX Runtime picks (physical cores)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def render_conversation(prompt: Mapping[str, Any], system: str | None, turns: Sequence[tuple[str, str]]) -> str:
    """The prompt text of a conversation ending on a user message, per ``tinyforge_prompt.json``.

    The head is ``prompt_prefix`` without a system message, else ``system_prefix + system +
    system_to_user``; each user message is followed by ``user_to_assistant``, each assistant
    message by ``assistant_to_user`` (seq2seq: an earlier user message ends its line instead; the
    encoder has no answer header). Prompt files without ``turns`` get a plain frame (earlier
    turns on their own lines). One user message renders as ``prompt_prefix + text +
    prompt_suffix``. This is TinyForge's ``PromptFormat.render_conversation``, which this
    standalone folder cannot import; a test keeps the two equal.
    """
    prefix = str(prompt.get("prompt_prefix", ""))
    saved = prompt.get("turns")
    if saved:
        between = {key: str(saved[key]) for key in _TURN_KEYS}
    else:
        between = {"system_prefix": "", "system_to_user": "\n" + prefix,
                   "user_to_assistant": str(prompt.get("prompt_suffix", "")), "assistant_to_user": "\n" + prefix}
    parts = [prefix if system is None else between["system_prefix"] + system + between["system_to_user"]]
    seq2seq = prompt.get("architecture") == "seq2seq"
    for n, (role, content) in enumerate(turns):
        if role == "assistant":
            after = between["assistant_to_user"]
        else:
            after = "\n" if seq2seq and n < len(turns) - 1 else between["user_to_assistant"]
        parts += [content, after]
    return "".join(parts)


def split_system(messages: Sequence[tuple[str, str]]) -> tuple[str | None, list[tuple[str, str]]]:
    """``(system text or None, the user/assistant turns)`` of ``(role, content)`` messages."""
    if messages and messages[0][0] == "system":
        return messages[0][1], list(messages[1:])
    return None, list(messages)


@dataclass
class GenerationStats:
    """Timings of one generation: prompt tokens, generated tokens, per-step milliseconds, and
    why it ended (``stop``: a stop token; ``length``: the token budget or the context;
    ``cancelled``: the caller asked to stop)."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    prefill_ms: float = 0.0
    step_ms: list[float] = field(default_factory=list)
    finish: str = ""


@dataclass(frozen=True)
class Completion:
    """One answer to a conversation, with what an OpenAI-style client reports about it."""

    text: str
    confidence: float
    finish_reason: str  # "stop" (the model ended its answer) or "length" (cut by the token budget)
    prompt_tokens: int
    completion_tokens: int


class OnnxGenerator:
    """Loads the graphs of one precision and generates greedily, exactly like torch ``predict``.

    Thread-safe: ONNX Runtime sessions may be shared; a lock keeps one generation at a time so
    two requests do not fight for the same cores.
    """

    def __init__(self, service_dir: str | os.PathLike[str], precision: str = "int8", threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.root = Path(service_dir).resolve()
        meta = _read_json(self.root / META_FILE)
        self.meta = meta
        runtime = meta.get("runtime")
        if not isinstance(runtime, dict):
            raise RuntimeFormatError(f"{self.root / META_FILE} has no 'runtime' section: not a real ONNX export")
        precision = precision.lower()
        graphs = (runtime.get("graphs") or {}).get(precision)
        if not graphs:
            have = ", ".join(sorted((runtime.get("graphs") or {}).keys())) or "none"
            raise RuntimeFormatError(f"precision {precision!r} was not exported to {self.root} (available: {have})")
        self.precision = precision
        self.runtime = runtime
        self.architecture = runtime["architecture"]
        self.prompt = _read_json(self.root / PROMPT_FILE)
        tokenizer_path = self.root / TOKENIZER_FILE
        if not tokenizer_path.is_file():
            raise RuntimeFormatError(f"{TOKENIZER_FILE} not found in {self.root}")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        stops = self.prompt.get("stop_token_ids") or [self.prompt.get("eos_token_id")]
        stops = list(stops) + list(runtime.get("stop_token_ids") or [])
        self.stop_ids = {int(i) for i in stops if i is not None}
        # The default answer length, saved with the prompt format at training time: the same
        # for the service, ``foremforge predict``, the playground and the evaluation.
        self.max_new_tokens = int(self.prompt.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
        self.n_layers = int(runtime["num_layers"])
        self.kv_heads = int(runtime["num_kv_heads"])
        self.head_dim = int(runtime["head_dim"])
        self.max_positions = runtime.get("max_positions")
        # Long prompts are cut (keeping their start and the prompt's closing template tokens) so a
        # 10,000-character input cannot exhaust memory in attention; torch ``predict`` does not cut,
        # so answers to prompts longer than this may differ.
        cap = int(runtime.get("max_prompt_tokens") or DEFAULT_MAX_PROMPT_TOKENS)
        if self.max_positions:
            cap = min(cap, int(self.max_positions) - 1)
        self.max_prompt_tokens = max(1, cap)
        options = session_options(threads)
        providers = ["CPUExecutionProvider"]
        self.sessions: dict[str, Any] = {}
        for role, rel in graphs.items():
            path = self.root / rel
            if not path.is_file():
                raise RuntimeFormatError(f"graph file missing: {path}")
            self.sessions[role] = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.decoder = self.sessions["decoder"]
        self.encoder = self.sessions.get("encoder")
        if self.architecture == "seq2seq" and self.encoder is None:
            raise RuntimeFormatError("a seq2seq export needs an encoder graph")
        self._past_names = [f"past_key_values.{i}.{kind}" for i in range(self.n_layers) for kind in ("key", "value")]
        # Ask for outputs by name, in the order the past inputs are fed back.
        self._output_names = ["logits"] + [
            f"present.{i}.{kind}" for i in range(self.n_layers) for kind in ("key", "value")
        ]
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ text <-> ids

    def encode(self, text: str) -> list[int]:
        """Prompt ids for ``text``, per the saved prompt format."""
        rendered = f"{self.prompt.get('prompt_prefix', '')}{text}{self.prompt.get('prompt_suffix', '')}"
        add_special = bool(self.prompt.get("add_special_tokens", True))
        return list(self.tokenizer.encode(rendered, add_special_tokens=add_special).ids)

    def encode_messages(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        """Prompt ids for ``(role, content)`` messages (an optional system message first, then
        user and assistant turns ending on a user message), per :func:`render_conversation`."""
        system, turns = split_system(messages)
        rendered = render_conversation(self.prompt, system, turns)
        add_special = bool(self.prompt.get("add_special_tokens", True))
        return list(self.tokenizer.encode(rendered, add_special_tokens=add_special).ids)

    def fit_messages(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        """Prompt ids for ``messages``, within ``max_prompt_tokens``: one user message is cut as
        :meth:`fit_prompt` cuts an input (so it answers as ``/predict`` does); a longer
        conversation loses its oldest tokens first, as training cuts conversations."""
        ids = self.encode_messages(messages)
        if len(messages) == 1:
            return self.fit_prompt(ids)
        return ids[-self.max_prompt_tokens:]

    def fit_prompt(self, ids: list[int]) -> list[int]:
        """``ids`` cut to ``max_prompt_tokens``: the start, then the template's closing tokens."""
        if len(ids) <= self.max_prompt_tokens:
            return ids
        tail = min(len(self.encode("")), self.max_prompt_tokens // 2)
        head = self.max_prompt_tokens - tail
        return ids[:head] + (ids[-tail:] if tail else [])

    def decode(self, ids: list[int]) -> str:
        """Generated ids to the answer: special tokens skipped, whitespace stripped."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True).strip()

    # ------------------------------------------------------------------ one step at a time

    def _empty_past(self) -> list[np.ndarray]:
        shape = (1, self.kv_heads, 0, self.head_dim)
        return [np.zeros(shape, dtype=np.float32) for _ in range(2 * self.n_layers)]

    def start(self, prompt_ids: list[int]) -> tuple[dict[str, Any], np.ndarray]:
        """Run the prompt; return the generation state and the logits of the next token."""
        state: dict[str, Any] = {"past": self._empty_past(), "length": 0}
        if self.architecture == "seq2seq":
            ids = np.asarray([prompt_ids], dtype=np.int64)
            mask = np.ones_like(ids)
            (hidden,) = self.encoder.run(None, {"input_ids": ids, "attention_mask": mask})
            state["encoder_hidden_states"] = hidden
            state["encoder_attention_mask"] = mask
            start_id = self.prompt.get("decoder_start_token_id")
            if start_id is None:
                start_id = self.prompt.get("pad_token_id", 0)
            return state, self._decode_step(state, [int(start_id)])
        return state, self._decode_step(state, list(prompt_ids))

    def step(self, state: dict[str, Any], token: int) -> np.ndarray:
        """Feed one generated token; return the logits of the next one."""
        return self._decode_step(state, [int(token)])

    def _decode_step(self, state: dict[str, Any], ids: list[int]) -> np.ndarray:
        past_len = int(state["length"])
        input_ids = np.asarray([ids], dtype=np.int64)
        if self.architecture == "seq2seq":
            feeds = {
                "decoder_input_ids": input_ids,
                "encoder_hidden_states": state["encoder_hidden_states"],
                "encoder_attention_mask": state["encoder_attention_mask"],
            }
        else:
            total = past_len + len(ids)
            feeds = {
                "input_ids": input_ids,
                "attention_mask": np.ones((1, total), dtype=np.int64),
                "position_ids": np.arange(past_len, total, dtype=np.int64).reshape(1, -1),
            }
        feeds.update(zip(self._past_names, state["past"], strict=True))
        outputs = self.decoder.run(self._output_names, feeds)
        state["past"] = outputs[1:]
        state["length"] = past_len + len(ids)
        return outputs[0][0, -1]

    # ------------------------------------------------------------------ generation

    def generate_ids(
        self,
        prompt_ids: list[int],
        max_new_tokens: int | None = None,
        stop_at_eos: bool = True,
        stats: GenerationStats | None = None,
        logprobs: list[float] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[int]:
        """Greedy ids after the prompt (stop id excluded), at most ``max_new_tokens`` (default:
        the model's saved answer length).

        With ``logprobs`` given, the log-probability of every chosen token (the stop token
        included when generation ends on one) is appended to it.
        """
        generated: list[int] = []
        if max_new_tokens is None:
            max_new_tokens = self.max_new_tokens
        if max_new_tokens <= 0:
            if stats is not None:
                stats.finish = "length"
            return generated
        with self._lock:
            started = time.perf_counter()
            state, logits = self.start(prompt_ids)
            if stats is not None:
                stats.prompt_tokens = len(prompt_ids)
                stats.prefill_ms = (time.perf_counter() - started) * 1000
            while True:
                token = int(np.argmax(logits))
                if logprobs is not None:
                    logprobs.append(_log_softmax_at(logits, token))
                if stop_at_eos and token in self.stop_ids:
                    finish = "stop"
                    break
                generated.append(token)
                if len(generated) >= max_new_tokens or self._context_full(state):
                    finish = "length"
                    break
                if should_stop is not None and should_stop():  # the caller no longer wants it
                    finish = "cancelled"
                    break
                started = time.perf_counter()
                logits = self.step(state, token)
                if stats is not None:
                    stats.step_ms.append((time.perf_counter() - started) * 1000)
        if stats is not None:
            stats.new_tokens = len(generated)
            stats.finish = finish
        return generated

    def _context_full(self, state: dict[str, Any]) -> bool:
        return bool(self.max_positions) and int(state["length"]) + 1 >= int(self.max_positions)

    def generate(self, text: str, max_new_tokens: int | None = None) -> str:
        """The greedy answer to ``text`` (the same string torch ``predict`` gives in fp32)."""
        return self.decode(self.generate_ids(self.fit_prompt(self.encode(text)), max_new_tokens))

    def generate_with_confidence(self, text: str, max_new_tokens: int | None = None,
                                 should_stop: Callable[[], bool] | None = None) -> tuple[str, float]:
        """The greedy answer to ``text`` and its confidence in [0, 1]: the geometric mean of the
        probabilities of the tokens chosen (the stop token included when the answer ends on it)."""
        logprobs: list[float] = []
        if should_stop is not None and should_stop():  # gone before its turn came: no prefill either
            return "", 0.0
        ids = self.generate_ids(self.fit_prompt(self.encode(text)), max_new_tokens, logprobs=logprobs,
                                should_stop=should_stop)
        return self.decode(ids), confidence_from_logprobs(logprobs)

    def complete(self, messages: Sequence[tuple[str, str]], max_new_tokens: int | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Completion:
        """The greedy answer to a conversation (see :meth:`encode_messages`), with token counts;
        one user message gets the answer and confidence :meth:`generate_with_confidence` gives."""
        if should_stop is not None and should_stop():  # gone before its turn came: no prefill either
            return Completion("", 0.0, "stop", 0, 0)
        ids = self.fit_messages(messages)
        stats = GenerationStats()
        logprobs: list[float] = []
        out = self.generate_ids(ids, max_new_tokens, stats=stats, logprobs=logprobs, should_stop=should_stop)
        finish = "length" if stats.finish == "length" else "stop"
        return Completion(self.decode(out), confidence_from_logprobs(logprobs), finish, len(ids), len(out))


def _log_softmax_at(logits: np.ndarray, index: int) -> float:
    """``log softmax(logits)[index]`` computed stably in float64."""
    values = np.asarray(logits, dtype=np.float64)
    peak = float(values.max())
    return float(values[index] - peak - np.log(np.exp(values - peak).sum()))


def confidence_from_logprobs(logprobs: list[float]) -> float:
    """Geometric mean probability of the chosen tokens, clamped to [0, 1] (0.0 when none)."""
    if not logprobs:
        return 0.0
    mean = float(np.mean(logprobs))
    if not np.isfinite(mean):
        return 0.0
    return min(1.0, max(0.0, float(np.exp(mean))))
