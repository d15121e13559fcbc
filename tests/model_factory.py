"""Model versions for serving tests, without the training engine.

``register_image_model`` builds a tiny Keras model (uint8 H×W×3 → Rescaling → global average →
Dense softmax) whose weights map an image's mean colour to its class, saves it (and, on request,
TFLite variants) into the artifact store, and inserts a ``ModelVersion`` row.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CHANNEL = {"red": 0, "green": 1, "blue": 2}


def build_image_model(labels: list[str], size: int = 8, scale: float = 10.0) -> Any:
    import keras

    inputs = keras.Input((size, size, 3), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(len(labels), activation="softmax")
    outputs = dense(x)
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((3, len(labels)), dtype=np.float32)
    for j, label in enumerate(labels):
        kernel[CHANNEL.get(label, j % 3), j] = scale
    dense.set_weights([kernel, np.zeros(len(labels), dtype=np.float32)])
    return model


def build_text_model(labels: list[str], vocabulary: list[list[str]]) -> Any:
    """Class j is predicted for texts containing the words in ``vocabulary[j]``."""
    import keras

    words = [w for group in vocabulary for w in group]
    inputs = keras.Input((), dtype="string", name="text")
    vectorize = keras.layers.TextVectorization(vocabulary=words, output_mode="count")
    x = vectorize(inputs)
    dense = keras.layers.Dense(len(labels), activation="softmax")
    outputs = dense(x)
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((len(words) + 1, len(labels)), dtype=np.float32)
    for j, group in enumerate(vocabulary):
        for w in group:
            kernel[1 + words.index(w), j] = 5.0
    dense.set_weights([kernel, np.zeros(len(labels), dtype=np.float32)])
    return model


def _tflite(model: Any, fmt: str) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if fmt == "tflite_float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def register(
    model: Any,
    *,
    project: str = "acme",
    name: str = "colors",
    labels: list[str],
    signature: dict[str, Any],
    task: str,
    formats: tuple[str, ...] = ("keras",),
    serving_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Save ``model`` in ``formats`` and register it as the next version of ``name``."""
    from app.auth import get_or_create_project
    from app.config import get_settings
    from app.db import session_scope
    from app.services.registry import next_version
    from app.storage import get_store
    from app.tables import ModelVersion

    store = get_store(get_settings())
    with session_scope() as session:
        proj = get_or_create_project(session, project)
        version = next_version(session, proj.id, name)
        prefix = f"models/{proj.id}/{name}/{version}"
        artifacts: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for fmt in formats:
                if fmt == "keras":
                    path = Path(tmp) / "model.keras"
                    model.save(path)
                else:
                    path = Path(tmp) / f"model_{fmt}.tflite"
                    path.write_bytes(_tflite(model, fmt))
                key = f"{prefix}/{path.name}"
                store.put_file(key, path)
                artifacts[fmt] = {"key": key, "size_bytes": path.stat().st_size, "parity": None}
        row = ModelVersion(
            project_id=proj.id,
            name=name,
            version=version,
            task=task,
            labels=labels,
            metrics={"accuracy": 1.0},
            input_signature=signature,
            artifacts=artifacts,
            base={"kind": "catalog", "name": "tiny"},
            strategy="feature_extraction",
            serving_config=serving_config or {},
        )
        session.add(row)
        session.flush()
        return {"id": row.id, "version": version, "project_id": proj.id, "artifacts": artifacts}


def register_image_model(
    *,
    project: str = "acme",
    name: str = "colors",
    labels: list[str] | None = None,
    size: int = 8,
    formats: tuple[str, ...] = ("keras",),
    scale: float = 10.0,
    serving_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    labels = labels or ["blue", "green", "red"]
    signature = {"type": "image", "height": size, "width": size, "channels": 3, "dtype": "uint8"}
    return register(
        build_image_model(labels, size, scale),
        project=project,
        name=name,
        labels=labels,
        signature=signature,
        task="image_classification",
        formats=formats,
        serving_config=serving_config,
    )


def register_text_model(*, project: str = "acme", name: str = "sentiment") -> dict[str, Any]:
    labels = ["negative", "positive"]
    model = build_text_model(labels, [["bad", "awful"], ["good", "great"]])
    return register(
        model,
        project=project,
        name=name,
        labels=labels,
        signature={"type": "text"},
        task="text_classification",
    )
