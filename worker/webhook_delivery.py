"""Posting one webhook delivery: signed, recorded in the delivery log, retried with exponential backoff."""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx

from app.broker import send_webhook_delivery
from app.config import Settings, get_settings
from app.db import session_scope
from app.services.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    body_bytes,
    sign,
)
from app.tables import Webhook, WebhookDelivery, utcnow

log = logging.getLogger("transferlab.webhooks")
EARLY_SLACK_S = 1.0


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """Delay before the next try after ``attempts`` failed ones: backoff, 2x, 4x, ..."""
    return float(settings.webhook_backoff_s * 2 ** max(attempts - 1, 0))


def deliver(delivery_id: str, settings: Settings | None = None) -> str:
    """Try a pending delivery once. The row stays locked during the request, so a duplicate message
    waits and then finds it delivered (or not yet due) and does nothing."""
    settings = settings or get_settings()
    with session_scope() as session:
        row = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if row is None or row.state != "pending":
            return "skipped"
        if row.next_attempt_at and row.next_attempt_at > utcnow() + timedelta(seconds=EARLY_SLACK_S):
            return "not_due"
        hook = session.get(Webhook, row.webhook_id)
        if hook is None:
            return "skipped"
        body = body_bytes(row.payload)
        timestamp = str(int(utcnow().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "TransferLab-Webhooks/1",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(hook.secret, timestamp, body),
            EVENT_HEADER: row.event,
            DELIVERY_HEADER: row.id,
        }
        row.attempts += 1
        row.last_attempt_at = utcnow()
        try:
            response = httpx.post(hook.url, content=body, headers=headers, timeout=settings.webhook_timeout_s)
            row.response_status = response.status_code
            ok = 200 <= response.status_code < 300
            row.error = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            ok = False
            row.response_status = None
            row.error = f"{exc.__class__.__name__}: {exc}"[:500]
        if ok:
            row.state, row.delivered_at, row.next_attempt_at = "delivered", utcnow(), None
            return "delivered"
        if row.attempts >= settings.webhook_max_attempts:
            row.state, row.next_attempt_at = "failed", None
            log.warning("webhook delivery %s failed for good: %s", row.id, row.error)
            return "failed"
        delay = backoff_seconds(settings, row.attempts)
        row.next_attempt_at = utcnow() + timedelta(seconds=delay)
        retry_in = delay
    send_webhook_delivery(settings, delivery_id, countdown=retry_in)
    return "retrying"
