"""The in-model preprocessing layers reproduce keras.applications' preprocess_input and reload safely."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.mark.parametrize(
    ("kind", "module"),
    [("caffe", "resnet50"), ("torch", "densenet"), ("rescale_minus1_1", "mobilenet_v2")],
)
def test_preprocessing_matches_keras_applications(kind: str, module: str, tmp_path: Path) -> None:
    import keras

    from worker.training.bases import _preprocess_model

    x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype("float32")
    expected = getattr(keras.applications, module).preprocess_input(x.copy())
    seq = _preprocess_model(kind, (8, 8))
    assert seq is not None
    np.testing.assert_allclose(np.asarray(seq(x)), expected, rtol=1e-5, atol=1e-4)
    seq.save(tmp_path / "p.keras")
    again = keras.saving.load_model(tmp_path / "p.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(again(x)), expected, rtol=1e-5, atol=1e-4)


def test_catalog_bases_without_own_preprocessing_take_raw_pixels() -> None:
    from worker.training.catalog import IMAGE_BASES

    for name in ("EfficientNetB0", "EfficientNetV2B0", "MobileNetV3Small", "ConvNeXtTiny"):
        assert IMAGE_BASES[name].preprocessing == "none"  # these keras.applications rescale inside
