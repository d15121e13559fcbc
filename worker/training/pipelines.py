"""tf.data input pipelines: parallel decode, cache, shuffle (seeded), batch, prefetch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def decode_image(path: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """JPEG, PNG, BMP, GIF (first frame) and WebP to uint8 HxWx3 at the model's size."""
    raw = tf.io.read_file(path)
    img = tf.io.decode_image(raw, channels=3, expand_animations=False, dtype=tf.uint8)
    img.set_shape([None, None, 3])
    img = tf.image.resize(img, (height, width), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)


def one_hot(labels: Sequence[int], num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype="float32")[np.asarray(labels, dtype="int64")]


def image_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | None,
    num_classes: int,
    size: tuple[int, int],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    h, w = size
    images = tf.data.Dataset.from_tensor_slices(list(paths)).map(
        lambda p: decode_image(p, h, w), num_parallel_calls=AUTOTUNE, deterministic=True
    )
    return _finish(images, labels, num_classes, batch_size, shuffle, seed, len(paths))


def text_dataset(
    texts: Sequence[str],
    labels: Sequence[int] | None,
    num_classes: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    x = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), dtype=tf.string))
    return _finish(x, labels, num_classes, batch_size, shuffle, seed, len(texts))


def array_dataset(
    x: np.ndarray,
    labels: Sequence[int],
    num_classes: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((x, one_hot(labels, num_classes)))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def _finish(
    x: tf.data.Dataset,
    labels: Sequence[int] | None,
    num_classes: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    n: int,
) -> tf.data.Dataset:
    ds: Any = x
    if labels is not None:
        ds = tf.data.Dataset.zip((x, tf.data.Dataset.from_tensor_slices(one_hot(labels, num_classes))))
    ds = ds.cache()
    if shuffle and n > 1:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def num_batches(n: int, batch_size: int) -> int:
    return max(1, -(-n // batch_size)) if n else 0
