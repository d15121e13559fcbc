"""Building the pretrained part of a model: catalog image backbones, uploaded .keras bases, earlier model
versions, and keras-hub text presets. Preprocessing is made of standard Keras layers so it lives inside the
exported model."""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from worker.training.catalog import IMAGE_BASES, TEXT_BASES, image_weights_path, text_preset_dir
from worker.training.errors import InvalidSpecError
from worker.training.spec import JobSpec

IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


@dataclass
class BaseParts:
    """The reusable pieces a model is assembled from (see ``models.assemble``)."""

    kind: str  # "image" | "text"
    base: Any  # image: keras.Model named "base"; text: keras-hub backbone named "backbone"
    preprocess: Any = None  # image: keras.Sequential named "preprocess" or None; text: tokenizer preprocessor
    input_hw: tuple[int, int] | None = None
    pool: Any = None  # a pooling layer taken over from a source model, else None
    head: Any = None  # a head taken over from a source model (same labels), else None
    source_model: Any = None  # model_version: the source model, intact, for the before-adaptation score
    source_labels: list[str] | None = None
    describe: dict[str, Any] = field(default_factory=dict)


def preprocessing_layers(kind: str) -> list[keras.layers.Layer]:
    """Standard layers reproducing keras.applications preprocessing on float pixels in [0, 255]."""
    if kind == "none":
        return []
    if kind == "rescale_1_255":
        return [keras.layers.Rescaling(1.0 / 255.0, name="rescale_1_255")]
    if kind == "rescale_minus1_1":
        return [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale_minus1_1")]
    if kind == "torch":
        return [
            keras.layers.Rescaling(1.0 / 255.0, name="rescale_1_255"),
            keras.layers.Normalization(
                mean=list(TORCH_MEAN), variance=[s * s for s in TORCH_STD], name="imagenet_normalize"
            ),
        ]
    if kind == "caffe":
        # RGB -> BGR and mean subtraction as one fixed 1x1 convolution (no Lambda, loads in safe mode).
        kernel = np.zeros((1, 1, 3, 3), dtype="float32")
        for out_c in range(3):
            kernel[0, 0, 2 - out_c, out_c] = 1.0
        bias = -np.array(IMAGENET_MEAN_RGB[::-1], dtype="float32")
        conv = keras.layers.Conv2D(3, 1, name="caffe_bgr_mean", trainable=False)
        conv.build((None, None, None, 3))
        conv.set_weights([kernel, bias])
        return [conv]
    raise InvalidSpecError(f"unknown preprocessing {kind!r}")


def _preprocess_model(kind: str, hw: tuple[int, int]) -> keras.Sequential | None:
    layers = preprocessing_layers(kind)
    if not layers:
        return None
    seq = keras.Sequential([keras.Input((hw[0], hw[1], 3)), *layers], name="preprocess")
    return seq


def _catalog_image_base(spec: JobSpec) -> BaseParts:
    name = spec.base.name or "MobileNetV2"
    info = IMAGE_BASES.get(name)
    if info is None:
        raise InvalidSpecError(f"unknown image base {name!r}; catalog bases: {', '.join(IMAGE_BASES)}")
    hw = spec.hyperparameters.image_hw() or (info.input_size, info.input_size)
    if min(hw) < 32:
        raise InvalidSpecError(f"image size {hw} is too small for {name} (32x32 at least)")
    weights: str | None = None
    if spec.base.weights == "imagenet":
        path = image_weights_path(info, spec.base.alpha, hw[0] if hw[0] == hw[1] else None)
        if not path.exists():
            raise InvalidSpecError(
                f"ImageNet weights for {name} are not on this machine: put the file "
                f"$KERAS_HOME/models/{path.name} (here: {path}) in place, or use weights 'none'."
            )
        weights = "imagenet"
    fn = getattr(keras.applications, info.keras_app_fn)
    kwargs: dict[str, Any] = {"include_top": False, "weights": weights, "input_shape": (hw[0], hw[1], 3)}
    params = inspect.signature(fn).parameters
    if spec.base.alpha is not None:
        if "alpha" not in params:
            raise InvalidSpecError(f"{name} has no width multiplier (alpha)")
        kwargs["alpha"] = spec.base.alpha
    if "name" in params:
        kwargs["name"] = "base"
    try:
        base = fn(**kwargs)
    except ValueError as exc:
        raise InvalidSpecError(f"cannot build {name}: {exc}") from exc
    if base.name != "base":
        base = keras.Model(base.inputs, base.outputs, name="base")
    prep_kind = info.preprocessing if spec.preprocessing == "base_default" else spec.preprocessing
    return BaseParts(
        kind="image",
        base=base,
        preprocess=_preprocess_model(prep_kind, hw),
        input_hw=hw,
        describe={
            "kind": "catalog",
            "name": name,
            "weights": spec.base.weights,
            "alpha": spec.base.alpha,
            "preprocessing": prep_kind,
        },
    )


def read_labels_beside(path: Path) -> list[str] | None:
    candidate = path.parent / "labels.json"
    if not candidate.exists():
        return None
    try:
        data = json.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if isinstance(data, dict):
        data = data.get("labels")
    return [str(x) for x in data] if isinstance(data, list) else None


def load_keras_file(path: Path) -> keras.Model:
    if not path.is_file():
        raise InvalidSpecError(f"base model file {path} does not exist")
    from worker.training.inference import load_for_inference

    try:
        return load_for_inference(path)
    except InvalidSpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to load a user file is a user problem
        raise InvalidSpecError(f"cannot load {path.name} as a Keras model in safe mode: {exc}") from exc


def _has(model: keras.Model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)


def _feature_layer_output(model: keras.Model, feature_layer: str | None) -> Any:
    if feature_layer:
        if not _has(model, feature_layer):
            names = [layer.name for layer in model.layers][-12:]
            raise InvalidSpecError(f"base has no layer {feature_layer!r}; its last layers: {names}")
        return model.get_layer(feature_layer).output
    skip = (keras.layers.Dense, keras.layers.Dropout, keras.layers.Activation, keras.layers.Softmax)
    layers = list(model.layers)
    while len(layers) > 1 and isinstance(layers[-1], skip):
        layers.pop()
    return layers[-1].output


def _file_image_base(spec: JobSpec, model: keras.Model, labels: list[str] | None) -> BaseParts:
    shape = model.inputs[0].shape
    if len(shape) != 4 or shape[-1] != 3:
        raise InvalidSpecError(f"image base must take HxWx3 images, its input shape is {tuple(shape)}")
    hw_override = spec.hyperparameters.image_hw()
    hw = (int(shape[1]), int(shape[2])) if shape[1] and shape[2] else (hw_override or (224, 224))
    describe: dict[str, Any] = {
        "kind": spec.base.kind,
        "path": spec.base.path,
        "model_version_id": spec.base.model_version_id,
    }
    if _has(model, "base") and _has(model, "pool") and _has(model, "head"):
        # A model this service exported: reuse its pieces (preprocessing, base, pooling, head).
        prep = model.get_layer("preprocess") if _has(model, "preprocess") else None
        if spec.preprocessing != "base_default":
            prep = _preprocess_model(spec.preprocessing, hw)
        return BaseParts(
            kind="image",
            base=model.get_layer("base"),
            preprocess=prep,
            input_hw=hw,
            pool=model.get_layer("pool"),
            head=model.get_layer("head"),
            source_model=model,
            source_labels=labels,
            describe=describe,
        )
    feats = _feature_layer_output(model, spec.base.feature_layer)
    base = keras.Model(model.inputs, feats, name="base")
    prep_kind = "none" if spec.preprocessing == "base_default" else spec.preprocessing
    return BaseParts(
        kind="image",
        base=base,
        preprocess=_preprocess_model(prep_kind, hw),
        input_hw=hw,
        source_model=model if labels else None,
        source_labels=labels,
        describe=describe,
    )


def _text_preset_dir(spec: JobSpec) -> tuple[str, Path]:
    ref = spec.base.path or spec.base.name or ""
    if ref in TEXT_BASES:
        d = text_preset_dir(TEXT_BASES[ref])
        if d is None:
            raise InvalidSpecError(
                f"text base {ref!r} is not on this machine (no local preset folder); "
                "put the preset folder on disk and pass its path"
            )
        return ref, d
    p = Path(ref).expanduser()
    if p.is_dir() and (p / "config.json").exists():
        return p.name, p
    raise InvalidSpecError(
        f"unknown text base {ref!r}: give a catalog name ({', '.join(TEXT_BASES)}) or a "
        "local preset folder (Hugging Face or keras-hub format)"
    )


def _text_preset_base(spec: JobSpec) -> BaseParts:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import keras_hub

    from worker.training.layers import InlineVocabBertTokenizer

    name, folder = _text_preset_dir(spec)
    try:
        loaded = keras_hub.models.BertTokenizer.from_preset(str(folder))
        backbone = keras_hub.models.BertBackbone.from_preset(str(folder), name="backbone")
    except Exception as exc:  # noqa: BLE001
        raise InvalidSpecError(f"cannot load text base {name!r} from {folder}: {exc}") from exc
    tokenizer = InlineVocabBertTokenizer(vocabulary=list(loaded.vocabulary), lowercase=loaded.lowercase)
    seq_len = min(spec.hyperparameters.max_seq_length, int(getattr(backbone, "max_sequence_length", 512)))
    pre = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=seq_len, name="preprocessor")
    return BaseParts(
        kind="text",
        base=backbone,
        preprocess=pre,
        describe={"kind": "text_preset", "name": name, "path": str(folder), "max_seq_length": seq_len},
    )


