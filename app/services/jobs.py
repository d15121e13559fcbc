"""Job business rules: submit (validated, idempotent, enqueued after commit), look up, list, cancel, retry,
events and logs. Services flush; the request (or the worker's session scope) commits."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth import Principal
from app.broker import enqueue_job
from app.config import Settings
from app.errors import Conflict, NotFound
from app.outbox import after_commit, savepoint
from app.schemas.jobs import JobCreate
from app.services.datasets import get_dataset
from app.services.job_states import announce, is_terminal, transition
from app.services.job_validation import validate_job
from app.tables import Job, JobEvent, ModelVersion, new_id, utcnow

RETRYABLE_STATES = ("failed", "cancelled")


def request_hash(body: JobCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _by_idempotency_key(session: Session, project_id: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.project_id == project_id, Job.idempotency_key == key))


def _replay(existing: Job, digest: str, key: str) -> Job:
    if existing.request_hash != digest:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for job {existing.id} with a different request body",
            extra={"job_id": existing.id},
        )
    return existing


def send_job(session: Session, settings: Settings, job: Job, countdown: float | None = None) -> None:
    """Give a queued job a new message id and send that message once the transaction commits."""
    job.id = job.id or new_id()
    job.task_id = uuid.uuid4().hex
    job.enqueued_at = utcnow()
    job_id, queue, priority, task_id = job.id, job.queue, job.priority, job.task_id
    after_commit(session, lambda: enqueue_job(settings, job_id, queue, priority, task_id=task_id, countdown=countdown))


def _new_job(session: Session, settings: Settings, template: dict[str, Any]) -> Job:
    job = Job(id=new_id(), state="queued", attempts=0, max_attempts=settings.job_max_attempts, **template)
    job.queue = settings.queue_for_device(job.device)
    send_job(session, settings, job)
    session.add(job)
    session.flush()
    announce(session, job)
    return job


def submit_job(
    session: Session, settings: Settings, principal: Principal, body: JobCreate, idempotency_key: str | None = None
) -> tuple[Job, bool]:
    """The job and whether it was created now (False: an idempotent replay of an earlier submission)."""
    digest = request_hash(body)
    if idempotency_key:
        existing = _by_idempotency_key(session, principal.project_id, idempotency_key)
        if existing is not None:
            return _replay(existing, digest, idempotency_key), False
    dataset = get_dataset(session, principal, body.dataset_id, share_lock=True)
    validate_job(session, principal, body.spec, dataset)
    template = {
        "project_id": principal.project_id,
        "dataset_id": dataset.id,
        "model_name": body.model_name,
        "spec": body.spec.model_dump(mode="json"),
        "priority": body.priority,
        "device": body.device or settings.default_device,
        "base_model_version_id": body.spec.base.model_version_id,
        "idempotency_key": idempotency_key,
        "request_hash": digest,
    }
    if not idempotency_key:
        return _new_job(session, settings, template), True
    try:
        with savepoint(session):
            job = _new_job(session, settings, template)
    except IntegrityError:  # the same key, submitted concurrently: the other request won
        existing = _by_idempotency_key(session, principal.project_id, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, digest, idempotency_key), False
    return job, True


def get_job(session: Session, principal: Principal, job_id: str, *, for_update: bool = False) -> Job:
    job = session.get(Job, job_id, with_for_update=for_update)
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


def cancel_job(session: Session, principal: Principal, job_id: str) -> Job:
    """A queued job is cancelled at once (its message is dropped when it arrives); a running job is asked
    to stop (``cancelling``) and its worker ends it within one batch."""
    job = get_job(session, principal, job_id, for_update=True)
    if is_terminal(job.state):
        raise Conflict(f"job {job.id} is already {job.state}; only a queued or running job can be cancelled")
    if job.state == "queued":
        job.cancel_requested_at = utcnow()
        transition(job, "cancelled", reason="cancelled before it started")
    elif job.state == "running":
        transition(job, "cancelling")
    session.flush()
    return job


def retry_job(session: Session, settings: Settings, principal: Principal, job_id: str) -> Job:
    """A new job with the same spec, dataset and options as a failed or cancelled one."""
    old = get_job(session, principal, job_id)
    if old.state not in RETRYABLE_STATES:
        raise Conflict(f"job {old.id} is {old.state}; only a failed or cancelled job can be retried")
    template = {
        "project_id": old.project_id,
        "dataset_id": old.dataset_id,
        "model_name": old.model_name,
        "spec": dict(old.spec),
        "priority": old.priority,
        "device": old.device,
        "base_model_version_id": old.base_model_version_id,
        "retry_of": old.id,
    }
    return _new_job(session, settings, template)


def list_events(
    session: Session, job_id: str, *, after: int = 0, limit: int = 500, kinds: tuple[str, ...] | None = None
) -> list[JobEvent]:
    query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after)
    if kinds:
        query = query.where(JobEvent.kind.in_(kinds))
    return list(session.scalars(query.order_by(JobEvent.id).limit(limit)).all())


def version_of_job(session: Session, job_id: str) -> int | None:
    return session.scalar(select(ModelVersion.version).where(ModelVersion.job_id == job_id))
