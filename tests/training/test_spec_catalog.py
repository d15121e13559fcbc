"""Spec validation and catalog data: no TensorFlow needed (the API imports these modules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from worker.training.catalog import IMAGE_BASES, TEXT_BASES, list_bases
from worker.training.spec import JobSpec

REPO = Path(__file__).resolve().parents[2]


def test_spec_and_catalog_import_without_tensorflow() -> None:
    code = (
        "import sys; import worker, worker.training, worker.training.spec, worker.training.catalog, "
        "worker.training.errors, worker.training.callbacks, worker.training.result, worker.training.data, "
        "worker.training.engine;"
        "heavy = [m for m in ('tensorflow', 'keras', 'keras_hub', 'celery', 'sqlalchemy', 'fastapi') "
        "if m in sys.modules]; print(heavy); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_defaults_image_and_text() -> None:
    img = JobSpec.model_validate({"task": "image_classification"})
    assert img.base.kind == "catalog" and img.base.name == "MobileNetV2"
    assert img.strategy == "feature_extraction" and img.export_formats == ["keras"]
    txt = JobSpec.model_validate({"task": "text_classification"})
    assert txt.base.kind == "text_preset" and txt.base.name == "all-MiniLM-L6-v2"


@pytest.mark.parametrize(
    "payload",
    [
        {"task": "image_classification", "bogus": 1},
        {"task": "image_classification", "base": {"kind": "text_preset"}},
        {"task": "text_classification", "base": {"kind": "catalog", "name": "MobileNetV2"}},
        {"task": "image_classification", "strategy": "zero_shot"},
        {"task": "image_classification", "base": {"kind": "keras_file"}},
        {"task": "text_classification", "export_formats": ["tflite_int8"]},
        {"task": "image_classification", "hyperparameters": {"validation_split": 0.5, "test_split": 0.5}},
        {
            "task": "image_classification",
            "hyperparameters": {"unfreeze_top_n": 3, "unfreeze_from_layer": "x"},
        },
    ],
)
def test_invalid_specs_rejected(payload: dict) -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate(payload)


def test_classic_vgg16_recipe_is_one_spec() -> None:
    spec = JobSpec.model_validate(
        {
            "task": "image_classification",
            "base": {"kind": "catalog", "name": "VGG16"},
            "head": {"pooling": "flatten", "hidden": [256], "dropout": 0.0, "activation": "relu"},
            "hyperparameters": {"epochs": 10, "batch_size": 32, "optimizer": "adam", "early_stopping": None},
            "preprocessing": "rescale_1_255",
        }
    )
    assert spec.hyperparameters.image_hw() is None  # VGG16's own 224x224
    assert spec.export_formats == ["keras"]


def test_catalog_listing_and_availability(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MobileNetV2",
        "MobileNetV3Small",
        "MobileNetV3Large",
        "EfficientNetB0",
        "EfficientNetB3",
        "EfficientNetV2B0",
        "ResNet50",
        "VGG16",
        "DenseNet121",
        "ConvNeXtTiny",
    ):
        assert name in IMAGE_BASES
    assert TEXT_BASES["all-MiniLM-L6-v2"].default
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"x")
    bases = {b["name"]: b for b in list_bases()}
    assert bases["ResNet50"]["available"] is True
    assert bases["VGG16"]["available"] is False
    assert bases["ResNet50"]["param_count"] == 23_587_712
    assert bases["MobileNetV2"]["weights_file"] == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert bases["all-MiniLM-L6-v2"]["available"] is True
    assert IMAGE_BASES["MobileNetV2"].weights_file(0.35, 96).endswith("_0.35_96_no_top.h5")
