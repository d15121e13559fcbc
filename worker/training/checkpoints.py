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
        return self.dir / f"{name}.weights.h5"

    def save_weights(self, model: Any, name: str) -> None:
        final = self.weights_path(name)
        tmp = final.with_name(f"tmp_{final.name}")
        model.save_weights(tmp)
        os.replace(tmp, final)

    def load_weights(self, model: Any, name: str) -> bool:
        path = self.weights_path(name)
        if not path.exists():
            return False
        model.load_weights(path)
        return True

    def save_optimizer(self, optimizer: Any, name: str) -> None:
        arrays = {f"v{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)}
        final = self.dir / f"{name}.optimizer.npz"
        tmp = final.with_name(f"tmp_{final.name}")
        with tmp.open("wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, final)

    def load_optimizer(self, optimizer: Any, trainable_variables: list[Any], name: str) -> bool:
        path = self.dir / f"{name}.optimizer.npz"
        if not path.exists():
            return False
        if not optimizer.built:
            optimizer.build(trainable_variables)
        with np.load(path) as data:
            values = [data[f"v{i}"] for i in range(len(data.files))]
        variables = list(optimizer.variables)
        if len(values) != len(variables):
            return False
        for var, value in zip(variables, values, strict=True):
            if tuple(var.shape) != tuple(value.shape):
                return False
        for var, value in zip(variables, values, strict=True):
            var.assign(value)
        return True

    # -- cached features ------------------------------------------------------------------------------
    def save_arrays(self, name: str, **arrays: np.ndarray) -> None:
        final = self.dir / f"{name}.npz"
        tmp = final.with_name(f"tmp_{final.name}")
        with tmp.open("wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, final)

    def load_arrays(self, name: str) -> dict[str, np.ndarray] | None:
        path = self.dir / f"{name}.npz"
        if not path.exists():
            return None
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
