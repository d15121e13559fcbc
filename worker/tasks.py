"""Celery tasks: thin wrappers that hand an id to the module that does the work."""

from __future__ import annotations

from typing import Any

from app.broker import BATCH_PREDICT_TASK, DELIVER_WEBHOOK_TASK, RUN_JOB_TASK, SWEEP_TASK, VALIDATE_DATASET_TASK
from worker.celery_app import celery_app
from worker.dataset_validation import validate_dataset_by_id
from worker.job_runner import run_job_by_id


@celery_app.task(name=RUN_JOB_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self: Any, job_id: str) -> str:
    return run_job_by_id(job_id, task_id=self.request.id)


@celery_app.task(name=DELIVER_WEBHOOK_TASK, acks_late=True)
def deliver_webhook(delivery_id: str) -> str:
    from worker.webhook_delivery import deliver

    return deliver(delivery_id)


@celery_app.task(name=SWEEP_TASK)
def sweep() -> dict[str, int]:
    from app.config import get_settings
    from app.db import session_scope
    from app.services.sweep import run_sweep

    with session_scope() as session:
        return run_sweep(session, get_settings()).to_dict()


@celery_app.task(name=BATCH_PREDICT_TASK, acks_late=True, reject_on_worker_lost=True)
def batch_predict(batch_id: str) -> str:
    from worker.batch_predict import run_batch_prediction

    return run_batch_prediction(batch_id)


@celery_app.task(name=VALIDATE_DATASET_TASK, acks_late=True, reject_on_worker_lost=True)
def validate_dataset(dataset_id: str) -> str:
    return validate_dataset_by_id(dataset_id)
