"""Celery tasks: thin wrappers that hand a job id to the job runner."""

from __future__ import annotations

from app.broker import BATCH_PREDICT_TASK, RUN_JOB_TASK
from worker.celery_app import celery_app
from worker.job_runner import run_job_by_id


@celery_app.task(name=RUN_JOB_TASK, acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: str) -> str:
    return run_job_by_id(job_id)


@celery_app.task(name=BATCH_PREDICT_TASK, acks_late=True, reject_on_worker_lost=True)
def batch_predict(batch_id: str) -> str:
    from worker.batch_predict import run_batch_prediction

    return run_batch_prediction(batch_id)
