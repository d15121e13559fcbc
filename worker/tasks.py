"""Celery tasks: thin wrappers that hand an id to the module that does the work."""

from __future__ import annotations

from typing import Any

from app.broker import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK, SWEEP_TASK
from worker.celery_app import celery_app
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
