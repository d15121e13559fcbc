"""Per-job checkpoints under ``workdir/checkpoints``: weights and optimizer state after every epoch plus a
small JSON state, so that ``train`` called again with the same workdir resumes from the last epoch."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

STATE_FILE = "state.json"


class Checkpointer:
    def __init__(self, workdir: Path) -> None:
        self.dir = Path(workdir) / "checkpoints"
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- state --------------------------------------------------------------------------------------
    def load_state(self, fingerprint: str) -> dict[str, Any] | None:
        path = self.dir / STATE_FILE
        if not path.exists():
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if state.get("fingerprint") != fingerprint:
            self.clear()
            return None
        return dict(state)

    def save_state(self, state: dict[str, Any]) -> None:
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1, default=float), encoding="utf-8")
        os.replace(tmp, self.dir / STATE_FILE)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- weights and optimizer ------------------------------------------------------------------------
    def weights_path(self, name: str) -> Path:
        return self.dir / f"{name}.weights.npz"

    def save_weights(self, model: Any, name: str) -> None:
        """All of the model's weights, in its own (build-deterministic) order. A plain npz: ~10x faster
        than ``model.save_weights`` (which also rewrites the optimizer state) at every epoch."""
        self._save_npz(self.weights_path(name), [v.numpy() for v in model.weights])

    def load_weights(self, model: Any, name: str) -> bool:
        values = self._load_npz(self.weights_path(name))
        if values is None:
            return False
        return _assign_all(list(model.weights), values)

    def save_optimizer(self, optimizer: Any, name: str) -> None:
        self._save_npz(self.dir / f"{name}.optimizer.npz", [np.asarray(v) for v in optimizer.variables])

    def load_optimizer(self, optimizer: Any, trainable_variables: list[Any], name: str) -> bool:
        values = self._load_npz(self.dir / f"{name}.optimizer.npz")
        if values is None:
            return False
        if not optimizer.built:
            optimizer.build(trainable_variables)
        return _assign_all(list(optimizer.variables), values)

    @staticmethod
    def _atomic_savez(final: Path, arrays: dict[str, np.ndarray]) -> None:
        tmp = final.with_name(f"tmp_{final.name}")
        with tmp.open("wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
        os.replace(tmp, final)

    @classmethod
    def _save_npz(cls, final: Path, values: list[np.ndarray]) -> None:
        cls._atomic_savez(final, {f"v{i}": v for i, v in enumerate(values)})

    @staticmethod
    def _load_npz(path: Path) -> list[np.ndarray] | None:
        if not path.exists():
            return None
        with np.load(path) as data:
            return [data[f"v{i}"] for i in range(len(data.files))]

    # -- cached features ------------------------------------------------------------------------------
    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        self._atomic_savez(self.dir / f"{name}.npz", arrays)

    def load_arrays(self, name: str) -> dict[str, np.ndarray] | None:
        path = self.dir / f"{name}.npz"
        if not path.exists():
            return None
        with np.load(path) as data:
            return {k: data[k] for k in data.files}


def _assign_all(variables: list[Any], values: list[np.ndarray]) -> bool:
    """Assign saved values in order; False (and nothing assigned) when the structure does not match."""
    if len(variables) != len(values):
        return False
    if any(tuple(var.shape) != tuple(val.shape) for var, val in zip(variables, values, strict=True)):
        return False
    for var, val in zip(variables, values, strict=True):
        var.assign(val)
    return True
