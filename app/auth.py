"""API keys: random, shown once, stored as SHA-256 hashes; scopes read < write < admin."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Forbidden, Unauthorized
from app.tables import ApiKey, Project, utcnow

SCOPE_RANK = {"read": 0, "write": 1, "admin": 2}
KEY_PREFIX = "tl"


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


def authenticate(session: Session, key: str) -> Principal:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        raise Unauthorized("malformed API key; expected 'Authorization: Bearer tl_...'")
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, hash_key(key)):
        raise Unauthorized("invalid or revoked API key")
    project = session.get(Project, row.project_id)
    assert project is not None
    row.last_used_at = utcnow()
    return Principal(project_id=project.id, project_name=project.name, key_id=row.id, scope=row.scope)


def any_keys(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).limit(1)) is not None


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key; send 'Authorization: Bearer <key>'")
    return token.strip()


def require(scope: str):  # type: ignore[no-untyped-def]
    """FastAPI dependency: the caller's principal, with at least ``scope``."""
    from app.deps import get_session

    def dependency(request: Request, session: Session = Depends(get_session, scope="function")) -> Principal:
        principal = authenticate(session, _bearer(request))
        if not principal.allows(scope):
            raise Forbidden(f"this API key has scope '{principal.scope}'; '{scope}' is required")
        request.state.principal = principal
        return principal

    return dependency
