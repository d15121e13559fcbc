"""The image path end to end on tiny data: strategies, export parity, resume, determinism, cancel, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.training.conftest import RecordingCallbacks, make_image_tree
from worker.training.data import DataSource
from worker.training.engine import train
from worker.training.errors import InvalidSpecError, TrainingCancelled
from worker.training.spec import JobSpec

SMALL_BASE = {"kind": "catalog", "name": "MobileNetV2", "weights": "none", "alpha": 0.35}


def tiny_spec(tiny: Path, **overrides: Any) -> JobSpec:
    """Gradient strategies run on a tiny uploaded CNN: tracing MobileNetV2's backward pass costs ~50 s on
    2 cores, which the feature-extraction tests (forward only) do not pay."""
    return image_spec(base={"kind": "keras_file", "path": str(tiny)}, preprocessing="rescale_1_255", **overrides)


def image_spec(**overrides: Any) -> JobSpec:
    hp = {"epochs": 2, "batch_size": 8, "image_size": 32, **overrides.pop("hyperparameters", {})}
    payload: dict[str, Any] = {"task": "image_classification", "base": SMALL_BASE, "hyperparameters": hp}
    payload.update(overrides)
    return JobSpec.model_validate(payload)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    return make_image_tree(root, per_class=8, formats=("png", "jpg", "bmp", "gif", "webp"))


@pytest.fixture(scope="module")
def fe_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, RecordingCallbacks, Path]:
    """Catalog base (MobileNetV2, random weights), frozen: the base runs once, the head on cached features."""
    workdir = tmp_path_factory.mktemp("fe")
    cb = RecordingCallbacks()
    result = train(image_spec(), DataSource("image_folders", data_root), cb, workdir)
    return result, cb, workdir


@pytest.fixture(scope="module")
def ft_run(data_root: Path, tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Fine-tuning a small uploaded base, exported in every format."""
    spec = tiny_spec(
        tiny_base,
        strategy="fine_tune",
        hyperparameters={"epochs": 3, "learning_rate": 3e-3, "early_stopping": None},
        export_formats=["keras", "savedmodel", "tflite_float32", "tflite_float16", "tflite_int8"],
    )
    return train(spec, DataSource("image_folders", data_root), None, tmp_path_factory.mktemp("ft"))


def test_feature_extraction_result_and_callbacks(fe_run: tuple[Any, RecordingCallbacks, Path]) -> None:
    result, cb, workdir = fe_run
    assert result.labels == ["blue", "green", "red"]
    assert result.epochs_completed == 2 and len(result.history) == 2
    assert result.trainable_params == 1280 * 3 + 3  # the head only
    assert result.total_params > 400_000
    assert result.input_signature == {
        "type": "image",
        "height": 32,
        "width": 32,
        "channels": 3,
        "dtype": "uint8",
    }
    assert set(result.splits) == {"train", "val", "test"} and result.splits["test"]
    m = result.metrics
    for key in (
        "accuracy",
        "top_3_accuracy",
        "per_class",
        "macro_f1",
        "weighted_f1",
        "confusion_matrix",
        "ece",
        "confidently_wrong",
    ):
        assert key in m
    assert np.asarray(m["confusion_matrix"]).sum() == len(result.splits["test"])
    assert [e for e, _ in cb.epochs] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"} <= set(cb.epochs[0][1])
    assert cb.progress[-1].percent == pytest.approx(100.0)
    assert any("cache features" in line for line in cb.logs)  # frozen base ran once
    assert (workdir / "checkpoints" / "state.json").exists()
    assert result.artifacts["keras"].parity == 1.0
    result.to_dict()  # JSON-friendly


def test_fine_tune_learns_and_every_export_agrees(ft_run: Any, data_root: Path) -> None:
    import json

    from PIL import Image

    from worker.training.inference import load_for_inference, make_predict_fn

    result = ft_run
    assert result.metrics["accuracy"] >= 2 / 3  # colours are easy
    assert set(result.artifacts) == {"keras", "savedmodel", "tflite_float32", "tflite_float16", "tflite_int8"}
    for fmt, art in result.artifacts.items():
        assert Path(art.path).exists() and art.size_bytes > 0, fmt
        assert art.parity is not None and art.parity >= 2 / 3, (fmt, art.parity)
    assert result.artifacts["keras"].parity == 1.0 and result.artifacts["tflite_float32"].parity == 1.0
    export_dir = Path(result.artifacts["keras"].path).parent
    assert json.loads((export_dir / "labels.json").read_text()) == result.labels
    model = load_for_inference(result.artifacts["keras"].path)
    img = Image.open(data_root / "red" / "red_0.png").convert("RGB").resize((32, 32))
    batch = np.stack([np.asarray(img, dtype="uint8")] * 2)
    probs = make_predict_fn(model)(batch)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_domain_adaptation_from_model_version(ft_run: Any, data_root: Path, tmp_path: Path) -> None:
    source = ft_run
    spec = JobSpec.model_validate(
        {
            "task": "image_classification",
            "strategy": "fine_tune",
            "base": {
                "kind": "model_version",
                "path": source.artifacts["keras"].path,
                "model_version_id": "mv-1",
            },
            "hyperparameters": {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3},
        }
    )
    result = train(spec, DataSource("image_folders", data_root, splits=source.splits), None, tmp_path)
    assert result.splits == source.splits
    assert result.source_accuracy_before == pytest.approx(source.metrics["accuracy"])
    assert result.target_accuracy_after == result.metrics["accuracy"]
    assert result.base["model_version_id"] == "mv-1"
    assert result.input_signature["height"] == 32


