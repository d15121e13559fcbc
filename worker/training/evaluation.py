"""Classification metrics on held-out predictions (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype("float64")
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    n = len(y_true)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if mask.any():
            ece += mask.sum() / n * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def classification_metrics(
    probs: np.ndarray,
    y_true: np.ndarray,
    labels: list[str],
    ids: list[str] | None = None,
    top_k: int = 5,
    worst: int = 10,
) -> dict[str, Any]:
    """accuracy, top-k accuracy, per-class precision/recall/F1, macro and weighted F1, confusion matrix
    (rows: true, columns: predicted), ECE, and the most confidently wrong items."""
    probs = np.asarray(probs, dtype="float64")
    y_true = np.asarray(y_true, dtype="int64")
    n, c = len(y_true), len(labels)
    if n == 0:
        return {"count": 0}
    pred = probs.argmax(axis=1)
    k = min(top_k, c)
    topk = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    cm = np.zeros((c, c), dtype="int64")
    np.add.at(cm, (y_true, pred), 1)
    per_class: dict[str, dict[str, float]] = {}
    f1s, supports = [], []
    for i, name in enumerate(labels):
        tp = cm[i, i]
        fp = cm[:, i].sum() - tp
        fn = cm[i, :].sum() - tp
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        support = int(cm[i, :].sum())
        per_class[name] = {"precision": float(p), "recall": float(r), "f1": float(f1), "support": support}
        f1s.append(f1)
        supports.append(support)
    present = [i for i, s in enumerate(supports) if s > 0]
    macro = float(np.mean([f1s[i] for i in present])) if present else 0.0
    weighted = float(np.average(f1s, weights=supports)) if sum(supports) else 0.0
    conf = probs.max(axis=1)
    wrong = np.where(pred != y_true)[0]
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:worst]
    return {
        "count": int(n),
        "accuracy": float((pred == y_true).mean()),
        f"top_{k}_accuracy": float((topk == y_true[:, None]).any(axis=1).mean()),
        "top_k": k,
        "per_class": per_class,
        "macro_f1": macro,
        "weighted_f1": weighted,
        "confusion_matrix": cm.tolist(),
        "labels": list(labels),
        "ece": expected_calibration_error(probs, y_true),
        "confidently_wrong": [
            {
                "id": ids[i] if ids else str(i),
                "true": labels[y_true[i]],
                "predicted": labels[pred[i]],
                "confidence": float(conf[i]),
            }
            for i in wrong
        ],
    }
