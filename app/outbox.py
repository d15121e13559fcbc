"""Side effects that must follow a commit (enqueueing a job, a webhook).

``after_commit(session, fn)`` queues ``fn`` on the session; it runs only once the transaction
commits, and is dropped on rollback. Lost sends are repaired by the periodic sweep, which
re-enqueues queued jobs that were never picked up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("transferlab.outbox")
_KEY = "transferlab_after_commit"
_ROLLBACK_KEY = "transferlab_after_rollback"


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    session.info.setdefault(_KEY, []).append(fn)


def after_rollback(session: Session, fn: Callable[[], None]) -> None:
    """Undo a side effect done during the transaction (a stored file) if the transaction rolls back."""
    session.info.setdefault(_ROLLBACK_KEY, []).append(fn)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    session.info.pop(_ROLLBACK_KEY, None)
    pending: list[Callable[[], None]] = session.info.pop(_KEY, [])
    for fn in pending:
        try:
            fn()
        except Exception:  # the sweep re-sends whatever failed here
            log.exception("after-commit side effect failed; the sweep will retry it")


@event.listens_for(Session, "after_rollback")
def _drop_on_rollback(session: Session) -> None:
    session.info.pop(_KEY, None)
    for fn in session.info.pop(_ROLLBACK_KEY, []):
        try:
            fn()
        except Exception:
            log.exception("cleanup after rollback failed")


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """``session.begin_nested()`` that also forgets side effects queued inside it when it rolls back."""
    queued = list(session.info.get(_KEY, []))
    try:
        with session.begin_nested():
            yield
    except BaseException:
        session.info[_KEY] = queued
        raise
