"""The catalog of pretrained bases, for the API (validation of submitted jobs, ``/v1/bases``).

``worker/training/catalog.py`` is the one definition; like the spec (``app/jobspec.py``) it is pure data
with no TensorFlow, Celery or database imports, so the API reads it through this module rather than
keeping a second copy that would drift.
"""

from __future__ import annotations

from worker.training.catalog import (
    IMAGE_BASES,
    TEXT_BASES,
    ImageBaseInfo,
    TextBaseInfo,
    catalog_layer_names,
    image_weights_path,
    list_bases,
    text_preset_dir,
)

__all__ = [
    "IMAGE_BASES",
    "TEXT_BASES",
    "ImageBaseInfo",
    "TextBaseInfo",
    "catalog_layer_names",
    "image_weights_path",
    "list_bases",
    "text_preset_dir",
]
