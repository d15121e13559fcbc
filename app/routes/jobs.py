"""/v1/jobs: submit, list, get."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from app.auth import Principal, require
from app.deps import SessionDep
from app.schemas.common import Page
from app.schemas.jobs import JobCreate, JobOut
from app.services import jobs as service

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobOut)
def submit_job(
    body: JobCreate,
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require("write"))],
) -> JobOut:
    job = service.submit_job(session, request.app.state.settings, principal, body)
    return JobOut.model_validate(job)


@router.get("", response_model=Page[JobOut])
def list_jobs(
    session: SessionDep,
    principal: Annotated[Principal, Depends(require("read"))],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    state: Annotated[str | None, Query()] = None,
) -> Page[JobOut]:
    rows, total = service.list_jobs(session, principal, limit=limit, offset=offset, state=state)
    return Page(items=[JobOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, session: SessionDep, principal: Annotated[Principal, Depends(require("read"))]) -> JobOut:
    job = service.get_job(session, principal, job_id)
    out = JobOut.model_validate(job)
    out.model_version = service.version_of_job(session, job.id)
    return out
