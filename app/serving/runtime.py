"""Loading exported models and running them. TensorFlow is imported on first use only.

Each loaded model gets one compiled ``tf.function`` (never ``model.predict`` per request).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class LoadedModel:
    key: str
    labels: list[str]
    signature: dict[str, Any]
    fn: Any

    def run(self, batch: Any) -> np.ndarray:
        import tensorflow as tf

        if self.signature.get("type") == "text":
            tensor = tf.constant(batch, dtype=tf.string)
        else:
            tensor = tf.constant(batch, dtype=tf.uint8)
        return np.asarray(self.fn(tensor))


def _load(path: Path) -> Any:
    import keras

    try:  # text models carry keras-hub tokenizer layers: register them before loading
        import keras_hub  # noqa: F401
    except ImportError:
        pass
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def predict(x: Any) -> Any:
        return model(x, training=False)

    predict.model = model  # keep a reference alive with the function
    return predict


class ModelCache:
    """Loaded models by key (a model version id), least recently used evicted past ``capacity``."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, path: Path, labels: list[str], signature: dict[str, Any]) -> LoadedModel:
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            loaded = LoadedModel(key=key, labels=labels, signature=signature, fn=_load(path))
            self._models[key] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return loaded


def top_k(probs: np.ndarray, labels: list[str], k: int) -> list[dict[str, Any]]:
    out = []
    for row in probs:
        order = np.argsort(-row)[: max(1, min(k, len(labels)))]
        top = [{"label": labels[i], "probability": float(row[i])} for i in order]
        out.append({"label": top[0]["label"], "probability": top[0]["probability"], "top": top})
    return out
