"""Previews of a ready dataset: image thumbnails (base64 PNG) or text rows, read from the artifact store."""

from __future__ import annotations

import base64
import csv
import io
import json
import warnings
from itertools import islice
from typing import Any

from PIL import Image

from app.errors import Conflict, NotFound
from app.storage import ArtifactStore
from app.tables import Dataset
from app.validation.text import data_filename

THUMBNAIL_PX = 96


def _thumbnail(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ValueError("over the pixel limit")
            img.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))
            thumb = img.convert("RGBA" if "A" in img.getbands() else "RGB")
            thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii"), width, height


def _round_robin(entries: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` entries spread over the labels, in a stable order."""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for item in entries:
        by_label.setdefault(item["label"], []).append(item)
    picked: list[dict[str, Any]] = []
    queues = [iter(v) for _, v in sorted(by_label.items())]
    while queues and len(picked) < limit:
        for queue in list(queues):
            entry: dict[str, Any] | None = next(queue, None)
            if entry is None:
                queues.remove(queue)
            elif len(picked) < limit:
                picked.append(entry)
    return picked


def image_samples(
    store: ArtifactStore, dataset: Dataset, label: str | None, limit: int, max_pixels: int
) -> list[dict[str, Any]]:
    prefix = dataset.storage_key.rsplit("/", 1)[0]
    manifest: list[dict[str, Any]] = json.loads(store.read_bytes(f"{prefix}/manifest.json"))
    entries = [e for e in manifest if e["label"] == label] if label else _round_robin(manifest, limit)
    samples = []
    for entry in entries[:limit]:
        thumb, width, height = _thumbnail(store.read_bytes(f"{dataset.storage_key}/{entry['path']}"), max_pixels)
        samples.append({**entry, "width": width, "height": height, "thumbnail_png_base64": thumb})
    return samples


def text_samples(store: ArtifactStore, dataset: Dataset, label: str | None, limit: int) -> list[dict[str, Any]]:
    key = f"{dataset.storage_key}/{data_filename(dataset.format)}"
    text_col, label_col = dataset.text_column or "text", dataset.label_column or "label"
    with store.open(key) as raw:
        lines = io.TextIOWrapper(raw, encoding="utf-8", newline="")  # type: ignore[arg-type]
        if dataset.format == "csv":
            rows: Any = csv.DictReader(lines)
        else:
            rows = (json.loads(line) for line in lines if line.strip())
        wanted = (r for r in rows if label is None or r[label_col] == label)
        return [{"text": r[text_col], "label": r[label_col]} for r in islice(wanted, limit)]


def samples(store: ArtifactStore, dataset: Dataset, label: str | None, limit: int, max_pixels: int) -> dict[str, Any]:
    if dataset.state != "ready":
        raise Conflict(f"dataset {dataset.id} is {dataset.state}; samples are available once it is ready")
    if label is not None and label not in dataset.labels:
        raise NotFound(f"dataset {dataset.id} has no label {label!r}; its labels are: {', '.join(dataset.labels)}")
    if dataset.task == "image_classification":
        items = image_samples(store, dataset, label, limit, max_pixels)
    else:
        items = text_samples(store, dataset, label, limit)
    return {"dataset_id": dataset.id, "task": dataset.task, "label": label, "items": items}
