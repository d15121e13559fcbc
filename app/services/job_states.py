"""The job state machine, enforced here (and by the database's check constraint on states).

queued → running → succeeded | failed | cancelled, with cancelling; a terminal job never changes.
"""

from __future__ import annotations

from app.errors import Conflict
from app.tables import TERMINAL_JOB_STATES, Job, utcnow

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


def transition(job: Job, new_state: str) -> None:
    """Move ``job`` to ``new_state`` or raise ``IllegalTransition``; keeps timestamps consistent."""
    if new_state not in TRANSITIONS.get(job.state, frozenset()):
        raise IllegalTransition(f"job {job.id} cannot go from {job.state} to {new_state}")
    now = utcnow()
    if new_state == "running" and job.started_at is None:
        job.started_at = now
    if is_terminal(new_state):
        job.finished_at = now
    job.state = new_state
