"""Shared pieces of a validation report: the outcome type, capped listings, summary statistics."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Listings of paths or line numbers in a report stop here; the count next to them stays exact.
MAX_LISTED = 200


@dataclass
class Outcome:
    report: dict[str, Any]
    labels: list[str]
    num_examples: int
    invalid_reason: str | None = None
    manifest: list[dict[str, Any]] = field(default_factory=list)


def listing(items: list[Any]) -> dict[str, Any]:
    return {"count": len(items), "items": items[:MAX_LISTED], "truncated": len(items) > MAX_LISTED}


def summary(values: list[int] | list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(statistics.fmean(ordered), 3),
        "median": statistics.median(ordered),
        "p95": p95,
    }


def class_balance(counts: Counter[str] | dict[str, int]) -> dict[str, Any]:
    """Imbalance ratio (largest / smallest non-empty class) and the classes too small to split."""
    nonzero = {k: v for k, v in counts.items() if v > 0}
    ratio = round(max(nonzero.values()) / min(nonzero.values()), 3) if nonzero else None
    small = {k: v for k, v in sorted(counts.items()) if v < 2}
    return {"imbalance_ratio": ratio, "small_classes": small}


def balance_warnings(balance: dict[str, Any], warn_ratio: float = 10.0) -> list[str]:
    warnings = []
    if balance["small_classes"]:
        names = ", ".join(f"{k} ({v})" for k, v in balance["small_classes"].items())
        warnings.append(f"classes with fewer than 2 examples cannot be split for evaluation: {names}")
    ratio = balance["imbalance_ratio"]
    if ratio is not None and ratio >= warn_ratio:
        warnings.append(f"classes are imbalanced: the largest is {ratio:g}x the smallest")
    return warnings
