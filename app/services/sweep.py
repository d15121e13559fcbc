"""The periodic sweep: repairs what a crash or a lost message left behind.

- a running (or cancelling) job whose heartbeat went stale: its worker died. It goes back to the queue with
  a new message (and resumes from its last epoch checkpoint), or fails once it has used ``max_attempts``;
  a cancelling one ends ``cancelled``.
- a queued job whose message the broker no longer holds (the send after commit failed, the broker lost it)
  is sent again. Duplicates are harmless: a message for a job that is not queued is dropped.
- a webhook delivery whose message was lost is sent again.
- a dataset validation whose message may have been lost is sent again (given up after a few attempts).

Run by Celery beat (task ``transferlab.sweep``, see ``transferlab beat`` / ``transferlab worker --beat``) and
by ``transferlab sweep`` once.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.broker import messages_in_broker, send_webhook_delivery
from app.config import Settings
from app.outbox import after_commit
from app.services.datasets import requeue_stale_validations
from app.services.job_states import transition
from app.services.jobs import send_job
from app.tables import Job, WebhookDelivery, utcnow

log = logging.getLogger("transferlab.sweep")
BATCH = 500


@dataclass
class SweepReport:
    requeued_stale: int = 0
    failed_stale: int = 0
    cancelled_stale: int = 0
    resent_queued: int = 0
    resent_webhooks: int = 0
    resent_validations: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def job_dir(settings: Settings, job_id: str) -> Path:
    """Where a job's worker keeps its checkpoints and partial artifacts."""
    return settings.resolved_artifact_dir / "jobs" / job_id


def remove_job_dir(settings: Settings, job_id: str) -> None:
    shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)


def _stale_jobs(session: Session, settings: Settings) -> list[Job]:
    cutoff = utcnow() - timedelta(seconds=settings.heartbeat_stale_s)
    query = (
        select(Job)
        .where(
            Job.state.in_(("running", "cancelling")),
            or_(Job.heartbeat_at < cutoff, and_(Job.heartbeat_at.is_(None), Job.started_at < cutoff)),
        )
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query).all())


def _recover_stale(session: Session, settings: Settings, report: SweepReport) -> None:
    for job in _stale_jobs(session, settings):
        since = job.heartbeat_at.isoformat() if job.heartbeat_at else "never"
        reason = f"worker {job.worker or '?'} lost: no heartbeat since {since}"
        if job.state == "cancelling":
            transition(job, "cancelled", reason=reason)
            report.cancelled_stale += 1
        elif job.attempts >= job.max_attempts:
            job.error = f"{reason}; gave up after {job.attempts} of {job.max_attempts} attempts"
            job.error_kind = "system"
            transition(job, "failed", error=job.error, error_kind="system")
            report.failed_stale += 1
        else:
            transition(job, "queued", reason=f"{reason}; requeued (attempt {job.attempts} of {job.max_attempts})")
            job.worker = None
            send_job(session, settings, job)
            report.requeued_stale += 1
            continue
        job_id = job.id
        after_commit(session, lambda j=job_id: remove_job_dir(settings, j))  # type: ignore[misc]
        log.warning("job %s: %s", job.id, reason, extra={"job_id": job.id})


def _resend_queued(session: Session, settings: Settings, report: SweepReport) -> None:
    cutoff = utcnow() - timedelta(seconds=settings.sweep_queued_after_s)
    jobs = list(
        session.scalars(
            select(Job)
            .where(Job.state == "queued", or_(Job.enqueued_at.is_(None), Job.enqueued_at < cutoff))
            .order_by(Job.created_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all()
    )
    if not jobs:
        return
    held = messages_in_broker(settings, sorted({j.queue for j in jobs}))
    for job in jobs:
        if held is not None and job.task_id in held:
            continue
        send_job(session, settings, job)
        report.resent_queued += 1
        log.warning("job %s: queued with no message in the broker; sent again", job.id, extra={"job_id": job.id})


def _resend_webhooks(session: Session, settings: Settings, report: SweepReport) -> None:
    cutoff = utcnow() - timedelta(seconds=max(settings.sweep_queued_after_s, settings.webhook_timeout_s * 2))
    rows = session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.state == "pending",
            or_(
                WebhookDelivery.next_attempt_at < cutoff,
                and_(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.created_at < cutoff),
            ),
        )
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.next_attempt_at = utcnow()
        delivery_id = row.id
        after_commit(session, lambda d=delivery_id: send_webhook_delivery(settings, d))  # type: ignore[misc]
        report.resent_webhooks += 1


def run_sweep(session: Session, settings: Settings) -> SweepReport:
    report = SweepReport()
    _recover_stale(session, settings, report)
    _resend_queued(session, settings, report)
    _resend_webhooks(session, settings, report)
    report.resent_validations = len(requeue_stale_validations(session, settings))
    session.flush()
    if any(report.to_dict().values()):
        log.info("sweep: %s", report.to_dict())
    return report
