from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("KERAS_HOME", "/nonexistent-keras-home-for-tests")

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def make_image_tree(
    root: Path,
    per_class: int = 8,
    size: int = 24,
    classes: tuple[str, ...] = ("red", "green", "blue"),
    formats: tuple[str, ...] = ("png",),
    seed: int = 0,
) -> Path:
    """Class folders of tiny, clearly separable images (dominant colour + noise)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        base = np.array(COLORS.get(c, tuple(int(v) for v in rng.integers(0, 255, 3))), dtype="float32")
        for i in range(per_class):
            arr = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype("uint8")
            fmt = formats[i % len(formats)]
            img = Image.fromarray(arr)
            if fmt == "gif":
                img = img.convert("P")
            img.save(root / c / f"{c}_{i}.{fmt}")
    return root


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    return make_image_tree(tmp_path / "data")


class RecordingCallbacks:
    def __init__(self, cancel_after_batches: int | None = None) -> None:
        self.progress: list = []
        self.epochs: list = []
        self.logs: list[str] = []
        self.cancel_after = cancel_after_batches
        self.polls = 0

    def on_progress(self, progress) -> None:  # noqa: ANN001
        self.progress.append(progress)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append((epoch, metrics))

    def should_cancel(self) -> bool:
        self.polls += 1
        return self.cancel_after is not None and self.polls > self.cancel_after

    def log(self, message: str) -> None:
        self.logs.append(message)


def make_tiny_cnn(path: Path, size: int = 32) -> Path:
    """A small conv net saved as .keras: a fast stand-in for an uploaded base (BN and biases included)."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", name="conv3")(x)
    x = keras.layers.ReLU(name="relu3")(x)
    keras.Model(inp, x, name="tiny_cnn").save(path)
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_cnn(tmp_path_factory.mktemp("bases") / "tiny.keras")