def test_partial_and_peft_trainable_params(data_root: Path, tiny_base: Path, tmp_path: Path) -> None:
    data = DataSource("image_folders", data_root)
    head = 32 * 3 + 3
    full = train(tiny_spec(tiny_base, strategy="fine_tune", hyperparameters={"epochs": 1}), data, None, tmp_path / "ft")
    partial = train(
        tiny_spec(tiny_base, strategy="partial", hyperparameters={"epochs": 1, "unfreeze_from_layer": "conv2"}),
        data,
        None,
        tmp_path / "partial",
    )
    top1 = train(
        tiny_spec(tiny_base, strategy="partial", hyperparameters={"epochs": 1, "unfreeze_top_n": 1}),
        data,
        None,
        tmp_path / "top1",
    )
    peft = train(tiny_spec(tiny_base, strategy="peft", hyperparameters={"epochs": 1}), data, None, tmp_path / "peft")
    conv2, conv3 = 3 * 3 * 8 * 16 + 16, 3 * 3 * 16 * 32 + 32
    assert partial.trainable_params == head + conv2 + conv3  # from conv2 on; BatchNorm stays frozen
    assert top1.trainable_params == head + conv3
    assert peft.trainable_params == head + (8 + 8) + (16 + 16) + 16 + 32  # BN scale/offset and biases
    assert full.trainable_params > partial.trainable_params > peft.trainable_params
    base_params = full.total_params - head
    assert peft.trainable_params - head <= 0.05 * base_params * 2  # tiny base: BN share is larger than usual


def test_peft_on_catalog_base_trains_under_five_percent() -> None:
    from worker.training.models import build_model, count_params

    spec = image_spec(strategy="peft")
    built = build_model(spec, ["a", "b"])
    base_trainable = count_params(built.base.trainable_variables)
    assert 0 < base_trainable <= 0.05 * count_params(built.base.weights)


def test_two_phase_with_augmentation_and_resume_after_crash(data_root: Path, tiny_base: Path, tmp_path: Path) -> None:
    class Crash(RuntimeError):
        pass

    class CrashAfterEpoch(RecordingCallbacks):
        def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
            super().on_epoch_end(epoch, metrics)
            if epoch == 2:
                raise Crash()

    spec = tiny_spec(
        tiny_base,
        strategy="two_phase",
        augmentation={"flip": "horizontal", "rotation": 0.05},
        hyperparameters={
            "epochs": 3,
            "head_epochs": 1,
            "early_stopping": None,
            "lr_schedule": "cosine",
            "optimizer": "adamw",
        },
    )
    data = DataSource("image_folders", data_root)
    with pytest.raises(Crash):
        train(spec, data, CrashAfterEpoch(), tmp_path)
    cb = RecordingCallbacks()
    result = train(spec, data, cb, tmp_path)
    assert result.resumed_from_epoch == 2
    assert result.epochs_completed == 3
    assert [h["phase"] for h in result.history] == ["head", "finetune", "finetune"]
    assert [e for e, _ in cb.epochs] == [3]
    lrs = [h["learning_rate"] for h in result.history]
    assert lrs[1] < lrs[0]  # phase 2 runs at a lower learning rate


def test_early_stopping_restores_best(data_root: Path, tiny_base: Path, tmp_path: Path) -> None:
    spec = tiny_spec(
        tiny_base,
        strategy="fine_tune",
        hyperparameters={
            "epochs": 6,
            "learning_rate": 0.5,
            "optimizer": "sgd",
            "early_stopping": {"patience": 1, "monitor": "val_loss"},
        },
    )
    cb = RecordingCallbacks()
    result = train(spec, DataSource("image_folders", data_root), cb, tmp_path)
    assert result.epochs_completed <= 6
    if result.epochs_completed < 6:
        assert any("early stopping" in line for line in cb.logs)


