"""Gradient-free heads: nearest class mean (few-shot) and embedded class descriptions (zero-shot).

The head is cosine similarity to L2-normalised class prototypes, scaled by a temperature, then softmax:
standard layers only, so the exported model is an ordinary Keras model with raw input."""

from __future__ import annotations

import numpy as np

DEFAULT_SCALE = 10.0
SCALES = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype="float64")
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def class_means(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    feats = _normalise(features)
    protos = np.zeros((num_classes, feats.shape[1]), dtype="float64")
    for c in range(num_classes):
        members = feats[labels == c]
        if len(members):
            protos[c] = members.mean(axis=0)
    return _normalise(protos)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def choose_scale(prototypes: np.ndarray, features: np.ndarray | None, labels: np.ndarray | None) -> float:
    """Temperature with the lowest negative log-likelihood on held-out features (default without any)."""
    if features is None or labels is None or len(labels) == 0:
        return DEFAULT_SCALE
    sims = _normalise(features) @ prototypes.T
    best, best_nll = DEFAULT_SCALE, float("inf")
    for s in SCALES:
        p = _softmax(sims * s)
        nll = float(-np.log(np.maximum(p[np.arange(len(labels)), labels], 1e-12)).mean())
        if nll < best_nll:
            best, best_nll = s, nll
    return best


def prototype_head(prototypes: np.ndarray, scale: float, name: str = "head"):  # type: ignore[no-untyped-def]
    import keras

    num_classes, dim = prototypes.shape
    inp = keras.Input((dim,), name="features")
    x = keras.layers.UnitNormalization(name="l2_normalize")(inp)
    dense = keras.layers.Dense(num_classes, use_bias=False, name="prototype_similarity", trainable=False)
    logits = dense(x)
    dense.set_weights([(prototypes.T * scale).astype("float32")])
    out = keras.layers.Softmax(dtype="float32", name="predictions")(logits)
    return keras.Model(inp, out, name=name)
