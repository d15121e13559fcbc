"""Loading exported models and running them. TensorFlow is imported on first use only.

A loaded model is one backend — the ``.keras`` model behind one compiled ``tf.function`` with a
fixed input signature (never ``model.predict`` per request), or a TFLite interpreter for an
exported TFLite variant — warmed up on load, with its own dynamic batcher. The ``ModelCache``
keeps loaded models within a memory budget, evicting the least recently used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.serving import metrics
from app.serving.batching import Batch, DynamicBatcher

KERAS = "keras"
TFLITE_FORMATS = ("tflite_float32", "tflite_float16", "tflite_int8")
SERVED_FORMATS = (KERAS, *TFLITE_FORMATS)
FOOTPRINT_OVERHEAD_BYTES = 16 * 1024**2


@dataclass(frozen=True)
class ModelRef:
    """What the runtime needs to know of one model version, detached from any database session."""

    version_id: str
    project: str
    name: str
    version: int
    task: str
    labels: tuple[str, ...]
    signature: dict[str, Any]
    artifacts: dict[str, Any]
    serving: dict[str, Any] = field(default_factory=dict)

    @property
    def is_text(self) -> bool:
        return self.signature.get("type") == "text"

    def cache_key(self, backend: str) -> str:
        return f"{self.version_id}:{backend}"


class Backend(Protocol):
    params: int

    def __call__(self, batch: Batch) -> np.ndarray: ...


class KerasBackend:
    """The ``.keras`` model (raw pixels or strings in, probabilities out) behind one ``tf.function``."""

    def __init__(self, path: Path, signature: dict[str, Any]) -> None:
        import keras
        import tensorflow as tf

        if signature.get("type") == "text":
            # Text models carry the engine's tokenizer layer (its vocabulary inside the config, so they
            # load offline). Registering that layer is part of reading the model format: this is the one
            # other sanctioned import from app into worker (pure Keras, no Celery or database).
            import worker.training.layers  # noqa: F401
        self.model = keras.saving.load_model(path, safe_mode=True, compile=False)
        self.params = int(self.model.count_params())
        self.is_text = signature.get("type") == "text"
        if self.is_text:
            spec = tf.TensorSpec([None], tf.string)
        else:
            spec = tf.TensorSpec([None, int(signature["height"]), int(signature["width"]), 3], tf.uint8)
        model = self.model

        @tf.function(input_signature=[spec])
        def serve(x: Any) -> Any:
            return model(x, training=False)

        self._fn = serve
        self._tf = tf

    def __call__(self, batch: Batch) -> np.ndarray:
        tensor = self._tf.constant(batch, dtype=self._tf.string if self.is_text else self._tf.uint8)
        return np.asarray(self._fn(tensor))


def _tflite_interpreter(path: Path) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-not-found]
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(model_path=str(path), num_threads=None)


class TFLiteBackend:
    """An exported TFLite variant. Quantized inputs/outputs are (de)quantized here."""

    def __init__(self, path: Path, signature: dict[str, Any]) -> None:
        if signature.get("type") == "text":
            raise ValueError("TFLite backends serve image models only")
        self.interpreter = _tflite_interpreter(path)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = -1
        self.params = 0
        self._lock = threading.Lock()  # an interpreter is not thread-safe

    def __call__(self, batch: Batch) -> np.ndarray:
        x = np.asarray(batch)
        with self._lock:
            it, inp, out = self.interpreter, self._input, self._output
            if len(x) != self._batch:
                it.resize_tensor_input(inp["index"], [len(x), *x.shape[1:]])
                it.allocate_tensors()
                self._batch = len(x)
                self._input, self._output = it.get_input_details()[0], it.get_output_details()[0]
                inp, out = self._input, self._output
            scale, zero = inp.get("quantization", (0.0, 0))
            dtype = inp["dtype"]
            if np.issubdtype(dtype, np.floating) or dtype == np.uint8:
                x = x.astype(dtype)  # raw pixel values: the model rescales them itself
            elif scale:  # a quantized integer input of another type: quantize the pixel values
                info = np.iinfo(dtype)
                x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
            else:
                x = x.astype(dtype)
            it.set_tensor(inp["index"], x)
            it.invoke()
            y = it.get_tensor(out["index"])
            oscale, ozero = out.get("quantization", (0.0, 0))
            if oscale and not np.issubdtype(y.dtype, np.floating):
                y = (y.astype(np.float32) - ozero) * oscale
            return np.asarray(y, dtype=np.float32)


def load_backend(path: Path, signature: dict[str, Any], backend: str) -> Backend:
    if backend == KERAS:
        return KerasBackend(path, signature)
    if backend in TFLITE_FORMATS:
        return TFLiteBackend(path, signature)
    raise ValueError(f"unknown backend {backend!r}")


def warm_up(run: Callable[[Batch], np.ndarray], signature: dict[str, Any]) -> None:
    """One call on a dummy input, so the first request does not pay for tracing."""
    if signature.get("type") == "text":
        run(["warm up"])
    else:
        run(np.zeros((1, int(signature["height"]), int(signature["width"]), 3), dtype=np.uint8))


def estimate_footprint(artifact_bytes: int, params: int = 0) -> int:
    """Bytes a loaded model holds: its weights (the larger of artifact size and 4 bytes a
    parameter) twice over for the runtime's copies and activations, plus a fixed overhead."""
    weights = max(int(artifact_bytes), 4 * int(params))
    return 2 * weights + FOOTPRINT_OVERHEAD_BYTES


