"""Assembling the trainable model (raw input -> probabilities) from a base, and the strategies' choice of
what is trainable. Image bases are always called with ``training=False`` so BatchNormalization stays in
inference mode, also once unfrozen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from worker.training.bases import BaseParts, build_base
from worker.training.errors import InvalidSpecError
from worker.training.spec import AugmentationSpec, HeadSpec, JobSpec

FROZEN_TEXT_STRATEGIES = ("feature_extraction", "few_shot", "zero_shot")


@dataclass
class BuiltModel:
    model: keras.Model  # raw input -> probabilities (the exported model)
    feature_model: keras.Model  # raw input -> pooled features, inference mode
    head: keras.Model  # pooled features -> probabilities
    base: Any  # the pretrained part (image base model / text backbone)
    parts: BaseParts
    head_reused: bool = False

    @property
    def is_text(self) -> bool:
        return self.parts.kind == "text"


def build_head(feature_dim: int, num_classes: int, head: HeadSpec, name: str = "head") -> keras.Model:
    inp = keras.Input((feature_dim,), name="features")
    x = inp
    for i, units in enumerate(head.hidden):
        x = keras.layers.Dense(units, activation=head.activation, name=f"hidden_{i}")(x)
    if head.dropout > 0:
        x = keras.layers.Dropout(head.dropout, name="head_dropout")(x)
    out = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inp, out, name=name)


def build_augmentation(aug: AugmentationSpec, seed: int) -> keras.Sequential | None:
    layers: list[keras.layers.Layer] = []
    if aug.flip:
        layers.append(keras.layers.RandomFlip(aug.flip, seed=seed))
    if aug.rotation > 0:
        layers.append(keras.layers.RandomRotation(aug.rotation, seed=seed + 1))
    if aug.zoom > 0:
        layers.append(keras.layers.RandomZoom(aug.zoom, seed=seed + 2))
    if aug.translation > 0:
        layers.append(keras.layers.RandomTranslation(aug.translation, aug.translation, seed=seed + 3))
    if aug.contrast > 0:
        layers.append(keras.layers.RandomContrast(aug.contrast, seed=seed + 4, value_range=(0, 255)))
    return keras.Sequential(layers, name="augmentation") if layers else None


def _pool_layer(pooling: str) -> keras.layers.Layer:
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="pool")
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="pool")
    return keras.layers.Flatten(name="pool")


def assemble(spec: JobSpec, parts: BaseParts, num_classes: int, labels: list[str] | None = None) -> BuiltModel:
    """Wire raw input -> [augmentation] -> preprocessing -> base -> pooling -> head."""
    if parts.kind == "text":
        inp = keras.Input(shape=(), dtype="string", name="text")
        tokens = parts.preprocess(inp)
        frozen = spec.strategy in FROZEN_TEXT_STRATEGIES
        outputs = parts.base(tokens, training=False) if frozen else parts.base(tokens)
        pool = parts.pool or keras.layers.GlobalAveragePooling1D(name="pool")
        features = pool(outputs["sequence_output"], mask=tokens["padding_mask"])
    else:
        assert parts.input_hw is not None
        h, w = parts.input_hw
        inp = keras.Input(shape=(h, w, 3), dtype="uint8", name="image")
        x = keras.layers.Rescaling(1.0, name="to_float")(inp)  # uint8 -> float32, nothing else
        if spec.augmentation is not None:
            aug = build_augmentation(spec.augmentation, spec.seed)
            if aug is not None:
                x = aug(x)
        if parts.preprocess is not None:
            x = parts.preprocess(x)
        x = parts.base(x, training=False)
        if len(x.shape) == 2:
            pool = parts.pool or keras.layers.Identity(name="pool")
        elif parts.pool is not None and parts.head is not None and _labels_match(parts, labels):
            pool = parts.pool
        else:
            pool = _pool_layer(spec.head.pooling)
        features = pool(x)
    feature_dim = int(np.prod(features.shape[1:]))
    reuse = parts.head is not None and _labels_match(parts, labels)
    head = parts.head if reuse else build_head(feature_dim, num_classes, spec.head)
    probs = head(features)
    model = keras.Model(inp, probs, name="transferlab_model")
    feature_model = keras.Model(inp, features, name="feature_extractor")
    return BuiltModel(
        model=model, feature_model=feature_model, head=head, base=parts.base, parts=parts, head_reused=reuse
    )


def _labels_match(parts: BaseParts, labels: list[str] | None) -> bool:
    return bool(labels) and parts.source_labels is not None and list(parts.source_labels) == list(labels or [])


def build_model(spec: JobSpec, labels: list[str]) -> BuiltModel:
    """Build the whole model for a job (public: the API-side tests use it to check architectures)."""
    parts = build_base(spec)
    built = assemble(spec, parts, len(labels), labels)
    set_trainable(built, spec.strategy, spec, phase=2 if spec.strategy == "two_phase" else 1)
    return built


# --- what is trainable ------------------------------------------------------------------------------


UNUSED_TEXT_LAYERS = ("pooled_dense",)  # BERT's [CLS] pooler: the engine mean-pools the token outputs instead


def _weighted_layers(base: Any) -> list[keras.layers.Layer]:
    return [layer for layer in base.layers if layer.weights and layer.name not in UNUSED_TEXT_LAYERS]


def _is_norm(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def _unfreeze_top(base: Any, spec: JobSpec) -> None:
    hp = spec.hyperparameters
    layers = list(base.layers)
    if hp.unfreeze_from_layer:
        names = [layer.name for layer in layers]
        if hp.unfreeze_from_layer not in names:
            raise InvalidSpecError(
                f"base has no layer {hp.unfreeze_from_layer!r}; e.g. the last layers are {names[-8:]}"
            )
        cut = names.index(hp.unfreeze_from_layer)
        chosen = layers[cut:]
    else:
        weighted = _weighted_layers(base)
        default_n = max(1, len(weighted) // 4) if hp.unfreeze_top_n is None else hp.unfreeze_top_n
        n = min(default_n, len(weighted))
        chosen = weighted[-n:]
    base.trainable = True
    chosen_ids = {id(layer) for layer in chosen}
    for layer in layers:
        layer.trainable = id(layer) in chosen_ids and not _is_norm(layer)


def _peft_image(base: Any) -> None:
    """BatchNorm scale/offset and bias tuning: everything else of the base stays frozen."""
    base.trainable = True
    for layer in base.layers:
        if _is_norm(layer):
            layer.trainable = True
            continue
        layer.trainable = False
        bias = getattr(layer, "bias", None)
        if bias is not None and getattr(layer, "use_bias", True):
            layer.trainable = True
            for v in layer.weights:
                v.trainable = v is bias


def set_trainable(built: BuiltModel, strategy: str, spec: JobSpec, phase: int = 1) -> None:
    """Freeze/unfreeze for a strategy (and phase). Recompile the training model after calling this."""
    base = built.base
    built.head.trainable = True
    if strategy in ("feature_extraction", "few_shot", "zero_shot") or (strategy == "two_phase" and phase == 1):
        base.trainable = False
    elif strategy == "fine_tune":
        base.trainable = True
    elif strategy in ("partial", "two_phase"):
        _unfreeze_top(base, spec)
    elif strategy == "peft":
        if built.is_text:
            base.trainable = True
            if not getattr(base, "_lora_enabled_tl", False):
                base.enable_lora(spec.hyperparameters.lora_rank)
                base._lora_enabled_tl = True
        else:
            _peft_image(base)
    else:
        raise InvalidSpecError(f"unknown strategy {strategy!r}")
    if built.is_text:
        for layer in base.layers:
            if layer.name in UNUSED_TEXT_LAYERS:
                layer.trainable = False  # no gradient reaches it: do not count or "train" it


def count_params(variables: list[Any]) -> int:
    return int(sum(int(np.prod(v.shape)) for v in variables))


def param_counts(model: keras.Model) -> tuple[int, int]:
    """(trainable, total) parameter counts of a model as it stands."""
    return count_params(model.trainable_variables), count_params(model.weights)
