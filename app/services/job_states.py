"""The job state machine: the one place a job's state changes (the database's trigger enforces it too).

queued → running → succeeded | failed | cancelled, with cancelling; a running job whose worker died goes
back to queued; a terminal job never changes. Every change is recorded as a ``state`` event and announced
to the project's webhooks (sent after the transaction commits).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session, object_session

from app.errors import Conflict
from app.tables import TERMINAL_JOB_STATES, Job, JobEvent, utcnow

TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "cancelled", "failed"}),
    "running": frozenset({"succeeded", "failed", "cancelling", "cancelled", "queued"}),
    "cancelling": frozenset({"cancelled", "failed", "succeeded"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


class IllegalTransition(Conflict):
    code = "illegal_transition"


def is_terminal(state: str) -> bool:
    return state in TERMINAL_JOB_STATES


def can_transition(old: str, new: str) -> bool:
    return new in TRANSITIONS.get(old, frozenset())


def transition(job: Job, new_state: str, **detail: Any) -> None:
    """Move ``job`` to ``new_state`` or raise ``IllegalTransition``; keeps timestamps consistent.

    ``detail`` goes into the ``state`` event (error, attempt, reason, ...).
    """
    if not can_transition(job.state, new_state):
        raise IllegalTransition(f"job {job.id} cannot go from {job.state} to {new_state}")
    now = utcnow()
    if new_state == "running" and job.started_at is None:
        job.started_at = now
    if new_state == "cancelling" and job.cancel_requested_at is None:
        job.cancel_requested_at = now
    if is_terminal(new_state):
        job.finished_at = now
    job.state = new_state
    session = object_session(job)
    if session is not None:
        announce(session, job, detail)


def announce_created(session: Session, jobs: list[Job], hooks: dict[str, list[str]]) -> None:
    """``announce`` for new jobs inserted together: their ``queued`` events in one statement, then their
    webhooks (``hooks``: each project's webhook ids, from ``hooks_by_project``)."""
    from app.services.webhooks import queue_job_event

    if not jobs:
        return
    events = [
        {"job_id": job.id, "kind": "state", "data": {"state": job.state}, "created_at": job.created_at} for job in jobs
    ]
    session.execute(insert(cast(Table, JobEvent.__table__)), events)
    for job in jobs:
        queue_job_event(session, job, hooks.get(job.project_id, []))


def announce(session: Session, job: Job, detail: dict[str, Any] | None = None) -> None:
    """Record the job's current state as an event and queue it for the project's webhooks."""
    from app.services.webhooks import queue_job_event

    data = {"state": job.state, **{k: v for k, v in (detail or {}).items() if v is not None}}
    session.add(JobEvent(job_id=job.id, kind="state", data=data))
    queue_job_event(session, job)
