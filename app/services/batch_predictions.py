"""Batch predictions over a whole dataset: created here, run by the worker (``worker/batch_predict.py``)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.auth import Principal
from app.broker import enqueue_batch_prediction
from app.config import Settings
from app.errors import NotFound, Unprocessable
from app.outbox import after_commit
from app.schemas.models import BatchPredictionCreate
from app.services import registry
from app.services.datasets import get_dataset
from app.serving.predictor import check_backend
from app.tables import BatchPrediction

TASK_OF_SIGNATURE = {"image": "image_classification", "text": "text_classification"}


def create(
    session: Session, settings: Settings, principal: Principal, name: str, body: BatchPredictionCreate
) -> BatchPrediction:
    row, _ = registry.resolve(session, principal, name, version=body.version, alias=body.alias)
    backend = check_backend(registry.to_ref(row, principal.project_name), body.backend)
    dataset = get_dataset(session, principal, body.dataset_id)
    if dataset.state != "ready":
        raise Unprocessable(f"dataset {dataset.id} is {dataset.state}; only a ready dataset can be predicted on")
    task = TASK_OF_SIGNATURE.get(str(row.input_signature.get("type")), row.task)
    if dataset.task != task:
        raise Unprocessable(f"dataset {dataset.id} is a {dataset.task} dataset but {name} is a {task} model")
    batch = BatchPrediction(
        project_id=principal.project_id,
        model_version_id=row.id,
        model_name=row.name,
        version=row.version,
        dataset_id=dataset.id,
        backend=backend,
        top_k=body.top_k,
        state="queued",
    )
    session.add(batch)
    session.flush()
    batch_id = batch.id
    after_commit(session, lambda: enqueue_batch_prediction(settings, batch_id))
    return batch


def get(session: Session, principal: Principal, batch_id: str) -> BatchPrediction:
    row = session.get(BatchPrediction, batch_id)
    if row is None or row.project_id != principal.project_id:
        raise NotFound(f"batch prediction {batch_id} not found")
    return row
