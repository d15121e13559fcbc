"""Layer names of a stored ``.keras`` base, read from its ``config.json`` without TensorFlow, so that a job's
``hyperparameters.unfreeze_from_layer`` is checked at submit time for uploaded bases and earlier model versions
as it is for catalog bases.

The names are those the engine picks from (``worker/training/bases.py``): for an image model this service
exported (top-level layers ``base``, ``pool`` and ``head``), the layers of its ``base``; for any other image
model, its top-level layers (a ``base.feature_layer`` cuts that list short, which only the engine checks). For a
text model (string input) none are recorded: the engine picks among its KerasHub backbone's layers. They are written
once, as ``<key>.layers.json`` beside the stored ``.keras`` file (an upload, or a model version's artifact); a
base without that file is checked by the engine only.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from app.storage import ArtifactStore

MAX_CONFIG_BYTES = 32 * 1024 * 1024
EXPORTED_PARTS = {"base", "pool", "head"}


class NotAKerasModel(ValueError):
    """The file is not a Keras v3 model this module can read."""


def layers_key(keras_key: str) -> str:
    return f"{keras_key}.layers.json"


def _layers(config: Any) -> list[dict[str, Any]]:
    layers = config.get("config", {}).get("layers") if isinstance(config, dict) else None
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise NotAKerasModel("config.json describes no layers (not a Functional or Sequential model)")
    return layers


def _name(layer: dict[str, Any]) -> str:
    name = layer.get("name") or (layer.get("config") or {}).get("name")
    if not isinstance(name, str):
        raise NotAKerasModel("a layer in config.json has no name")
    return name


def _takes_text(layers: list[dict[str, Any]]) -> bool:
    return any(
        layer.get("class_name") == "InputLayer" and (layer.get("config") or {}).get("dtype") == "string"
        for layer in layers
    )


def base_layer_names(path: Path) -> list[str] | None:
    """The names ``unfreeze_from_layer`` may take for the ``.keras`` file at ``path``, in model order; None for
    a text model, whose backbone (a KerasHub model) lists its layers only once loaded."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise NotAKerasModel(f"config.json is {info.file_size} bytes; at most {MAX_CONFIG_BYTES}")
            config = json.loads(archive.read(info))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise NotAKerasModel(f"not a .keras file: {exc}") from exc
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        raise NotAKerasModel(f"config.json is not valid JSON: {exc}") from exc
    layers = _layers(config)
    if _takes_text(layers):
        return None
    names = [_name(layer) for layer in layers]
    if EXPORTED_PARTS <= set(names):
        return [_name(layer) for layer in _layers(layers[names.index("base")])]
    return names


def record_layer_names(store: ArtifactStore, keras_key: str, names: list[str] | None) -> None:
    """Store ``names`` beside the ``.keras`` file stored at ``keras_key`` (nothing for None)."""
    if names is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "layers.json"
        path.write_text(json.dumps(names))
        store.put_file(layers_key(keras_key), path, move=True)


def stored_layer_names(store: ArtifactStore, keras_key: str) -> list[str] | None:
    """The names recorded for the ``.keras`` file at ``keras_key``; None when none were recorded."""
    key = layers_key(keras_key)
    if not store.exists(key):
        return None
    names = json.loads(store.read_bytes(key))
    return [str(name) for name in names] if isinstance(names, list) else None
