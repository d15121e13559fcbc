"""Turning request payloads into model inputs: decoded, RGB, resized uint8 pixels or strings."""

from __future__ import annotations

import binascii
import io
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from starlette.concurrency import run_in_threadpool

from app.errors import BadRequest

MAX_IMAGE_PIXELS = 64_000_000
# Bodies up to this size are parsed and decoded on the event loop: for a small image that costs less than the
# hand-over to a worker thread (and the wait for the GIL there). Larger bodies are decoded in the thread pool.
INLINE_DECODE_BYTES = 64 * 1024
T = TypeVar("T")


async def decode_off_loop_if_large(size: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the event loop for a body of at most ``INLINE_DECODE_BYTES``, else in the thread pool."""
    if size <= INLINE_DECODE_BYTES:
        return fn(*args)
    return await run_in_threadpool(fn, *args)


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
    rgb: Image.Image = image if image.mode == "RGB" else image.convert("RGB")
    if rgb.size != (width, height):
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def strict_b64decode(value: str) -> bytes:
    """``base64.b64decode(value, validate=True)``, done in C: anything outside the alphabet is an error."""
    return binascii.a2b_base64(value, strict_mode=True)


def b64_bytes(value: Any, item: str) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(f"{item}: expected a base64 string")
    try:
        return strict_b64decode(value)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{item}: not valid base64") from exc


def pixels(data: Any, signature: dict[str, Any], item: str) -> np.ndarray:
    """A pixel tensor (N, H, W, 3) or one image (H, W, 3), values 0-255 → (N, H, W, 3) uint8."""
    if signature.get("type") == "text":
        raise BadRequest(f"{item}: this is a text model; send strings, not pixel tensors")
    h, w = int(signature["height"]), int(signature["width"])
    uint8 = isinstance(data, np.ndarray) and data.dtype == np.uint8  # a UINT8 tensor: already in range
    try:
        array = data if uint8 else np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"{item}: not a numeric tensor") from exc
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[1:] != (h, w, 3):
        raise BadRequest(f"{item}: pixel tensor has shape {list(array.shape)}; expected [N, {h}, {w}, 3]")
    if uint8:
        return array
    if not np.isfinite(array).all() or array.min(initial=0) < 0 or array.max(initial=0) > 255:
        raise BadRequest(f"{item}: pixel values must be finite and within 0-255")
    return np.rint(array).astype(np.uint8)
