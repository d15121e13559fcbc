"""API keys: random, shown once, stored as SHA-256 hashes; scopes read < write < admin.

A key's ``last_used_at`` is kept to the minute, not to the request (``TL_API_KEY_TOUCH_INTERVAL_S``): it is
written at most once per interval per key, in a short transaction of its own, so authenticating never turns
a request's transaction into a write (on SQLite every write takes the one database write lock and an fsync).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Depends, Request
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.errors import Forbidden, Unauthorized
from app.tables import ApiKey, Project, utcnow

SCOPE_RANK = {"read": 0, "write": 1, "admin": 2}
KEY_PREFIX = "tl"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    project_id: str
    project_name: str
    key_id: str
    scope: str

    def allows(self, scope: str) -> bool:
        return SCOPE_RANK[self.scope] >= SCOPE_RANK[scope]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> tuple[str, str]:
    """Return (full key, lookup prefix). The key is ``tl_<prefix>_<secret>``."""
    prefix = secrets.token_hex(6)
    return f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def get_or_create_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        project = Project(name=name)
        session.add(project)
        session.flush()
    return project


def create_key(session: Session, project_name: str, scope: str, name: str = "") -> tuple[ApiKey, str]:
    if scope not in SCOPE_RANK:
        raise ValueError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPE_RANK)}")
    project = get_or_create_project(session, project_name)
    key, prefix = generate_key()
    row = ApiKey(project_id=project.id, name=name, prefix=prefix, key_hash=hash_key(key), scope=scope)
    session.add(row)
    session.flush()
    return row, key


def _key_parts(key: str) -> list[str]:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        raise Unauthorized("malformed API key; expected 'Authorization: Bearer tl_...'")
    return parts


def find_key(session: Session, key: str) -> tuple[ApiKey, Principal]:
    """The key's row and principal; reads only. 401 for a malformed, unknown or revoked key."""
    parts = _key_parts(key)
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, hash_key(key)):
        raise Unauthorized("invalid or revoked API key")
    project = session.get(Project, row.project_id)
    assert project is not None
    return row, Principal(project_id=project.id, project_name=project.name, key_id=row.id, scope=row.scope)


_KEY_LOOKUP = (
    select(ApiKey.id, ApiKey.key_hash, ApiKey.revoked_at, ApiKey.scope, ApiKey.last_used_at, Project.id, Project.name)
    .join(Project, Project.id == ApiKey.project_id)
    .where(ApiKey.prefix == bindparam("prefix"))
)


def lookup_key(session: Session, key: str) -> tuple[Principal, datetime | None]:
    """``find_key`` as one query of plain columns (no ORM objects): the principal and the key's
    ``last_used_at``. The request path authenticates with this."""
    parts = _key_parts(key)
    row = session.execute(_KEY_LOOKUP, {"prefix": parts[1]}).first()
    if row is None or row[2] is not None or not hmac.compare_digest(row[1], hash_key(key)):
        raise Unauthorized("invalid or revoked API key")
    return Principal(project_id=row[5], project_name=row[6], key_id=row[0], scope=row[3]), row[4]


def authenticate(session: Session, key: str) -> Principal:
    """The key's principal; marks the key used in ``session``'s transaction (the CLI and scripts)."""
    row, principal = find_key(session, key)
    row.last_used_at = utcnow()
    return principal


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value  # SQLite: naive


