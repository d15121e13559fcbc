"""Running one batch prediction: the model over every item of a dataset, results as JSONL and CSV."""

from __future__ import annotations

import csv
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings, get_settings
from app.db import session_scope
from app.errors import ServiceError
from app.serving.inputs import decode_image
from app.serving.runtime import load_backend, top_k
from app.storage import get_store
from app.tables import BatchPrediction, Dataset, ModelVersion, utcnow
from app.validation.images import IMAGE_EXTENSIONS
from app.validation.text import read_rows

log = logging.getLogger("transferlab.worker")
CHUNK = 64


def _items(root: Path, dataset: dict[str, Any]) -> Iterator[tuple[str, str | None, Any]]:
    """(item name, true label or None, raw input) for every item of the dataset."""
    if dataset["task"] == "text_classification":
        path = sorted(p for p in root.iterdir() if p.name.startswith("data."))[0]
        for i, (_, row) in enumerate(read_rows(path, dataset["format"])):
            if row is None:
                continue
            text = str(row.get(dataset["text_column"] or "text") or "")
            label = row.get(dataset["label_column"] or "label")
            yield f"row {i + 1}", (str(label) if label not in (None, "") else None), text
        return
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        rel = f.relative_to(root)
        yield str(rel), (rel.parent.name if rel.parent != Path(".") else None), f


def _claim(batch_id: str) -> dict[str, Any] | None:
    with session_scope() as session:
        batch = session.get(BatchPrediction, batch_id, with_for_update=True)
        if batch is None or batch.state != "queued":
            return None
        version = session.get(ModelVersion, batch.model_version_id) if batch.model_version_id else None
        dataset = session.get(Dataset, batch.dataset_id)
        if version is None or dataset is None:
            batch.state, batch.error, batch.finished_at = "failed", "the model version or dataset is gone", utcnow()
            return None
        batch.state, batch.started_at = "running", utcnow()
        return {
            "project_id": batch.project_id,
            "backend": batch.backend,
            "top_k": batch.top_k,
            "labels": list(version.labels),
            "signature": dict(version.input_signature),
            "artifact": dict(version.artifacts[batch.backend]),
            "dataset": {
                "task": dataset.task,
                "storage_key": dataset.storage_key,
                "format": dataset.format,
                "text_column": dataset.text_column,
                "label_column": dataset.label_column,
            },
        }


def _finish(batch_id: str, **values: Any) -> None:
    with session_scope() as session:
        batch = session.get(BatchPrediction, batch_id, with_for_update=True)
        if batch is not None:
            for k, v in values.items():
                setattr(batch, k, v)
            batch.finished_at = utcnow()


def run_batch_prediction(batch_id: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    claimed = _claim(batch_id)
    if claimed is None:
        return "skipped"
    store = get_store(settings)
    try:
        labels, signature = claimed["labels"], claimed["signature"]
        model = load_backend(store.local_path(claimed["artifact"]["key"]), signature, claimed["backend"])
        is_text = signature.get("type") == "text"
        prefix = f"batch_predictions/{claimed['project_id']}/{batch_id}"
        with tempfile.TemporaryDirectory(dir=settings.data_dir) as tmp:
            jsonl_path, csv_path = Path(tmp) / "predictions.jsonl", Path(tmp) / "predictions.csv"
            count = 0
            with jsonl_path.open("w") as jf, csv_path.open("w", newline="") as cf:
                writer = csv.writer(cf)
                writer.writerow(["item", "true_label", "predicted_label", "probability", *(f"p_{x}" for x in labels)])
                items = _items(store.local_path(claimed["dataset"]["storage_key"]), claimed["dataset"])
                chunk: list[tuple[str, str | None, Any]] = []
                for entry in [*items, None]:
                    if entry is not None:
                        name, truth, raw = entry
                        if not is_text:
                            h, w = int(signature["height"]), int(signature["width"])
                            raw = decode_image(raw.read_bytes(), h, w, name)
                        chunk.append((name, truth, raw))
                    if chunk and (entry is None or len(chunk) == CHUNK):
                        inputs = [c[2] for c in chunk]
                        probs = model(inputs if is_text else np.stack(inputs))
                        for (name, truth, _), p, ranked in zip(
                            chunk, probs, top_k(probs, labels, claimed["top_k"]), strict=True
                        ):
                            record = {"item": name, "true_label": truth, **ranked}
                            jf.write(json.dumps(record) + "\n")
                            writer.writerow(
                                [
                                    name,
                                    truth or "",
                                    ranked["label"],
                                    f"{ranked['probability']:.6f}",
                                    *(f"{float(v):.6f}" for v in p),
                                ]
                            )
                        count += len(chunk)
                        chunk = []
            keys = {"jsonl": f"{prefix}/predictions.jsonl", "csv": f"{prefix}/predictions.csv"}
            store.put_file(keys["jsonl"], jsonl_path)
            store.put_file(keys["csv"], csv_path)
    except ServiceError as exc:
        _finish(batch_id, state="failed", error=exc.detail)
        return "failed"
    except Exception as exc:  # noqa: BLE001 - recorded on the batch prediction
        log.exception("batch prediction %s failed", batch_id)
        _finish(batch_id, state="failed", error=f"{exc.__class__.__name__}: {exc}")
        return "failed"
    _finish(batch_id, state="succeeded", num_items=count, result_keys=keys)
    log.info("batch prediction %s: %d items", batch_id, count)
    return "succeeded"
