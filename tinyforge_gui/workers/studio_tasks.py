"""Workers for the studio features: LoRA target suggestions, the run estimate, the playground
answers and the service process. Each follows the one recipe of :mod:`tinyforge_gui.workers.runner`;
heavy libraries load inside ``work`` (in the worker thread), never at import, and only for work
that needs a model in this process (the playground's answers).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal

from tinyforge_gui.state import Task
from tinyforge_gui.workers.runner import Worker

if TYPE_CHECKING:
    from core.models.lora_modules import LoraModules
    from core.run_layout import Estimate
    from core.training.config import TrainConfig

logger = logging.getLogger(__name__)

# transformers' lazy module is not safe to initialise from two threads at once (a second
# thread can see a half-built module: "cannot import name ..."); workers that use it take turns.
TRANSFORMERS_LOCK = threading.Lock()


class LoraTargetsWorker(Worker):
    """The LoRA-capable module names of a base model, from its config.json and a table (no torch:
    the window's process stays light); names unknown without loading the model come back empty,
    with the reason. The result is core's :class:`LoraModules`, named as the options form holds
    the base model."""

    def __init__(self, base_model: str) -> None:
        super().__init__(Task.LORA_TARGETS)
        self.base_model = base_model

    def work(self) -> LoraModules:
        from dataclasses import replace

        from core.models.lora_modules import lora_modules

        self.cancel_token.raise_if_cancelled()
        # the name as the options form holds it (lora_modules strips it)
        return replace(lora_modules(self.base_model), base_model=self.base_model)


class EstimateWorker(Worker):
    """A few real training steps of ``train`` in a child process, projected to the whole run."""

    def __init__(self, train: TrainConfig, probe_steps: int = 3) -> None:
        super().__init__(Task.ESTIMATE)
        self.train = train
        self.probe_steps = probe_steps

    def work(self) -> Estimate:
        from core.training.estimate import estimate_run

        config = self.train if self.train.output_dir else self.train.model_copy(update={"output_dir": "."})
        return estimate_run(config, self.probe_steps, on_event=self.relay, cancel=self.cancel_token)


class PlaygroundWorker(Worker):
    """Answers one question with up to four models, emitting each answer as it is ready.

    ``sources`` maps a kind (``base``, ``tuned``, ``onnx``, ``gguf``) to what it needs; the
    model caches live in core (per path) or here (llama.cpp), so the second question skips loading.
    """

    answer = Signal(int, str, str, float, str)  # request id, kind, answer, milliseconds, error

    def __init__(self, request: int, text: str, sources: dict[str, dict[str, Any]], max_new_tokens: int) -> None:
        super().__init__(Task.PLAYGROUND)
        self.request = request
        self.text = text
        self.sources = sources
        self.max_new_tokens = max_new_tokens

    def work(self) -> Any:
        for kind in ("base", "tuned", "onnx", "gguf"):
            source = self.sources.get(kind)
            if source is None:
                continue
            self.cancel_token.raise_if_cancelled()
            started = time.perf_counter()
            try:
                with TRANSFORMERS_LOCK:
                    text = self._answer(kind, source)
                error = ""
            except Exception as exc:  # one model failing must not hide the others' answers
                logger.debug("playground %s failed", kind, exc_info=True)
                text, error = "", str(exc).strip() or type(exc).__name__
            self.answer.emit(self.request, kind, text, (time.perf_counter() - started) * 1000, error)
        return self.request

    def _answer(self, kind: str, source: dict[str, Any]) -> str:
        if kind == "base":
            from core.training.base_predict import base_predict

            return base_predict(source["base_model"], self.text, self.max_new_tokens,
                                seed=int(source.get("seed", 0)), max_length=int(source.get("max_length", 256)))
        if kind == "tuned":
            from core.training.predict import predict

            return predict(source["model_dir"], self.text, self.max_new_tokens)
        if kind == "gguf":
            return _gguf_answerer(source["path"], self.max_new_tokens)(self.text)
        from core.exporter.onnx_predict import predict_onnx

        return predict_onnx(source["service_dir"], self.text, precision=source.get("precision"),
                            max_new_tokens=self.max_new_tokens)


_GGUF_ANSWERERS: dict[tuple[str, int], Any] = {}  # llama.cpp keeps the file loaded between questions


def _gguf_answerer(path: str, max_new_tokens: int) -> Any:
    from core.exporter.gguf_predict import gguf_answerer

    key = (path, max_new_tokens)
    if key not in _GGUF_ANSWERERS:
        _GGUF_ANSWERERS.clear()  # one model in memory: the last file asked about
        _GGUF_ANSWERERS[key] = gguf_answerer(Path(path), max_new_tokens)
    return _GGUF_ANSWERERS[key]


class ServiceHandle:
    """The running service process (plain Python, shared by the GUI and its workers)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.process: Any = None
        self.url = ""
        self.service_dir = ""

    def running(self) -> bool:
        with self._lock:
            return self.process is not None and self.process.poll() is None

    def set(self, process: Any, url: str, service_dir: str) -> None:
        with self._lock:
            self.process, self.url, self.service_dir = process, url, service_dir

    def stop(self) -> None:
        """Stop the process (SIGTERM, then kill) and forget it; safe to call twice."""
        with self._lock:
            process, self.process, self.url = self.process, None, ""
        if process is not None:
            from core.exporter.serve import stop_service_process

            stop_service_process(process, timeout=5.0)


class ServiceStartWorker(Worker):
    """Starts ``service_dir``'s app on a free loopback port and waits for /health."""

    def __init__(self, handle: ServiceHandle, service_dir: str) -> None:
        super().__init__(Task.SERVICE)
        self.handle = handle
        self.service_dir = service_dir

    def work(self) -> Any:
        from core.exporter.serve import start_service_process, stop_service_process

        process, url = start_service_process(self.service_dir)
        if self.cancel_token.cancelled:  # the window closed meanwhile
            stop_service_process(process, timeout=5.0)
            return {"url": "", "pid": 0}
        self.handle.set(process, url, self.service_dir)
        return {"url": url, "pid": process.pid, "service_dir": self.service_dir}


class ServiceStopWorker(Worker):
    def __init__(self, handle: ServiceHandle) -> None:
        super().__init__(Task.SERVICE)
        self.handle = handle

    def work(self) -> Any:
        self.handle.stop()
        return {}
