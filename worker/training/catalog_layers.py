"""Writes ``catalog_layers.json``: the layer names of every catalog image base, so the API can check
``hyperparameters.unfreeze_from_layer`` at submit time without TensorFlow.

The names are those the engine looks up (``models._unfreeze_top``): the layers of the backbone built as
``bases._catalog_image_base`` builds it (``include_top=False``). Each base is built twice (and with two
width multipliers where it has one) in one Keras session; only names the same in every build are kept:
Keras numbers unnamed layers from a per-process counter (``re_lu_3``, ``input_layer_1``), so such a name
depends on what the worker built before, and the second build's differ from the first's.

    python -m worker.training.catalog_layers      # needs TensorFlow; rewrites the JSON beside this file
"""

from __future__ import annotations

import json
import sys

from worker.training.catalog import CATALOG_LAYERS_PATH, IMAGE_BASES

BUILD_SIZE = 64  # layer names do not depend on the input size; a small one builds fast
ALPHAS = (0.35, 1.0)


def _names(fn_name: str, alpha: float | None) -> list[str]:
    import keras

    fn = getattr(keras.applications, fn_name)
    kwargs: dict[str, object] = {"include_top": False, "weights": None, "input_shape": (BUILD_SIZE, BUILD_SIZE, 3)}
    if alpha is not None:
        kwargs["alpha"] = alpha
    model = fn(**kwargs)
    return [layer.name for layer in model.layers]  # no clear_session: auto-numbered names must differ


def stable_names(fn_name: str, supports_alpha: bool) -> list[str]:
    """The backbone's layer names, in order, that every build agrees on."""
    builds = [_names(fn_name, a) for a in (ALPHAS if supports_alpha else (None, None))]
    common = set(builds[0]).intersection(*builds[1:])
    return [name for name in builds[0] if name in common]


def main() -> int:
    out = {name: stable_names(info.keras_app_fn, info.supports_alpha) for name, info in IMAGE_BASES.items()}
    CATALOG_LAYERS_PATH.write_text(json.dumps(out, separators=(",", ":"), sort_keys=True) + "\n")
    for name, names in out.items():
        print(f"{name}: {len(names)} layers", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
