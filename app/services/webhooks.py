"""Webhooks: per-project endpoints that receive job state changes, signed, retried, logged.

A state change creates one delivery row per endpoint in the same transaction; after the commit a
``transferlab.deliver_webhook`` task (on the I/O queue) posts it. The body is fixed when the delivery is
created, so every retry sends the same bytes; the signature is HMAC-SHA256 over ``<timestamp>.<body>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth import Principal
from app.broker import send_webhook_delivery
from app.config import get_settings
from app.errors import NotFound, Unprocessable
from app.outbox import after_commit
from app.tables import Job, Webhook, WebhookDelivery, utcnow

TIMESTAMP_HEADER = "X-TransferLab-Timestamp"
SIGNATURE_HEADER = "X-TransferLab-Signature"
EVENT_HEADER = "X-TransferLab-Event"
DELIVERY_HEADER = "X-TransferLab-Delivery"


def body_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``timestamp + "." + body``)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Unprocessable(f"webhook url must be an absolute http(s) URL; got {url!r}")
    return url


def create_webhook(session: Session, principal: Principal, url: str, description: str) -> Webhook:
    row = Webhook(
        project_id=principal.project_id,
        url=_check_url(url),
        secret=f"whsec_{secrets.token_urlsafe(32)}",
        description=description,
    )
    session.add(row)
    session.flush()
    return row


def list_webhooks(session: Session, principal: Principal) -> list[Webhook]:
    rows = session.scalars(
        select(Webhook).where(Webhook.project_id == principal.project_id).order_by(Webhook.created_at)
    ).all()
    return list(rows)


def get_webhook(session: Session, principal: Principal, webhook_id: str) -> Webhook:
    row = session.get(Webhook, webhook_id)
    if row is None or row.project_id != principal.project_id:
        raise NotFound(f"webhook {webhook_id} not found")
    return row


def delete_webhook(session: Session, principal: Principal, webhook_id: str) -> None:
    session.delete(get_webhook(session, principal, webhook_id))
    session.flush()


def list_deliveries(
    session: Session, principal: Principal, webhook_id: str, *, limit: int, offset: int
) -> list[WebhookDelivery]:
    get_webhook(session, principal, webhook_id)
    rows = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows)


def job_payload(job: Job) -> dict[str, Any]:
    return {
        "event": f"job.{job.state}",
        "created_at": utcnow().isoformat(),
        "job": {
            "id": job.id,
            "project_id": job.project_id,
            "model_name": job.model_name,
            "dataset_id": job.dataset_id,
            "state": job.state,
            "attempts": job.attempts,
            "error": job.error,
            "error_kind": job.error_kind,
            "retry_of": job.retry_of,
        },
    }


def hooks_by_project(session: Session, project_ids: set[str]) -> dict[str, list[str]]:
    """The webhook ids of each of ``project_ids`` (a project without webhooks maps to an empty list)."""
    hooks: dict[str, list[str]] = {project_id: [] for project_id in project_ids}
    if project_ids:
        query = select(Webhook.project_id, Webhook.id).where(Webhook.project_id.in_(sorted(project_ids)))
        for project_id, hook_id in session.execute(query):
            hooks[project_id].append(hook_id)
    return hooks


def queue_job_event(session: Session, job: Job, hook_ids: list[str] | None = None) -> None:
    """One delivery per endpoint of the job's project, sent after the transaction commits. ``hook_ids``:
    the project's webhooks when the caller has already looked them up (``hooks_by_project``)."""
    hooks = hook_ids if hook_ids is not None else hooks_by_project(session, {job.project_id})[job.project_id]
    if not hooks:
        return
    payload = job_payload(job)
    ids: list[str] = []
    for hook_id in hooks:
        delivery = WebhookDelivery(webhook_id=hook_id, job_id=job.id, event=payload["event"], payload=payload)
        session.add(delivery)
        session.flush()
        ids.append(delivery.id)
    settings = get_settings()
    for delivery_id in ids:
        after_commit(session, lambda d=delivery_id: send_webhook_delivery(settings, d))  # type: ignore[misc]
