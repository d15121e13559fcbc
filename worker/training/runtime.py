"""Process-level TensorFlow setup: seeds and determinism, GPU memory growth, mixed precision, and the
distribution strategy."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


def seed_everything(seed: int, deterministic_ops: bool = False) -> None:
    """Seed Python, NumPy, TensorFlow and Keras. On CPU that alone reproduces a run to 1e-6 (tested);
    ``deterministic_ops`` also turns on TF op determinism, which GPU kernels need for bit-identical runs
    but which costs about a quarter of CPU training throughput (measured, bench/engine_throughput.py).
    Op determinism is process-wide and cannot be switched off again: workers run one job per process."""
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        try:
            tf.config.experimental.enable_op_determinism()
        except Exception:  # noqa: BLE001 - older TF: best effort
            pass


def configure_devices(mixed_precision: bool) -> tuple[Any, list[str]]:
    """Memory growth on every GPU; mixed precision when asked for and a GPU is there; MirroredStrategy
    when more than one GPU is visible. Returns (strategy, notes)."""
    notes: list[str] = []
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # the runtime was initialised already; growth applies from the first process setup
    if mixed_precision:
        if gpus:
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            notes.append("mixed precision requested but no GPU is visible: trained in float32")
    if len(gpus) > 1:
        notes.append(f"MirroredStrategy over {len(gpus)} GPUs")
        return tf.distribute.MirroredStrategy(), notes
    return tf.distribute.get_strategy(), notes


def reset_policy() -> None:
    keras.mixed_precision.set_global_policy("float32")