class KeyUsage:
    """Writes ``last_used_at`` at most once per ``interval_s`` per key, each write its own short transaction."""

    def __init__(self, interval_s: float) -> None:
        self.interval = timedelta(seconds=max(0.0, interval_s))
        self._lock = threading.Lock()
        self._written: dict[str, datetime] = {}

    def due(self, key_id: str, last_used_at: datetime | None, now: datetime) -> bool:
        """Whether to write now; claims the write, so concurrent requests of one key do not all write."""
        stored = _aware(last_used_at)
        if stored is not None and now - stored < self.interval:
            return False
        with self._lock:
            claimed = self._written.get(key_id)
            if claimed is not None and now - claimed < self.interval:
                return False
            self._written[key_id] = now
            return True

    def touch(self, sessions: sessionmaker[Session], key_id: str, now: datetime) -> None:
        """Record the use; a failure (say, the database is busy) is logged, never the request's error."""
        try:
            with sessions() as session, session.begin():
                session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
        except SQLAlchemyError as exc:
            with self._lock:
                self._written.pop(key_id, None)  # try again on the next request
            log.warning("could not record the use of API key %s: %s", key_id, exc)

    def note(self, sessions: sessionmaker[Session], key_id: str, last_used_at: datetime | None) -> None:
        now = utcnow()
        if self.due(key_id, last_used_at, now):
            self.touch(sessions, key_id, now)


class PrincipalCache:
    """Keys authenticated in the last ``ttl_s`` seconds, by their hash, for the inference routes.

    A revoked key is refused once its entry expires. ``ttl_s=0`` looks every request up.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = max(0.0, float(ttl_s))
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Principal, datetime | None]] = {}

    def get(self, digest: str) -> tuple[Principal, datetime | None] | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None or self._clock() >= entry[0]:
                self._entries.pop(digest, None)
                return None
            return entry[1], entry[2]

    def put(self, digest: str, principal: Principal, last_used_at: datetime | None) -> None:
        if self.ttl_s:
            with self._lock:
                self._entries[digest] = (self._clock() + self.ttl_s, principal, last_used_at)


def any_keys(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).limit(1)) is not None


def bearer_key(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key; send 'Authorization: Bearer <key>'")
    return token.strip()


def check_key(session: Session, key: str, scope: str, usage: KeyUsage, sessions: sessionmaker[Session]) -> Principal:
    """The key's principal, with at least ``scope``, looked up in ``session`` (not cached); notes its use."""
    principal, last_used_at = lookup_key(session, key)
    if not principal.allows(scope):
        raise Forbidden(f"this API key has scope '{principal.scope}'; '{scope}' is required")
    usage.note(sessions, principal.key_id, last_used_at)
    return principal


def authorize(request: Request, session: Session, scope: str) -> Principal:
    """The request's principal, with at least ``scope``, looked up in ``session`` (not cached)."""
    state = request.app.state
    principal = check_key(session, bearer_key(request), scope, state.key_usage, state.sessionmaker)
    request.state.principal = principal
    return principal


def require(scope: str):  # type: ignore[no-untyped-def]
    """FastAPI dependency: the caller's principal, with at least ``scope``."""
    from app.deps import get_session

    def dependency(request: Request, session: Session = Depends(get_session, scope="function")) -> Principal:
        return authorize(request, session, scope)

    return dependency


def _lookup(sessions: sessionmaker[Session], key: str) -> tuple[Principal, datetime | None]:
    with sessions() as session:
        return lookup_key(session, key)


def require_cached(scope: str):  # type: ignore[no-untyped-def]
    """``require`` for the inference routes, where a request must cost little besides the model call: a key
    seen within ``TL_AUTH_CACHE_TTL_S`` is not looked up again, a lookup is a short read of its own (the
    request holds no database session), and nothing leaves the event loop unless the cache misses."""

    async def dependency(request: Request) -> Principal:
        key, state = bearer_key(request), request.app.state
        digest = hash_key(key)
        hit = state.auth_cache.get(digest)
        if hit is None:
            hit = await run_in_threadpool(_lookup, state.sessionmaker, key)
            state.auth_cache.put(digest, *hit)
        principal, last_used_at = hit
        if not principal.allows(scope):
            raise Forbidden(f"this API key has scope '{principal.scope}'; '{scope}' is required")
        if state.key_usage.due(principal.key_id, last_used_at, now := utcnow()):
            await run_in_threadpool(state.key_usage.touch, state.sessionmaker, principal.key_id, now)
        request.state.principal = principal
        return principal

    return dependency