def test_determinism_same_seed_same_metrics(data_root: Path, tiny_base: Path, tmp_path: Path) -> None:
    spec = tiny_spec(
        tiny_base,
        strategy="fine_tune",
        augmentation={"flip": "horizontal"},
        hyperparameters={"epochs": 2, "class_weights": "balanced", "label_smoothing": 0.1},
    )
    runs = [train(spec, DataSource("image_folders", data_root), None, tmp_path / f"r{i}") for i in range(2)]
    for a, b in zip(runs[0].history, runs[1].history, strict=True):
        for key in ("loss", "val_loss", "accuracy"):
            assert a[key] == pytest.approx(b[key], abs=1e-6)
    assert runs[0].metrics["ece"] == pytest.approx(runs[1].metrics["ece"], abs=1e-6)
    assert runs[0].splits == runs[1].splits


def test_cancel_stops_within_a_batch(data_root: Path, tiny_base: Path, tmp_path: Path) -> None:
    cb = RecordingCallbacks(cancel_after_batches=3)
    spec = tiny_spec(tiny_base, strategy="fine_tune", hyperparameters={"epochs": 5, "batch_size": 4})
    with pytest.raises(TrainingCancelled):
        train(spec, DataSource("image_folders", data_root), cb, tmp_path)
    assert cb.polls == 4
    assert not cb.epochs  # stopped inside the first epoch (5 batches of 4)


def test_few_shot_prototypes_exported_as_keras(data_root: Path, tiny_base: Path, tmp_path: Path) -> None:
    spec = tiny_spec(tiny_base, strategy="few_shot", hyperparameters={"mixed_precision": True})
    r = train(spec, DataSource("image_folders", data_root), None, tmp_path)
    assert r.trainable_params == 0 and r.epochs_completed == 0
    assert any("mixed precision" in n for n in r.notes)  # no GPU here: float32, said so
    assert r.artifacts["keras"].parity == 1.0
    assert r.metrics["accuracy"] >= 2 / 3


def test_invalid_spec_errors(data_root: Path, tmp_path: Path) -> None:
    data = DataSource("image_folders", data_root)
    with pytest.raises(
        InvalidSpecError, match=r"\$KERAS_HOME/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35"
    ):
        train(image_spec(base={**SMALL_BASE, "weights": "imagenet"}), data, None, tmp_path)
    with pytest.raises(InvalidSpecError, match="no layer 'nope'"):
        train(
            image_spec(strategy="partial", hyperparameters={"unfreeze_from_layer": "nope"}),
            data,
            None,
            tmp_path,
        )
    text = JobSpec.model_validate({"task": "text_classification"})
    with pytest.raises(InvalidSpecError, match="needs a text file"):
        train(text, data, None, tmp_path)
    with pytest.raises(InvalidSpecError, match="does not exist"):
        train(
            image_spec(base={"kind": "keras_file", "path": str(tmp_path / "missing.keras")}),
            data,
            None,
            tmp_path,
        )


def test_classic_vgg16_recipe_architecture() -> None:
    import keras

    from worker.training.models import build_model

    spec = JobSpec.model_validate(
        {
            "task": "image_classification",
            "base": {"kind": "catalog", "name": "VGG16", "weights": "none"},
            "head": {"pooling": "flatten", "hidden": [256], "dropout": 0.0},
            "hyperparameters": {"epochs": 10, "batch_size": 32, "optimizer": "adam", "image_size": 32},
            "preprocessing": "rescale_1_255",
        }
    )
    built = build_model(spec, ["a", "b", "c", "d"])
    m = built.model
    assert m.inputs[0].dtype == "uint8"
    prep = m.get_layer("preprocess").layers
    assert len(prep) == 1 and isinstance(prep[0], keras.layers.Rescaling) and prep[0].scale == pytest.approx(1 / 255)
    assert m.get_layer("base").name == "base" and not m.get_layer("base").trainable
    assert isinstance(m.get_layer("pool"), keras.layers.Flatten)
    dense = [layer for layer in built.head.layers if isinstance(layer, keras.layers.Dense)]
    assert [(d.units, d.activation.__name__) for d in dense] == [(256, "relu"), (4, "softmax")]
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in built.head.layers)


def test_out_of_memory_retries_once_at_half_batch(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tensorflow as tf

    from worker.training import trainer

    seen: list[int] = []

    def fake_run(self: Any) -> Any:
        seen.append(self.batch_size)
        if len(seen) == 1:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return self.notes

    monkeypatch.setattr(trainer.JobRun, "run", fake_run)
    notes = train(
        image_spec(hyperparameters={"batch_size": 16}), DataSource("image_folders", data_root), None, tmp_path
    )
    assert seen == [16, 8]
    assert notes == ["out of memory: retried once with batch size 8"]
