"""Job business rules: submit (validated, enqueued after commit), look up, list."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import Principal
from app.broker import enqueue_job
from app.config import Settings
from app.errors import NotFound, Unprocessable
from app.outbox import after_commit
from app.schemas.jobs import JobCreate
from app.services.datasets import get_dataset
from app.tables import Job, ModelVersion, utcnow


def _check_against_dataset(body: JobCreate, task: str, state: str, dataset_id: str) -> None:
    if state != "ready":
        raise Unprocessable(f"dataset {dataset_id} is {state}; only a ready dataset can be trained on")
    if body.spec.task != task:
        raise Unprocessable(f"spec.task is {body.spec.task} but dataset {dataset_id} is a {task} dataset")


def submit_job(session: Session, settings: Settings, principal: Principal, body: JobCreate) -> Job:
    dataset = get_dataset(session, principal, body.dataset_id)
    _check_against_dataset(body, dataset.task, dataset.state, dataset.id)
    job = Job(
        project_id=principal.project_id,
        dataset_id=dataset.id,
        model_name=body.model_name,
        spec=body.spec.model_dump(mode="json"),
        state="queued",
        priority=body.priority,
        queue=settings.default_queue,
        enqueued_at=utcnow(),
    )
    session.add(job)
    session.flush()
    job_id, queue, priority = job.id, job.queue, job.priority
    after_commit(session, lambda: enqueue_job(settings, job_id, queue, priority))
    return job


def get_job(session: Session, principal: Principal, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.project_id != principal.project_id:
        raise NotFound(f"job {job_id} not found")
    return job


def list_jobs(
    session: Session, principal: Principal, *, limit: int, offset: int, state: str | None
) -> tuple[list[Job], int]:
    query = select(Job).where(Job.project_id == principal.project_id)
    if state:
        query = query.where(Job.state == state)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Job.created_at.desc()).limit(limit).offset(offset)).all()
    return list(rows), total


def version_of_job(session: Session, job_id: str) -> int | None:
    return session.scalar(select(ModelVersion.version).where(ModelVersion.job_id == job_id))
