"""Metrics and prototype maths (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from worker.training.evaluation import classification_metrics, expected_calibration_error
from worker.training.prototypes import choose_scale, class_means


def test_metrics_on_a_known_confusion() -> None:
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    y = np.array([0, 1, 1, 2])
    m = classification_metrics(probs, y, ["a", "b", "c"], ids=["i0", "i1", "i2", "i3"], top_k=2)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["top_2_accuracy"] == pytest.approx(1.0)
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert m["per_class"]["b"]["recall"] == 0.5 and m["per_class"]["b"]["precision"] == 1.0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["weighted_f1"] == pytest.approx((2 / 3 + 2 * 2 / 3 + 1) / 4)
    assert m["confidently_wrong"] == [{"id": "i2", "true": "b", "predicted": "a", "confidence": 0.6}]


def test_ece_perfectly_calibrated_and_overconfident() -> None:
    y = np.array([0, 0, 1, 1])
    assert expected_calibration_error(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), y) == 0.0
    over = np.array([[0.99, 0.01]] * 4)
    assert expected_calibration_error(over, y) == pytest.approx(0.49)


def test_prototypes_classify_by_nearest_mean() -> None:
    rng = np.random.default_rng(0)
    centers = np.eye(3, 8) * 5
    y = np.repeat(np.arange(3), 10)
    x = centers[y] + rng.normal(0, 0.5, (30, 8))
    protos = class_means(x, y, 3)
    assert np.allclose(np.linalg.norm(protos, axis=1), 1.0)
    scale = choose_scale(protos, x, y)
    sims = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ protos.T
    assert (sims.argmax(axis=1) == y).mean() == 1.0 and scale >= 10
