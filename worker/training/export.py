"""Exporting a trained model: .keras (raw input in, probabilities out), SavedModel with a serving signature,
TFLite float32 / float16 / int8 dynamic range. Every artifact is reloaded and its top-1 predictions are
compared with the Keras model's on the test split (``parity``)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from worker.training.result import ArtifactInfo


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _agreement(reference: np.ndarray | None, probs: np.ndarray | None) -> float | None:
    if reference is None or probs is None or len(reference) == 0:
        return None
    return float((reference.argmax(axis=1) == probs.argmax(axis=1)).mean())


def _batched(fn: Callable[[Any], np.ndarray], inputs: Any, batch: int = 64) -> np.ndarray:
    outs = [fn(inputs[i : i + batch]) for i in range(0, len(inputs), batch)]
    return np.concatenate(outs, axis=0)


def export_keras(model: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def export_savedmodel(model: Any, path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path


def tflite_convert(savedmodel_dir: Path, kind: str, path: Path) -> Path:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel_dir))
    if kind in ("float16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "float16":
        converter.target_spec.supported_types = [tf.float16]
    path.write_bytes(converter.convert())
    return path


def tflite_predict(path: Path, inputs: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path))
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    results = []
    for start in range(0, len(inputs), 32):
        batch = np.asarray(inputs[start : start + 32], dtype=inp["dtype"])
        interpreter.resize_tensor_input(inp["index"], batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], batch)
        interpreter.invoke()
        results.append(np.array(interpreter.get_tensor(out["index"])))
    return np.concatenate(results, axis=0)


def export_all(
    model: Any,
    formats: list[str],
    export_dir: Path,
    labels: list[str],
    test_inputs: Any,
    reference: np.ndarray | None,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[dict[str, ArtifactInfo], list[str]]:
    """Write each requested format under ``export_dir`` and measure parity on ``test_inputs``.
    Returns (artifacts, notes)."""
    import tensorflow as tf

    from worker.training.inference import load_for_inference, make_predict_fn

    export_dir.mkdir(parents=True, exist_ok=True)
    (export_dir / "labels.json").write_text(json.dumps(labels, indent=1), encoding="utf-8")
    has_test = test_inputs is not None and len(test_inputs) > 0
    artifacts: dict[str, ArtifactInfo] = {}
    notes: list[str] = []

    keras_path = export_keras(model, export_dir / "model.keras")
    reloaded = load_for_inference(keras_path)
    parity = _agreement(reference, _batched(make_predict_fn(reloaded), test_inputs)) if has_test else None
    artifacts["keras"] = ArtifactInfo(str(keras_path), _size(keras_path), parity)
    log(f"exported keras ({_size(keras_path)} bytes, parity {parity})")

    tflite_kinds = [f.removeprefix("tflite_") for f in formats if f.startswith("tflite_")]
    if "savedmodel" in formats or tflite_kinds:
        sm_dir = export_dir / ("savedmodel" if "savedmodel" in formats else "_savedmodel_tmp")
        export_savedmodel(model, sm_dir)
        if "savedmodel" in formats:
            loaded = tf.saved_model.load(str(sm_dir))
            serve = loaded.signatures["serving_default"]

            def _sm(batch: Any) -> np.ndarray:
                x = tf.constant(list(batch)) if isinstance(batch, list) else tf.constant(batch)
                out = serve(x)
                return np.asarray(next(iter(out.values())))

            parity = _agreement(reference, _batched(_sm, test_inputs)) if has_test else None
            artifacts["savedmodel"] = ArtifactInfo(str(sm_dir), _size(sm_dir), parity)
            log(f"exported savedmodel (parity {parity})")
        for kind in tflite_kinds:
            path = export_dir / f"model_{kind}.tflite"
            try:
                tflite_convert(sm_dir, kind, path)
            except Exception as exc:  # noqa: BLE001 - converter failures are reported, not fatal
                notes.append(f"tflite_{kind} export failed: {exc}")
                continue
            parity = _agreement(reference, tflite_predict(path, np.asarray(test_inputs))) if has_test else None
            artifacts[f"tflite_{kind}"] = ArtifactInfo(str(path), _size(path), parity)
            log(f"exported tflite_{kind} ({_size(path)} bytes, parity {parity})")
        if "savedmodel" not in formats:
            shutil.rmtree(sm_dir, ignore_errors=True)
    return artifacts, notes
