"""Turning request payloads into model inputs: decoded, RGB, resized uint8 pixels or strings."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from app.errors import BadRequest

MAX_IMAGE_PIXELS = 64_000_000


def decode_image(data: bytes, height: int, width: int, item: str) -> np.ndarray:
    """Raw image bytes → (height, width, 3) uint8. A bad image is a 400 naming ``item``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise BadRequest(f"{item}: image has {image.width * image.height} pixels; limit {MAX_IMAGE_PIXELS}")
            image.load()
    except BadRequest:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad data
        raise BadRequest(f"{item}: not a decodable image ({exc.__class__.__name__})") from exc
    image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)
