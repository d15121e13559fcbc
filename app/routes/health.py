"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.broker import broker_reachable
from app.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    engine = request.app.state.engine
    checks: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current, head = current_revision(engine), head_revision()
        checks["migrations"] = "ok" if current == head else f"database at {current}, code expects {head}"
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"unreachable: {exc.__class__.__name__}"
        checks["migrations"] = "unknown"
    checks["broker"] = broker_reachable(settings) or "ok"
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        body = {"error": "not_ready", "detail": f"not ready: {', '.join(down)}", "checks": checks}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready", "checks": checks})
