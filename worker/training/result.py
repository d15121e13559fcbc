"""Result types returned by ``train`` (plain dataclasses, JSON-serialisable, no TensorFlow)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ArtifactInfo:
    """One exported artifact. ``parity`` is the top-1 agreement with the Keras model on the test split
    (1.0 for the Keras model itself; None when there was nothing to compare on)."""

    path: str
    size_bytes: int
    parity: float | None = None


@dataclass
class TrainResult:
    labels: list[str]
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    artifacts: dict[str, ArtifactInfo]
    trainable_params: int
    total_params: int
    input_signature: dict[str, Any]
    splits: dict[str, list[str]]
    epochs_completed: int
    resumed_from_epoch: int | None = None
    notes: list[str] = field(default_factory=list)
    source_accuracy_before: float | None = None
    target_accuracy_after: float | None = None
    strategy: str = ""
    base: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
