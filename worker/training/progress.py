"""Progress accounting over the whole job and the Keras callback that reports it, polls for cancellation
every batch, checkpoints every epoch and applies early stopping (with state that survives a resume)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import keras

from worker.training.callbacks import Progress, TrainingCallbacks
from worker.training.errors import TrainingCancelled


class ProgressTracker:
    """Counts work units (batches) over every phase; ``percent`` and ETA are for the whole job."""

    def __init__(self, callbacks: TrainingCallbacks, total_units: int, total_epochs: int) -> None:
        self.cb = callbacks
        self.total = max(1, total_units)
        self.total_epochs = total_epochs
        self.done = 0
        self._t0 = time.monotonic()
        self._done_at_start = 0
        self._last_report = 0.0

    def skip(self, units: int) -> None:
        """Work finished before a resume: counted as done, not used for the ETA."""
        self.done += units
        self._done_at_start = self.done

    def step(self, epoch: int, batch: int, batches: int, phase: str, units: int = 1, force: bool = False) -> None:
        self.done = min(self.total, self.done + units)
        self.check_cancel()
        now = time.monotonic()
        if not force and now - self._last_report < 0.2 and batch < batches:
            return
        self._last_report = now
        fresh = self.done - self._done_at_start
        eta = (now - self._t0) / fresh * (self.total - self.done) if fresh > 0 else None
        self.cb.on_progress(
            Progress(
                epoch=epoch,
                total_epochs=self.total_epochs,
                batch=batch,
                batches=batches,
                percent=round(100.0 * self.done / self.total, 2),
                eta_seconds=eta,
                phase=phase,
            )
        )

    def check_cancel(self) -> None:
        if self.cb.should_cancel():
            raise TrainingCancelled("training cancelled on request")


class EngineCallback(keras.callbacks.Callback):
    """Bridges Keras ``fit`` to the engine: progress and cancel per batch, metrics/checkpoint/early
    stopping per epoch. ``on_checkpoint(epoch_in_phase, stopped)`` persists the state."""

    def __init__(
        self,
        *,
        tracker: ProgressTracker,
        callbacks: TrainingCallbacks,
        phase: str,
        epoch_offset: int,
        steps: int,
        history: list[dict[str, Any]],
        es_state: dict[str, Any] | None,
        es_config: Any,
        on_checkpoint: Callable[[int, bool, bool], None],
        lr_getter: Callable[[], float],
    ) -> None:
        super().__init__()
        self.tracker = tracker
        self.cb = callbacks
        self.phase = phase
        self.epoch_offset = epoch_offset  # global epochs before this phase
        self.steps = steps
        self.history = history
        self.es_state = es_state
        self.es = es_config
        self.on_checkpoint = on_checkpoint
        self.lr_getter = lr_getter
        self._t_epoch = 0.0
        self._epoch = 0
        self._batches_seen = 0
        self._lr = float("nan")

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._t_epoch = time.monotonic()
        self._epoch = epoch
        self._batches_seen = 0
        self._lr = self.lr_getter()  # the rate the epoch starts with (a schedule may end it near 0)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # With steps_per_execution > 1 Keras reports once per execution, with the index of its last step.
        units = max(1, batch + 1 - self._batches_seen)
        self._batches_seen = batch + 1
        self.tracker.step(self.epoch_offset + self._epoch + 1, batch + 1, self.steps, self.phase, units=units)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        global_epoch = self.epoch_offset + epoch + 1
        metrics: dict[str, float] = {}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in logs and logs[key] is not None:
                metrics[key] = float(logs[key])
        metrics["learning_rate"] = self._lr
        metrics["seconds"] = round(time.monotonic() - self._t_epoch, 3)
        self.history.append({"epoch": global_epoch, "phase": self.phase, **metrics})
        improved, stop = self._early_stopping(metrics, global_epoch)
        if stop:
            self.model.stop_training = True
        self.on_checkpoint(epoch + 1, improved, stop)
        self.cb.on_epoch_end(global_epoch, metrics)
        self.cb.log(
            f"epoch {global_epoch}/{self.tracker.total_epochs} ({self.phase}): "
            + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        )
        self.tracker.step(global_epoch, self.steps, self.steps, self.phase, units=0, force=True)

    def _early_stopping(self, metrics: dict[str, float], global_epoch: int) -> tuple[bool, bool]:
        if self.es is None or self.es_state is None:
            return False, False
        value = metrics.get(self.es.monitor)
        if value is None or math.isnan(value):
            return False, False
        best = self.es_state.get("best")
        higher = self.es.monitor.endswith("accuracy")
        if best is None or (value > best + self.es.min_delta if higher else value < best - self.es.min_delta):
            self.es_state.update(best=value, wait=0, best_epoch=global_epoch)
            return True, False
        self.es_state["wait"] = int(self.es_state.get("wait", 0)) + 1
        if self.es_state["wait"] >= self.es.patience:
            self.cb.log(
                f"early stopping after epoch {global_epoch}: best {self.es.monitor}={best:.4g} at "
                f"epoch {self.es_state.get('best_epoch')}"
            )
            return False, True
        return False, False
