"""The job specification (pydantic v2). Importable without TensorFlow: the API validates jobs with it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Task = Literal["image_classification", "text_classification"]
Strategy = Literal["feature_extraction", "fine_tune", "partial", "two_phase", "peft", "few_shot", "zero_shot"]
ExportFormat = Literal["keras", "savedmodel", "tflite_float32", "tflite_float16", "tflite_int8"]
Preprocessing = Literal["base_default", "none", "rescale_1_255", "rescale_minus1_1", "caffe", "torch"]

DEFAULT_TEXT_BASE = "all-MiniLM-L6-v2"
DEFAULT_IMAGE_BASE = "MobileNetV2"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BaseSpec(_Strict):
    """Which pretrained network to start from.

    - ``catalog``: a ``keras.applications`` backbone by catalog name (``name``), ImageNet weights read from
      the Keras cache, or ``weights="none"`` for random initialisation.
    - ``keras_file``: an uploaded ``.keras`` model at ``path`` (loaded with ``safe_mode=True``).
    - ``model_version``: an earlier model version's exported ``.keras`` at ``path`` (the worker resolves it);
      ``model_version_id`` is kept for lineage.
    - ``text_preset``: a keras-hub BERT-family preset: catalog name (default all-MiniLM-L6-v2) or a local
      preset folder (``path`` or ``name``).
    """

    kind: Literal["catalog", "keras_file", "model_version", "text_preset"] = "catalog"
    name: str | None = None
    weights: Literal["imagenet", "none"] = "imagenet"
    alpha: float | None = Field(default=None, gt=0, le=1.4, description="width multiplier (MobileNets)")
    path: str | None = None
    model_version_id: str | None = None
    upload_id: str | None = Field(
        default=None, description="keras_file: an uploaded base (POST /v1/bases/uploads); the worker sets path"
    )
    feature_layer: str | None = Field(
        default=None, description="keras_file/model_version: layer whose output is the feature vector"
    )
    labels: list[str] | None = Field(
        default=None, description="model_version: the source model's labels (else read labels.json)"
    )

    @model_validator(mode="after")
    def _check_kind(self) -> BaseSpec:
        if self.kind == "keras_file" and not (self.path or self.upload_id):
            raise ValueError("base kind 'keras_file' needs upload_id (an uploaded .keras base) or path")
        if self.kind == "model_version" and not (self.path or self.model_version_id):
            raise ValueError("base kind 'model_version' needs model_version_id (or path)")
        if self.kind == "catalog" and not self.name:
            self.name = DEFAULT_IMAGE_BASE
        if self.kind == "text_preset" and not (self.name or self.path):
            self.name = DEFAULT_TEXT_BASE
        return self


class HeadSpec(_Strict):
    pooling: Literal["avg", "max", "flatten"] = "avg"
    hidden: list[int] = Field(default_factory=list)
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    activation: Literal["relu", "gelu", "swish", "tanh", "elu"] = "relu"

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(h <= 0 for h in v):
            raise ValueError("hidden layer sizes must be positive")
        return v


class EarlyStoppingSpec(_Strict):
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    patience: int = Field(default=3, ge=1)
    min_delta: float = Field(default=0.0, ge=0.0)
    restore_best_weights: bool = True


class Hyperparameters(_Strict):
    epochs: int = Field(default=10, ge=1, le=1000)
    batch_size: int = Field(default=32, ge=1, le=4096)
    learning_rate: float | None = Field(
        default=None,
        gt=0,
        description="default: 1e-3 for a head on a frozen base, 1e-4 fine-tuning, 5e-5 fine-tuning text",
    )
    optimizer: Literal["adam", "sgd", "rmsprop", "adamw"] = "adam"
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=1e-4, ge=0.0)
    lr_schedule: Literal["constant", "cosine", "exponential"] = "constant"
    lr_decay_rate: float = Field(default=0.9, gt=0.0, le=1.0, description="exponential: factor per epoch")
    early_stopping: EarlyStoppingSpec | None = Field(default_factory=EarlyStoppingSpec)
    fine_tune_lr_factor: float = Field(default=0.1, gt=0.0, le=1.0)
    head_epochs: int | None = Field(default=None, ge=1, description="two_phase: epochs of phase 1")
    unfreeze_top_n: int | None = Field(default=None, ge=1)
    unfreeze_from_layer: str | None = None
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    class_weights: Literal["balanced"] | None = None
    validation_split: float = Field(default=0.15, ge=0.0, lt=0.9)
    test_split: float = Field(default=0.15, ge=0.0, lt=0.9)
    image_size: int | tuple[int, int] | None = Field(default=None, description="override the base's size")
    max_seq_length: int = Field(default=128, ge=8, le=512)
    mixed_precision: bool = False
    deterministic_ops: bool = Field(
        default=False,
        description="TF op determinism: needed for identical GPU runs, slower; CPU runs with "
        "the same seed reproduce without it",
    )
    lora_rank: int = Field(default=4, ge=1, le=64)
    top_k: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _check_splits(self) -> Hyperparameters:
        if self.validation_split + self.test_split >= 0.9:
            raise ValueError("validation_split + test_split must leave data to train on")
        return self

    def image_hw(self) -> tuple[int, int] | None:
        if self.image_size is None:
            return None
        if isinstance(self.image_size, int):
            return (self.image_size, self.image_size)
        return (int(self.image_size[0]), int(self.image_size[1]))


class AugmentationSpec(_Strict):
    flip: Literal["horizontal", "vertical", "horizontal_and_vertical"] | None = "horizontal"
    rotation: float = Field(default=0.0, ge=0.0, le=0.5, description="fraction of a full turn")
    zoom: float = Field(default=0.0, ge=0.0, lt=1.0)
    contrast: float = Field(default=0.0, ge=0.0, lt=1.0)
    translation: float = Field(default=0.0, ge=0.0, lt=1.0)


class JobSpec(_Strict):
    task: Task
    base: BaseSpec = Field(default_factory=BaseSpec)
    strategy: Strategy = "feature_extraction"
    head: HeadSpec = Field(default_factory=HeadSpec)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    augmentation: AugmentationSpec | None = None
    preprocessing: Preprocessing = "base_default"
    class_descriptions: dict[str, str] | None = None
    export_formats: list[ExportFormat] = Field(default_factory=lambda: list[ExportFormat](["keras"]))
    seed: int = 42

    @model_validator(mode="before")
    @classmethod
    def _default_base(cls, data: object) -> object:
        if isinstance(data, dict) and "base" not in data and data.get("task") == "text_classification":
            data = {**data, "base": {"kind": "text_preset", "name": DEFAULT_TEXT_BASE}}
        return data

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        text = self.task == "text_classification"
        if text and self.base.kind == "catalog":
            raise ValueError("text_classification needs a text base (kind 'text_preset' or a text model)")
        if not text and self.base.kind == "text_preset":
            raise ValueError("image_classification cannot use a text_preset base")
        if self.strategy == "zero_shot" and not text:
            raise ValueError("zero_shot is available for text_classification only")
        if text and self.augmentation is not None:
            raise ValueError("augmentation applies to images only")
        if text and any(f.startswith("tflite") for f in self.export_formats):
            raise ValueError("TFLite export is not available for text models (tokenizer ops)")
        if "keras" not in self.export_formats:
            self.export_formats = ["keras", *self.export_formats]
        self.export_formats = list(dict.fromkeys(self.export_formats))
        hp = self.hyperparameters
        if hp.unfreeze_top_n is not None and hp.unfreeze_from_layer is not None:
            raise ValueError("give unfreeze_top_n or unfreeze_from_layer, not both")
        return self

    @property
    def is_text(self) -> bool:
        return self.task == "text_classification"