def _file_text_base(spec: JobSpec, model: keras.Model, labels: list[str] | None) -> BaseParts:
    if not (_has(model, "preprocessor") and _has(model, "backbone") and _has(model, "pool")):
        raise InvalidSpecError(
            "a .keras text base must be a TransferLab text model (strings in); "
            "use a text preset folder for other backbones"
        )
    return BaseParts(
        kind="text",
        base=model.get_layer("backbone"),
        preprocess=model.get_layer("preprocessor"),
        pool=model.get_layer("pool"),
        head=model.get_layer("head") if _has(model, "head") else None,
        source_model=model,
        source_labels=labels,
        describe={
            "kind": spec.base.kind,
            "path": spec.base.path,
            "model_version_id": spec.base.model_version_id,
        },
    )


def build_base(spec: JobSpec) -> BaseParts:
    kind = spec.base.kind
    if kind == "catalog":
        return _catalog_image_base(spec)
    if kind == "text_preset":
        return _text_preset_base(spec)
    path = Path(spec.base.path or "")
    model = load_keras_file(path)
    labels = spec.base.labels or (read_labels_beside(path) if kind == "model_version" else None)
    input_dtype = str(model.inputs[0].dtype)
    is_text_model = "string" in input_dtype
    if spec.is_text != is_text_model:
        want = "text" if spec.is_text else "image"
        got = "text (strings)" if is_text_model else "image"
        raise InvalidSpecError(f"the {want} job cannot use base {path.name}: it is an {got} model")
    if is_text_model:
        return _file_text_base(spec, model, labels)
    return _file_image_base(spec, model, labels)
