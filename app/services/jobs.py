"""Job business rules: submit (validated, idempotent, enqueued after commit), look up, list, cancel, retry,
events and logs. Services flush; the request (or the worker's session scope) commits."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from app.auth import Principal
from app.broker import JobMessage, enqueue_job, enqueue_jobs
from app.config import Settings
from app.errors import Conflict, NotFound, ServiceError
from app.outbox import after_commit
from app.schemas.jobs import JobCreate
from app.services.datasets import check_dataset, datasets_for_jobs
from app.services.job_states import announce_created, is_terminal, transition
from app.services.job_validation import validate_job
from app.services.webhooks import hooks_by_project
from app.tables import Job, JobEvent, ModelVersion, new_id, utcnow

RETRYABLE_STATES = ("failed", "cancelled")


def request_hash(body: JobCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Submission:
    """One ``POST /v1/jobs``: who sent it, the body, and its ``Idempotency-Key`` if any."""

    principal: Principal
    body: JobCreate
    idempotency_key: str | None = None


#: A submission's outcome: the job and whether it was created now (False: an idempotent replay of an earlier
#: submission), or the error that refuses it.
Outcome = tuple[Job, bool] | ServiceError


def _by_idempotency_keys(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Job]:
    if not keys:
        return {}
    query = select(Job).where(
        Job.project_id.in_(sorted({project for project, _ in keys})),
        Job.idempotency_key.in_(sorted({key for _, key in keys})),
    )
    return {(job.project_id, job.idempotency_key or ""): job for job in session.scalars(query)}


def _replay(existing: Job, digest: str, key: str) -> tuple[Job, bool]:
    if existing.request_hash != digest:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for job {existing.id} with a different request body",
            extra={"job_id": existing.id},
        )
    return existing, False


def send_job(session: Session, settings: Settings, job: Job, countdown: float | None = None) -> None:
    """Give a queued job a new message id and send that message once the transaction commits."""
    job.id = job.id or new_id()
    job.task_id = uuid.uuid4().hex
    job.enqueued_at = utcnow()
    job_id, queue, priority, task_id = job.id, job.queue, job.priority, job.task_id
    after_commit(session, lambda: enqueue_job(settings, job_id, queue, priority, task_id=task_id, countdown=countdown))


def _new_job(settings: Settings, template: dict[str, Any]) -> Job:
    """A queued job, not yet added anywhere (``_insert_new_jobs`` inserts it); columns it leaves unset read None."""
    now = utcnow()
    device = template.get("device") or settings.default_device
    row: dict[str, Any] = dict(
        id=new_id(),
        state="queued",
        attempts=0,
        max_attempts=settings.job_max_attempts,
        progress={},
        metrics={},
        result={},
        created_at=now,
        enqueued_at=now,
        task_id=uuid.uuid4().hex,
    )
    row.update(template, device=device, queue=settings.queue_for_device(device))
    return Job(**row)


def _insert_new_jobs(session: Session, settings: Settings, jobs: list[Job]) -> None:
    """Insert jobs made by ``_new_job`` (one statement), record and announce their state, and send their
    messages after the commit (one broker round trip). The ``Job`` objects stay outside the session."""
    if not jobs:
        return
    # Columns every job leaves empty are left out, so they are SQL NULL (an explicit None would be JSON null).
    columns = [c.key for c in Job.__table__.columns if any(getattr(job, c.key) is not None for job in jobs)]
    session.execute(insert(cast(Table, Job.__table__)), [{key: getattr(job, key) for key in columns} for job in jobs])
    announce_created(session, jobs, hooks_by_project(session, {job.project_id for job in jobs}))
    messages = [JobMessage(job.id, job.queue, job.priority, job.task_id or "") for job in jobs]
    after_commit(session, lambda: enqueue_jobs(settings, messages))


def submit_jobs(session: Session, settings: Settings, submissions: Sequence[Submission]) -> list[Outcome]:
    """Submissions that arrived together, each checked on its own (dataset, spec, base, Idempotency-Key),
    the accepted ones created together. One outcome per submission, in order."""
    keyed = {(s.principal.project_id, s.idempotency_key) for s in submissions if s.idempotency_key}
    by_key = _by_idempotency_keys(session, keyed)
    datasets = datasets_for_jobs(session, {s.body.dataset_id for s in submissions})
    outcomes: list[Outcome] = []
    new: list[Job] = []
    for sub in submissions:
        principal, body, key = sub.principal, sub.body, sub.idempotency_key
        digest = request_hash(body)
        try:
            earlier = by_key.get((principal.project_id, key)) if key else None
            if earlier is not None:  # submitted before, or earlier in this same group
                outcomes.append(_replay(earlier, digest, key or ""))
                continue
            dataset = check_dataset(datasets.get(body.dataset_id), principal, body.dataset_id)
            validate_job(session, settings, principal, body.spec, dataset)
        except ServiceError as exc:
            outcomes.append(exc)
            continue
        job = _new_job(
            settings,
            {
                "project_id": principal.project_id,
                "dataset_id": dataset.id,
                "model_name": body.model_name,
                "spec": body.spec.model_dump(mode="json"),
                "priority": body.priority,
                "device": body.device,
                "base_model_version_id": body.spec.base.model_version_id,
                "idempotency_key": key,
                "request_hash": digest,
            },
        )
        new.append(job)
        outcomes.append((job, True))
        if key:
            by_key[(principal.project_id, key)] = job
    _insert_new_jobs(session, settings, new)
    return outcomes


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
    job = _new_job(settings, template)
    _insert_new_jobs(session, settings, [job])
    return job


def list_events(
    session: Session, job_id: str, *, after: int = 0, limit: int = 500, kinds: tuple[str, ...] | None = None
) -> list[JobEvent]:
    query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after)
    if kinds:
        query = query.where(JobEvent.kind.in_(kinds))
    return list(session.scalars(query.order_by(JobEvent.id).limit(limit)).all())


def version_of_job(session: Session, job_id: str) -> int | None:
    return session.scalar(select(ModelVersion.version).where(ModelVersion.job_id == job_id))
