"""Validating one dataset: claim it, unpack and check its upload, store the cleaned files, record the report.

The checks themselves are pure functions in ``app.validation``; this module is the bridge to the
database and the artifact store. A claim is an atomic compare-and-set on the row, so duplicate
messages (the sweep re-sends any validation that may have been lost) do no harm.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from app.config import Settings, get_settings
from app.db import session_scope
from app.services.datasets import archive_limits, dataset_prefix
from app.storage import ArtifactStore, get_store
from app.tables import Dataset, utcnow
from app.validation import Outcome, validate_dataset_files

log = logging.getLogger("transferlab.worker.datasets")


def _claim(dataset_id: str, settings: Settings) -> tuple[datetime, dict[str, Any]] | None:
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.validation_stale_after_s)
    with session_scope(settings.resolved_database_url) as session:
        claimed = session.execute(
            update(Dataset)
            .where(
                Dataset.id == dataset_id,
                Dataset.state == "validating",
                Dataset.deleted_at.is_(None),
                (Dataset.validation_started_at.is_(None)) | (Dataset.validation_started_at < stale_before),
            )
            .values(validation_started_at=now, validation_attempts=Dataset.validation_attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            return None
        row = session.get(Dataset, dataset_id)
        assert row is not None
        return now, {
            "task": row.task,
            "format": row.format,
            "upload_key": row.upload_key,
            "text_column": row.text_column,
            "label_column": row.label_column,
            "attempts": row.validation_attempts,
        }


def _finish(dataset_id: str, claimed_at: datetime, values: dict[str, Any], settings: Settings) -> bool:
    """Record the outcome if this claim still holds (not deleted, not re-claimed)."""
    with session_scope(settings.resolved_database_url) as session:
        updated = session.execute(
            update(Dataset)
            .where(
                Dataset.id == dataset_id,
                Dataset.state == "validating",
                Dataset.deleted_at.is_(None),
                Dataset.validation_started_at == claimed_at,
            )
            .values(**values, validated_at=utcnow(), updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return getattr(updated, "rowcount", 0) == 1


def _outcome_values(outcome: Outcome, storage_key: str) -> dict[str, Any]:
    return {
        "state": "invalid" if outcome.invalid_reason else "ready",
        "error": outcome.invalid_reason,
        "report": outcome.report,
        "labels": outcome.labels,
        "num_examples": outcome.num_examples,
        "storage_key": storage_key,
        "upload_key": None,
    }


def _store_result(store: ArtifactStore, dataset_id: str, outcome: Outcome, files: Path | None, work: Path) -> str:
    prefix = dataset_prefix(dataset_id)
    if files is None:
        return ""
    store.put_tree(f"{prefix}/files", files)
    if outcome.manifest:
        manifest = work / "manifest.json"
        manifest.write_text(json.dumps(outcome.manifest))
        store.put_file(f"{prefix}/manifest.json", manifest, move=True)
    return f"{prefix}/files"


def validate_dataset_by_id(dataset_id: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    claimed = _claim(dataset_id, settings)
    if claimed is None:
        log.info("dataset %s is not waiting for validation; message dropped", dataset_id)
        return "skipped"
    claimed_at, info = claimed
    store = get_store(settings)
    tmp_root = settings.data_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=tmp_root, prefix=f"validate-{dataset_id}-"))
    try:
        if not info["upload_key"] or not store.exists(info["upload_key"]):
            outcome, files = Outcome({"warnings": []}, [], 0, "the uploaded file is missing from the store"), None
        else:
            outcome, files = validate_dataset_files(
                store.local_path(info["upload_key"]),
                task=info["task"],
                fmt=info["format"],
                work_dir=work,
                limits=archive_limits(settings),
                max_pixels=settings.max_image_pixels,
                text_column=info["text_column"],
                label_column=info["label_column"],
            )
        storage_key = _store_result(store, dataset_id, outcome, files, work)
    except Exception:
        log.exception("validation of dataset %s failed (attempt %d)", dataset_id, info["attempts"])
        if info["attempts"] >= settings.validation_max_attempts:
            failed = {"state": "invalid", "error": "validation failed: internal error"}
            _finish(dataset_id, claimed_at, failed, settings)
        return "error"  # left claimed: the sweep re-sends it once the claim is stale
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not _finish(dataset_id, claimed_at, _outcome_values(outcome, storage_key), settings):
        log.info("dataset %s was deleted or re-claimed while validating; result dropped", dataset_id)
        with session_scope(settings.resolved_database_url) as session:
            row = session.get(Dataset, dataset_id)
            if row is None or row.deleted_at is not None:
                store.delete(dataset_prefix(dataset_id))
        return "dropped"
    if info["upload_key"]:
        store.delete(info["upload_key"])
    state = "invalid" if outcome.invalid_reason else "ready"
    log.info("dataset %s validated: %s (%d examples)", dataset_id, state, outcome.num_examples)
    return state
