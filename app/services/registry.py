"""The model registry: versions produced by succeeded jobs, looked up by name and version."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth import Principal
from app.errors import NotFound
from app.tables import Job, ModelVersion


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
