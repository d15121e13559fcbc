"""Shared pieces of the engine benchmarks: synthetic image data, the hand-written Keras baseline, and
running each variant in its own Python process (TensorFlow settings such as op determinism are
process-wide, so variants must not share a process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
CLASSES = ("red", "green", "blue", "yellow")
COLORS = {"red": (200, 50, 50), "green": (50, 180, 60), "blue": (50, 60, 200), "yellow": (210, 200, 40)}


def make_dataset(root: Path, per_class: int, size: int, seed: int = 0) -> Path:
    """Class folders of PNGs: a colour tint plus noise and a random bright square (easy, not trivial)."""
    from PIL import Image

    if (root / "done").exists():
        return root
    rng = np.random.default_rng(seed)
    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
        tint = np.array(COLORS[c], dtype="float32")
        for i in range(per_class):
            arr = 0.6 * tint + 0.4 * rng.uniform(0, 255, (size, size, 3))
            s = int(rng.integers(size // 6, size // 3))
            y, x = rng.integers(0, size - s, 2)
            arr[y : y + s, x : x + s] = 255
            Image.fromarray(np.clip(arr, 0, 255).astype("uint8")).save(root / c / f"{i:04d}.png")
    (root / "done").write_text("ok")
    return root


def plain_datasets(
    root: Path, splits: dict[str, list[str]], labels: list[str], size: int, batch: int, seed: int
) -> tuple[Any, Any, Any]:
    """A careful hand-written script's input: tf.data parallel decode, cache, shuffle, batch, prefetch."""
    import tensorflow as tf

    def ds(split: str, shuffle: bool) -> Any:
        ids = splits[split]
        paths = [str(root / i) for i in ids]
        y = np.eye(len(labels), dtype="float32")[[labels.index(i.split("/")[0]) for i in ids]]

        def load(p: Any) -> Any:
            img = tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False)
            img.set_shape([None, None, 3])
            img = tf.image.resize(img, (size, size), antialias=True)
            return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)

        x = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)
        d = tf.data.Dataset.zip((x, tf.data.Dataset.from_tensor_slices(y))).cache()
        if shuffle:
            d = d.shuffle(len(ids), seed=seed)
        return d.batch(batch).prefetch(tf.data.AUTOTUNE)

    return ds("train", True), ds("val", False), ds("test", False)


def calibrated_base(path: Path, data: Path, size: int, seed: int = 0) -> Path:
    """MobileNetV2 (weights=None) whose BatchNorm statistics are set from one batch of the data.

    Randomly initialised MobileNetV2 features are ~1e-12 (activations vanish through the blocks), so no head
    can learn from them. Setting the BN moving statistics from data (momentum 0, one forward pass in training
    mode) gives O(1), informative features: a stand-in for pretrained weights on this offline machine. Both
    sides of each benchmark use this same file, the engine as an uploaded base (``keras_file``)."""
    if path.exists():
        return path
    import keras
    from PIL import Image

    keras.utils.set_random_seed(seed)
    files = sorted(data.glob("*/*.png"))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(files), size=min(128, len(files)), replace=False)
    x = np.stack([np.asarray(Image.open(files[i]).convert("RGB").resize((size, size))) for i in pick])
    x = x.astype("float32") / 127.5 - 1.0
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(size, size, 3))
    bns = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for bn in bns:
        bn.momentum = 0.0
    base(x, training=True)
    for bn in bns:
        bn.momentum = 0.99
    base.save(path)
    return path


def plain_model(base_path: Path, num_classes: int, base_trainable: bool) -> Any:
    """The calibrated MobileNetV2 with the usual head (dropout 0.2, softmax), built by hand."""
    import keras

    base = keras.saving.load_model(base_path, safe_mode=True, compile=False)
    size = int(base.inputs[0].shape[1])
    base.trainable = base_trainable
    inp = keras.Input((size, size, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    out = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inp, out)


class EpochTimer:
    """Wall-clock and process CPU time at each epoch end. On a shared machine the CPU time (all threads
    of this process) is the steadier measure: other processes' load shows in wall time only."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.ends: list[float] = []
        self.cpu_ends: list[float] = []

    def mark(self) -> None:
        self.ends.append(time.perf_counter() - self.t0)
        self.cpu_ends.append(time.process_time())

    def keras_callback(self) -> Any:
        import keras

        timer = self

        class _CB(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                timer.mark()

        return _CB()


def prepare_inputs(
    script: Path, per_class: int, size: int, seed: int, splits_name: str
) -> tuple[Path, dict[str, list[str]], Path, Path]:
    """The cached synthetic data, its seeded splits (written to a file) and the calibrated base, as both
    variants of a benchmark read them: (data folder, splits, splits file, base .keras)."""
    import tempfile

    from worker.training.data import DataSource, load_examples, make_splits

    cache = Path(tempfile.gettempdir()) / f"tl_bench_images_{per_class}_{size}"
    data = make_dataset(cache, per_class, size)
    splits = make_splits(load_examples(DataSource("image_folders", data)), 0.15, 0.15, seed)
    splits_file = cache.parent / f"{cache.name}_{splits_name}.json"
    splits_file.write_text(json.dumps(splits))
    base = cache.parent / f"{cache.name}_mobilenetv2_calibrated.keras"
    if not base.exists():
        run_variant(script, "prepare", "--data", str(data), "--size", str(size), "--base", str(base))
    return data, splits, splits_file, base


def run_variant(script: Path, variant: str, *args: str) -> dict[str, Any]:
    """Run ``script --variant <variant>`` in a fresh interpreter and parse the JSON line it prints last."""
    out = subprocess.run(
        [sys.executable, str(script), "--variant", variant, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return dict(json.loads(lines[-1]))


def top1(probs: np.ndarray, ids: list[str], labels: list[str]) -> float:
    truth = np.array([labels.index(i.split("/")[0]) for i in ids])
    return float((probs.argmax(axis=1) == truth).mean())
