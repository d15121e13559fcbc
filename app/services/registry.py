"""The model registry: versions produced by succeeded jobs, and aliases that point at them.

Every alias move is recorded (who, when, from, to) in ``model_alias_events``; a rollback undoes the
latest move not already undone. A version an alias points at cannot be deleted.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.auth import Principal
from app.errors import BadRequest, Conflict, NotFound
from app.serving.runtime import ModelRef
from app.tables import Job, ModelAlias, ModelAliasEvent, ModelVersion, utcnow

ALIAS_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
RESERVED_ALIASES = ("latest",)
DEFAULT_ALIAS = "production"


def next_version(session: Session, project_id: str, name: str) -> int:
    current = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project_id, ModelVersion.name == name)
    )
    return (current or 0) + 1


def register_version(
    session: Session,
    job: Job,
    *,
    version: int,
    labels: list[str],
    metrics: dict[str, Any],
    input_signature: dict[str, Any],
    artifacts: dict[str, Any],
    task: str,
) -> ModelVersion:
    spec = job.spec
    row = ModelVersion(
        project_id=job.project_id,
        name=job.model_name,
        version=version,
        task=task,
        job_id=job.id,
        dataset_id=job.dataset_id,
        parent_version_id=job.base_model_version_id,
        base=spec.get("base", {}),
        strategy=spec.get("strategy", ""),
        labels=labels,
        metrics=metrics,
        input_signature=input_signature,
        artifacts=artifacts,
    )
    session.add(row)
    session.flush()
    return row


def list_model_names(session: Session, principal: Principal) -> list[tuple[str, int, int]]:
    """(name, latest version, version count) per model of the project."""
    rows = session.execute(
        select(ModelVersion.name, func.max(ModelVersion.version), func.count())
        .where(ModelVersion.project_id == principal.project_id)
        .group_by(ModelVersion.name)
        .order_by(ModelVersion.name)
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def list_versions(session: Session, principal: Principal, name: str) -> list[ModelVersion]:
    rows = session.scalars(
        select(ModelVersion)
        .where(ModelVersion.project_id == principal.project_id, ModelVersion.name == name)
        .order_by(ModelVersion.version.desc())
    ).all()
    if not rows:
        raise NotFound(f"model {name!r} not found")
    return list(rows)


def get_version(session: Session, principal: Principal, name: str, version: int | None) -> ModelVersion:
    """A version by number, or the latest when ``version`` is None."""
    query = select(ModelVersion).where(ModelVersion.project_id == principal.project_id, ModelVersion.name == name)
    if version is None:
        row = session.scalar(query.order_by(ModelVersion.version.desc()).limit(1))
    else:
        row = session.scalar(query.where(ModelVersion.version == version))
    if row is None:
        what = f"model {name!r}" if version is None else f"model {name!r} version {version}"
        raise NotFound(f"{what} not found")
    return row


def check_alias_name(alias: str) -> None:
    if not ALIAS_RE.match(alias) or alias in RESERVED_ALIASES:
        raise BadRequest(
            f"alias {alias!r} is not valid: use 1-64 lowercase letters, digits, '_', '-' or '.', starting with a "
            f"letter; {', '.join(RESERVED_ALIASES)} is reserved"
        )


def _alias_row(session: Session, project_id: str, name: str, alias: str) -> ModelAlias | None:
    return session.scalar(
        select(ModelAlias).where(
            ModelAlias.project_id == project_id, ModelAlias.model_name == name, ModelAlias.alias == alias
        )
    )


def aliases_by_version(session: Session, project_id: str, name: str) -> dict[int, list[str]]:
    rows = session.execute(
        select(ModelVersion.version, ModelAlias.alias)
        .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
        .where(ModelAlias.project_id == project_id, ModelAlias.model_name == name)
        .order_by(ModelAlias.alias)
    ).all()
    out: dict[int, list[str]] = {}
    for version, alias in rows:
        out.setdefault(version, []).append(alias)
    return out


def list_aliases(session: Session, principal: Principal, name: str) -> list[tuple[ModelAlias, int]]:
    list_versions(session, principal, name)  # 404 for an unknown model
    rows = session.execute(
        select(ModelAlias, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
        .where(ModelAlias.project_id == principal.project_id, ModelAlias.model_name == name)
        .order_by(ModelAlias.alias)
    ).all()
    return [(r[0], r[1]) for r in rows]


def get_alias(session: Session, principal: Principal, name: str, alias: str) -> tuple[ModelAlias, ModelVersion]:
    row = _alias_row(session, principal.project_id, name, alias)
    if row is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    version = session.get(ModelVersion, row.version_id)
    assert version is not None
    return row, version


def alias_history(session: Session, principal: Principal, name: str, alias: str) -> list[ModelAliasEvent]:
    rows = session.scalars(
        select(ModelAliasEvent)
        .where(
            ModelAliasEvent.project_id == principal.project_id,
            ModelAliasEvent.model_name == name,
            ModelAliasEvent.alias == alias,
        )
        .order_by(ModelAliasEvent.id.desc())
    ).all()
    return list(rows)


def _record(
    session: Session, principal: Principal, name: str, alias: str, action: str, old: int | None, new: int | None
) -> None:
    session.add(
        ModelAliasEvent(
            project_id=principal.project_id,
            model_name=name,
            alias=alias,
            action=action,
            from_version=old,
            to_version=new,
            actor=principal.key_id,
        )
    )


def _move(session: Session, principal: Principal, name: str, alias: str, target: ModelVersion, action: str) -> None:
    row = _alias_row(session, principal.project_id, name, alias)
    old: int | None = None
    if row is None:
        row = ModelAlias(project_id=principal.project_id, model_name=name, alias=alias, version_id=target.id)
        session.add(row)
    else:
        current = session.get(ModelVersion, row.version_id)
        old = current.version if current is not None else None
        row.version_id = target.id
    row.updated_by, row.updated_at = principal.key_id, utcnow()
    _record(session, principal, name, alias, action, old, target.version)
    session.flush()


def set_alias(session: Session, principal: Principal, name: str, alias: str, version: int) -> ModelVersion:
    check_alias_name(alias)
    target = get_version(session, principal, name, version)
    _move(session, principal, name, alias, target, "set")
    return target


def rollback_alias(session: Session, principal: Principal, name: str, alias: str) -> ModelVersion:
    """Point ``alias`` back where it was before its latest move that has not been rolled back yet."""
    get_alias(session, principal, name, alias)
    undone, target_version = 0, None
    for event in alias_history(session, principal, name, alias):
        if event.action == "rollback":
            undone += 1
        elif event.action == "delete":
            break
        elif undone:
            undone -= 1
        else:
            target_version = event.from_version
            break
    if target_version is None:
        raise Conflict(f"alias {alias!r} of model {name!r} has no earlier version to roll back to")
    target = session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == principal.project_id,
            ModelVersion.name == name,
            ModelVersion.version == target_version,
        )
    )
    if target is None:
        raise Conflict(f"alias {alias!r} was at version {target_version}, which has since been deleted")
    _move(session, principal, name, alias, target, "rollback")
    return target


def delete_alias(session: Session, principal: Principal, name: str, alias: str) -> None:
    row, version = get_alias(session, principal, name, alias)
    _record(session, principal, name, alias, "delete", version.version, None)
    session.delete(row)
    session.flush()


def resolve(
    session: Session, principal: Principal, name: str, *, version: int | str | None = None, alias: str | None = None
) -> tuple[ModelVersion, str | None]:
    """The version to serve, and the alias it was reached by.

    ``version`` may be a number, ``"latest"``, or an alias name (the V2 and TF Serving paths carry
    either in one place). With neither, the ``production`` alias when set, else the latest version.
    """
    if version is not None and alias is not None:
        raise BadRequest("give either a version or an alias, not both")
    if isinstance(version, str):
        if version.isdigit():
            version = int(version)
        elif version == "latest":
            return get_version(session, principal, name, None), None
        else:
            version, alias = None, version
    if alias is not None:
        return get_alias(session, principal, name, alias)[1], alias
    if version is not None:
        return get_version(session, principal, name, version), None
    default = _alias_row(session, principal.project_id, name, DEFAULT_ALIAS)
    if default is not None:
        row = session.get(ModelVersion, default.version_id)
        assert row is not None
        return row, DEFAULT_ALIAS
    return get_version(session, principal, name, None), None


def delete_version(session: Session, principal: Principal, name: str, version: int) -> ModelVersion:
    row = get_version(session, principal, name, version)
    pointing = session.scalars(select(ModelAlias.alias).where(ModelAlias.version_id == row.id)).all()
    if pointing:
        raise Conflict(
            f"model {name!r} version {version} is pointed at by alias(es) {', '.join(sorted(pointing))}; "
            "move or delete them first"
        )
    session.delete(row)
    session.flush()
    return row


def delete_model(session: Session, principal: Principal, name: str) -> list[ModelVersion]:
    versions = list_versions(session, principal, name)
    if session.scalar(
        select(ModelAlias.alias).where(ModelAlias.project_id == principal.project_id, ModelAlias.model_name == name)
    ):
        raise Conflict(f"model {name!r} still has aliases; delete them first")
    session.execute(delete(ModelVersion).where(ModelVersion.id.in_([v.id for v in versions])))
    session.flush()
    return versions


def update_serving(
    session: Session, principal: Principal, name: str, version: int, config: dict[str, Any]
) -> ModelVersion:
    row = get_version(session, principal, name, version)
    row.serving_config = {k: v for k, v in {**(row.serving_config or {}), **config}.items() if v is not None}
    session.flush()
    return row


def to_ref(row: ModelVersion, project_name: str) -> ModelRef:
    return ModelRef(
        version_id=row.id,
        project=project_name,
        name=row.name,
        version=row.version,
        task=row.task,
        labels=tuple(row.labels),
        signature=dict(row.input_signature),
        artifacts=dict(row.artifacts),
        serving=dict(row.serving_config or {}),
    )
