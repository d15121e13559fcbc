"""One exception hierarchy for expected errors, rendered as ``{"error": code, "detail": message}``.

Routes and services raise these; ``install_error_handlers`` maps them (and request-validation
errors) to JSON responses. Anything else reaching the handler is a bug and becomes a logged 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("transferlab.errors")


class ServiceError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class BadRequest(ServiceError):
    pass


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status_code = 415
    code = "unsupported_media_type"


class Unprocessable(ServiceError):
    status_code = 422
    code = "validation_error"


class ServiceUnavailable(ServiceError):
    status_code = 503
    code = "unavailable"


def error_body(code: str, detail: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": code, "detail": detail, **(extra or {})}


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "request"


def _sqlite_bug(exc: Exception) -> bool:
    """SQLite reports mistakes (no such table, a syntax error) as OperationalError too: those stay 500s."""
    orig = getattr(exc, "orig", None)
    if type(orig).__module__ != "sqlite3":
        return False
    message = str(orig).lower()
    return not any(word in message for word in ("locked", "busy", "unable to open", "disk i/o"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(error_body(exc.code, exc.detail, exc.extra), exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field_path(e.get("loc", ())), "message": e.get("msg", "invalid")} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse(error_body("validation_error", detail, {"errors": errors}), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeoutError)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database is down, unreachable, out of connections or busy: not the client's fault and not a bug.
        if _sqlite_bug(exc):
            return await _unexpected(request, exc)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, reason)
        body = error_body("database_unavailable", "the database is unavailable or busy; retry shortly")
        return JSONResponse(body, 503, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal server error"), 500)


class ProtocolErrorRoute(APIRoute):
    """For the KServe V2 and TF Serving routes: errors as those protocols' clients read them,
    ``{"error": "<message>"}`` (plus ``code``), with the same status codes as everywhere else."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                return JSONResponse({"error": exc.detail, "code": exc.code}, exc.status_code)
            except RequestValidationError as exc:
                detail = "; ".join(f"{_field_path(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors())
                return JSONResponse({"error": detail, "code": "validation_error"}, 422)

        return route
