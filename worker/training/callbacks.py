"""The callback protocol through which the engine reports progress and polls for cancellation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Progress:
    """Where a job stands. ``percent`` covers the whole job (all phases), 0-100."""

    epoch: int
    total_epochs: int
    batch: int
    batches: int
    percent: float
    eta_seconds: float | None
    phase: str = "train"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@runtime_checkable
class TrainingCallbacks(Protocol):
    def on_progress(self, progress: Progress) -> None: ...

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def should_cancel(self) -> bool: ...

    def log(self, message: str) -> None: ...


class NullCallbacks:
    """No-op implementation; subclass it and override what you need."""

    def on_progress(self, progress: Progress) -> None:
        return None

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        return None

    def should_cancel(self) -> bool:
        return False

    def log(self, message: str) -> None:
        return None
