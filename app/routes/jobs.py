"""/v1/jobs: submit, list, get, cancel, retry, events (JSON or Server-Sent Events), logs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from app.auth import Principal, bearer_key, require
from app.deps import SessionDep
from app.job_submitter import JobSubmitter
from app.schemas.common import Page
from app.schemas.jobs import JobCreate, JobEventOut, JobEventsPage, JobOut
from app.services import jobs as service
from app.services.job_states import is_terminal
from app.tables import Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
SSE_POLL_S = 0.5
SSE_KEEPALIVE_S = 15.0


def _out(session: Session, job: Job) -> JobOut:
    out = JobOut.model_validate(job)
    out.model_version = service.version_of_job(session, job.id)
    return out


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobOut, responses={200: {"model": JobOut}})
async def submit_job(
    body: JobCreate,
    request: Request,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> Response:
    """201 with the new job; 200 with the earlier job for a repeated ``Idempotency-Key`` and body. The job is
    committed, and its message handed to the broker, before the answer is sent (see ``app.job_submitter``)."""
    submitter: JobSubmitter = request.app.state.job_submitter
    out, created = await submitter.submit(bearer_key(request), body, idempotency_key)
    return Response(
        out.model_dump_json(),
        status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        media_type="application/json",
    )


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
    return _out(session, service.get_job(session, principal, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, session: SessionDep, principal: Annotated[Principal, Depends(require("write"))]) -> JobOut:
    return _out(session, service.cancel_job(session, principal, job_id))


@router.post("/{job_id}/retry", status_code=status.HTTP_201_CREATED, response_model=JobOut)
def retry_job(
    job_id: str,
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require("write"))],
) -> JobOut:
    return JobOut.model_validate(service.retry_job(session, request.app.state.settings, principal, job_id))


def _sse(event: str, data: object, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def _stream(factory: sessionmaker[Session], job_id: str, after: int) -> Iterator[str]:
    """Events as they are written, progress as it changes; ends with ``end`` once the job has ended."""
    last_progress: object = None
    last_sent = time.monotonic()
    while True:
        with factory() as session:
            job = session.get(Job, job_id)
            if job is None:
                yield _sse("end", {"state": "deleted"})
                return
            state, progress = job.state, job.progress
            events = service.list_events(session, job_id, after=after)
        chunks = [_sse(e.kind, {**e.data, "created_at": e.created_at.isoformat()}, e.id) for e in events]
        if events:
            after = events[-1].id
        if progress and progress != last_progress and not is_terminal(state):
            last_progress = progress
            chunks.append(_sse("progress", progress))
        if chunks:
            last_sent = time.monotonic()
            yield "".join(chunks)
        if is_terminal(state) and not events:
            yield _sse("end", {"state": state})
            return
        if time.monotonic() - last_sent > SSE_KEEPALIVE_S:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"
        if not events:
            time.sleep(SSE_POLL_S)


@router.get("/{job_id}/events", response_model=JobEventsPage)
def job_events(
    job_id: str,
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require("read"))],
    after: Annotated[int, Query(ge=0, description="return events with an id greater than this")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> JobEventsPage | StreamingResponse:
    """Per-epoch metrics, state changes and log lines, oldest first. With ``Accept: text/event-stream`` the
    answer is a Server-Sent Events stream (``progress`` events too) that ends with an ``end`` event once the
    job has ended; ``Last-Event-ID`` resumes it."""
    job = service.get_job(session, principal, job_id)
    if "text/event-stream" in request.headers.get("accept", ""):
        start = max(after, last_event_id or 0)
        return StreamingResponse(
            _stream(request.app.state.sessionmaker, job.id, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    events = service.list_events(session, job.id, after=after, limit=limit)
    return JobEventsPage(
        items=[JobEventOut.model_validate(e) for e in events],
        next_after=events[-1].id if events else after,
        job_state=job.state,
    )


@router.get("/{job_id}/logs", response_class=PlainTextResponse)
def job_logs(
    job_id: str,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require("read"))],
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 5000,
) -> PlainTextResponse:
    """The job's log as text, one line per record (``<time> <message>``); ``X-Next-After`` pages on."""
    job = service.get_job(session, principal, job_id)
    events = service.list_events(session, job.id, after=after, limit=limit, kinds=("log",))
    lines = [f"{e.created_at.isoformat(timespec='milliseconds')} {e.data.get('message', '')}\n" for e in events]
    next_after = events[-1].id if events else after
    return PlainTextResponse("".join(lines), headers={"X-Next-After": str(next_after)})
