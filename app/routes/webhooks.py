"""/v1/webhooks: per-project endpoints for job state changes (admin scope), and their delivery log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from app.auth import Principal, require
from app.deps import SessionDep
from app.schemas.webhooks import DeliveryOut, WebhookCreate, WebhookCreated, WebhookOut
from app.services import webhooks as service

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
Admin = Annotated[Principal, Depends(require("admin"))]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
def create_webhook(body: WebhookCreate, session: SessionDep, principal: Admin) -> WebhookCreated:
    row = service.create_webhook(session, principal, body.url, body.description)
    return WebhookCreated.model_validate(row)


@router.get("", response_model=list[WebhookOut])
def list_webhooks(session: SessionDep, principal: Admin) -> list[WebhookOut]:
    return [WebhookOut.model_validate(r) for r in service.list_webhooks(session, principal)]


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(webhook_id: str, session: SessionDep, principal: Admin) -> Response:
    service.delete_webhook(session, principal, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", response_model=list[DeliveryOut])
def list_deliveries(
    webhook_id: str,
    session: SessionDep,
    principal: Admin,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[DeliveryOut]:
    rows = service.list_deliveries(session, principal, webhook_id, limit=limit, offset=offset)
    return [DeliveryOut.model_validate(r) for r in rows]