@dataclass
class LoadedModel:
    key: str
    ref: ModelRef
    backend: str
    run: Callable[[Batch], np.ndarray]
    footprint: int
    batcher: DynamicBatcher | None = None

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()


class ModelCache:
    """Loaded models by key, least recently used evicted while the total footprint is over budget.

    A model larger than the whole budget is still served: it evicts every other model.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.used_bytes = 0

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def peek(self, key: str) -> LoadedModel | None:
        """The loaded model (marked as just used), or None; never loads."""
        with self._lock:
            return self._touch(key)

    def get(self, key: str, loader: Callable[[], LoadedModel]) -> LoadedModel:
        with self._lock:
            hit = self._touch(key)
            if hit is not None:
                return hit
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                hit = self._touch(key)
                if hit is not None:
                    return hit
            loaded = loader()
            metrics.MODEL_LOADS.inc()
            with self._lock:
                evicted = self._insert(key, loaded)
                self._loading.pop(key, None)
        for old in evicted:
            old.close()
        return loaded

    def evict(self, prefix: str) -> int:
        """Drop every model whose key starts with ``prefix`` (a version id); returns how many."""
        with self._lock:
            gone = [self._models.pop(k) for k in list(self._models) if k.startswith(prefix)]
            self.used_bytes -= sum(m.footprint for m in gone)
            self._report()
        for old in gone:
            old.close()
        return len(gone)

    def close(self) -> None:
        self.evict("")

    def _touch(self, key: str) -> LoadedModel | None:
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        return None

    def _insert(self, key: str, loaded: LoadedModel) -> list[LoadedModel]:
        self._models[key] = loaded
        self.used_bytes += loaded.footprint
        evicted: list[LoadedModel] = []
        while self.used_bytes > self.budget_bytes and len(self._models) > 1:
            _, old = self._models.popitem(last=False)
            self.used_bytes -= old.footprint
            evicted.append(old)
            metrics.MODEL_EVICTIONS.inc()
        self._report()
        return evicted

    def _report(self) -> None:
        metrics.CACHE_BYTES.set(self.used_bytes)
        metrics.CACHE_MODELS.set(len(self._models))


def top_k(probs: np.ndarray, labels: list[str] | tuple[str, ...], k: int) -> list[dict[str, Any]]:
    out = []
    for row in probs:
        order = np.argsort(-row)[: max(1, min(k, len(labels)))]
        top = [{"label": labels[i], "probability": float(row[i])} for i in order]
        out.append({"label": top[0]["label"], "probability": top[0]["probability"], "top": top})
    return out
