"""Run a GGUF file: in llama.cpp (``llama-cpp-python``) when it is installed, else through
transformers' GGUF loader (which dequantizes the weights into a torch model).

Both take token ids directly, never text, so a check compares the weights and nothing else;
:func:`llama_cpp_tokenize` is the separate check of llama.cpp's own tokenizer.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.exporter.errors import ExportError

logger = logging.getLogger(__name__)

__all__ = ["GgufRuntime", "LlamaCppRuntime", "TransformersGgufRuntime", "llama_cpp_available", "llama_cpp_version",
           "open_runtime", "require_llama_cpp"]

INSTALL_HINT = "pip install 'tinyforge-studio[gguf]' (llama-cpp-python==0.3.36, built from source: a few minutes)"


class GgufRuntime(Protocol):
    """What the parity check and ``predict`` need from a loaded GGUF model."""

    checked_in: str

    def logits(self, ids: list[int]) -> np.ndarray:
        """Next-token logits after every position of ``ids`` (one row per id), from scratch."""

    def greedy(self, prompt: list[int], max_new_tokens: int, stop_ids: set[int]) -> tuple[list[int], list[float]]:
        """Greedy ids after ``prompt`` (stop ids excluded) and the seconds of each decode step."""

    def close(self) -> None:
        """Free the model now rather than when it is garbage-collected."""


def llama_cpp_available() -> bool:
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        return False


def llama_cpp_version() -> str:
    import llama_cpp

    return f"llama.cpp {llama_cpp.__version__}"


def require_llama_cpp(doing: str) -> None:
    """:class:`ExportError` with the install line when ``llama_cpp`` cannot be imported."""
    if not llama_cpp_available():
        raise ExportError(f"{doing} needs llama.cpp's Python binding: {INSTALL_HINT}")


def _threads() -> int:
    """One llama.cpp thread per physical core (llama-cpp-python's own default, for the CPUs this
    process may use). Its threads spin at every layer's barrier, so one that loses its core to
    another process stalls the others: on a shared 2-core machine two threads decoded 2 tokens/s
    where one decoded 80."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return max(1, usable // 2)


class LlamaCppRuntime:
    """A GGUF file loaded in llama.cpp, with every position's logits kept (``logits_all``)."""

    def __init__(self, path: Path, n_ctx: int) -> None:
        from llama_cpp import Llama

        self.checked_in = llama_cpp_version()
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=min(n_ctx, 512), logits_all=True,
                         verbose=False, n_threads=_threads())

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        """llama.cpp's tokens for ``text``: special tokens parsed, BOS added when ``add_special``
        and the file says so (``tokenizer.ggml.add_bos_token``)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True))

    def detokenize(self, ids: list[int]) -> str:
        """The text of ``ids`` without control tokens (as HF's ``skip_special_tokens``)."""
        return self.llm.detokenize(ids).decode("utf-8", errors="replace")

    def logits(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def greedy(self, prompt: list[int], max_new_tokens: int, stop_ids: set[int]) -> tuple[list[int], list[float]]:
        self.llm.reset()
        self.llm.eval(prompt)
        ids: list[int] = []
        steps: list[float] = []
        while len(ids) < max_new_tokens:
            token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            if token in stop_ids:
                break
            ids.append(token)
            if len(ids) >= max_new_tokens:
                break
            started = time.perf_counter()
            self.llm.eval([token])
            steps.append(time.perf_counter() - started)
        return ids, steps

    def close(self) -> None:
        self.llm.close()


class TransformersGgufRuntime:
    """A GGUF file dequantized by transformers into a float32 torch model (no llama.cpp).

    The loader reads no rotary scaling from a GGUF (``rope_freqs``, ``rope.scaling.*``), so a
    scaled model's ``rope_parameters`` are passed in from the trained model's config.
    """

    checked_in = "transformers gguf loader"

    def __init__(self, path: Path, rope_parameters: dict[str, Any] | None = None) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        if rope_parameters:
            config.rope_parameters = dict(rope_parameters)
        with contextlib.redirect_stderr(io.StringIO()):  # its dequantizing bar ignores the setting above
            self.model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, config=config,
                                                              dtype=torch.float32)
        self.model.eval()

    def logits(self, ids: list[int]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(input_ids=torch.tensor([ids], dtype=torch.long)).logits[0].float().numpy()

    def greedy(self, prompt: list[int], max_new_tokens: int, stop_ids: set[int]) -> tuple[list[int], list[float]]:
        from core.exporter.parity_runs import torch_greedy

        run = torch_greedy(self.model, "causal", prompt, max_new_tokens, stop_ids, keep_logits=False)
        return run.ids, [ms / 1000 for ms in run.step_ms]

    def close(self) -> None:
        self.model = None


def open_runtime(path: Path, n_ctx: int, rope_parameters: dict[str, Any] | None = None
                 ) -> LlamaCppRuntime | TransformersGgufRuntime:
    """llama.cpp when ``llama_cpp`` is importable, else transformers' GGUF loader (given the
    trained model's ``rope_parameters``, which it cannot read from the file)."""
    if llama_cpp_available():
        return LlamaCppRuntime(path, n_ctx)
    return TransformersGgufRuntime(path, rope_parameters)
