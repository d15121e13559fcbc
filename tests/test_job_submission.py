"""Group commit of job submissions: each submission in a group is checked on its own, the accepted ones are
created together (rows, state events, broker messages), a concurrent Idempotency-Key race falls back to one
submission at a time, and concurrent HTTP submissions really are grouped."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.helpers import TINY_IMAGE_SPEC
from tests.jobs_helpers import ready_dataset


def _body(dataset_id: str, **extra: Any):  # type: ignore[no-untyped-def]
    from app.schemas.jobs import JobCreate

    return JobCreate.model_validate(
        {"dataset_id": dataset_id, "model_name": "m", "spec": TINY_IMAGE_SPEC, "device": "gpu", **extra}
    )


def _key(auth_headers, project: str = "acme", scope: str = "write") -> str:  # type: ignore[no-untyped-def]
    return auth_headers(project, scope)["Authorization"].removeprefix("Bearer ")


def _submitter(settings):  # type: ignore[no-untyped-def]
    from app.auth import KeyUsage
    from app.db import get_sessionmaker
    from app.job_submitter import JobSubmitter

    return JobSubmitter(get_sessionmaker(), settings, KeyUsage(60))


def _stored(job_ids: list[str]) -> tuple[int, int, set[str]]:
    """Jobs and state events stored for ``job_ids`` (and in all), and the jobs' message ids."""
    from app.db import session_scope
    from app.tables import Job, JobEvent

    with session_scope() as session:
        jobs = session.scalar(select(func.count()).select_from(Job)) or 0
        events = session.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id.in_(job_ids))) or 0
        task_ids = set(session.scalars(select(Job.task_id).where(Job.id.in_(job_ids))))
    return jobs, events, {t for t in task_ids if t}


def test_each_submission_of_a_group_is_checked_on_its_own(settings, auth_headers):
    from app.broker import messages_in_broker
    from app.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
    from app.job_submitter import JobRequest

    dataset, elsewhere = ready_dataset("acme"), ready_dataset("other")
    write, read = _key(auth_headers), _key(auth_headers, scope="read")
    bad_base = {**TINY_IMAGE_SPEC, "base": {**TINY_IMAGE_SPEC["base"], "name": "NoSuchNet"}}
    group = [
        JobRequest(write, _body(dataset)),
        JobRequest(write, _body(dataset), "k-1"),
        JobRequest(write, _body(dataset), "k-1"),  # the same key and body: the job above
        JobRequest(write, _body(dataset, priority=9), "k-1"),  # the same key, another body
        JobRequest(write, _body("no-such-dataset")),
        JobRequest(read, _body(dataset)),
        JobRequest("tl_nothing_here", _body(dataset)),
        JobRequest(write, _body(dataset, spec=bad_base)),
        JobRequest(write, _body(elsewhere)),  # another project's dataset
        JobRequest(write, _body(dataset, device="cpu", priority=0)),
    ]
    results = _submitter(settings).commit(group)

    assert len(results) == len(group)
    created, keyed, replay, conflict, missing, forbidden, unknown_key, bad, foreign, cpu = results
    assert isinstance(created, tuple) and created[1] is True
    assert isinstance(keyed, tuple) and keyed[1] is True and keyed[0].id != created[0].id
    assert isinstance(replay, tuple) and replay[0].id == keyed[0].id and replay[1] is False
    assert isinstance(conflict, Conflict) and keyed[0].id in conflict.detail
    assert isinstance(missing, NotFound) and "no-such-dataset" in missing.detail
    assert isinstance(forbidden, Forbidden)
    assert isinstance(unknown_key, Unauthorized)
    assert isinstance(bad, Unprocessable) and "NoSuchNet" in bad.detail
    assert isinstance(foreign, NotFound)
    assert isinstance(cpu, tuple)
    assert (cpu[0].device, cpu[0].queue, cpu[0].priority) == ("cpu", settings.default_queue, 0)

    ids = [created[0].id, keyed[0].id, cpu[0].id]
    jobs, events, task_ids = _stored(ids)
    assert (jobs, events) == (3, 3)  # nothing for the refused ones, one queued event each
    from app.db import session_scope
    from app.tables import Job

    with session_scope() as session:  # columns no job sets are SQL NULL, not JSON null
        assert session.scalar(select(func.count()).select_from(Job).where(Job.splits.is_(None))) == 3
    assert all(out[0].state == "queued" and out[0].enqueued_at for out in (created, keyed, cpu))
    held = messages_in_broker(settings, [settings.gpu_queue, settings.default_queue])
    assert held is not None and task_ids <= held and len(task_ids) == 3


@pytest.mark.timeout(60)
def test_an_idempotency_race_with_another_server_falls_back_to_one_at_a_time(settings, auth_headers):
    """Another transaction holds a new job with key ``race``: the group's insert waits for it, fails on the
    unique key once it commits, and each submission is then committed alone: ``race`` replays that job."""
    from app.auth import Principal
    from app.db import get_sessionmaker, unit_of_work
    from app.job_submitter import JobRequest
    from app.services.jobs import Submission, submit_jobs
    from app.tables import ApiKey

    dataset = ready_dataset()
    key = _key(auth_headers)
    with get_sessionmaker()() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == key.split("_")[1]))
        assert row is not None
        principal = Principal(row.project_id, "acme", row.id, "write")

    results: list[Any] = []
    with unit_of_work(get_sessionmaker()) as other:
        (theirs, created), *_ = submit_jobs(other, settings, [Submission(principal, _body(dataset), "race")])
        assert created is True
        group = [JobRequest(key, _body(dataset)), JobRequest(key, _body(dataset), "race")]
        worker = threading.Thread(target=lambda: results.extend(_submitter(settings).commit(group)))
        worker.start()
        time.sleep(1.0)  # the group's INSERT is now waiting on the other transaction's key
        assert worker.is_alive()
    worker.join(30)  # the other transaction committed when its block ended

    alone, replay = results
    assert isinstance(alone, tuple) and alone[1] is True
    assert isinstance(replay, tuple) and replay[1] is False and replay[0].id == theirs.id
    jobs, events, _ = _stored([theirs.id, alone[0].id])
    assert (jobs, events) == (2, 2)


def test_concurrent_http_submissions_are_committed_in_groups(settings, auth_headers, monkeypatch):
    from app.job_submitter import JobSubmitter
    from app.main import create_app

    sizes: list[int] = []
    commit = JobSubmitter.commit

    def counting_commit(self, group):  # type: ignore[no-untyped-def]
        sizes.append(len(group))
        return commit(self, group)

    monkeypatch.setattr(JobSubmitter, "commit", counting_commit)
    dataset = ready_dataset()
    headers = auth_headers("acme", "write")
    body = _body(dataset).model_dump(mode="json")

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            posts = [client.post("/v1/jobs", headers=headers, json={**body, "priority": i % 10}) for i in range(30)]
            posts.append(client.post("/v1/jobs", headers=headers, json={**body, "dataset_id": "missing"}))
            return await asyncio.gather(*posts)

    responses = asyncio.run(run())
    *accepted, refused = responses
    assert all(r.status_code == 201 for r in accepted), [r.text for r in accepted if r.status_code != 201]
    assert refused.status_code == 404 and "missing" in refused.json()["detail"]
    ids = [r.json()["id"] for r in accepted]
    assert len(set(ids)) == 30
    assert sorted(r.json()["priority"] for r in accepted) == sorted(i % 10 for i in range(30))
    assert sum(sizes) == 31 and max(sizes) > 1, sizes  # grouped, and every submission exactly once
    jobs, events, task_ids = _stored(ids)
    assert (jobs, events, len(task_ids)) == (30, 30, 30)


def test_a_submission_the_database_refuses_fails_alone(settings, auth_headers):
    """An error the checks did not foresee (here a NUL byte, which Postgres refuses in text, sent past the API's
    own check) fails its own submission only: the rest of the group is committed one by one."""
    from sqlalchemy.exc import DataError

    from app.job_submitter import JobRequest
    from app.jobspec import JobSpec
    from app.schemas.jobs import JobCreate

    ours, theirs = ready_dataset("acme"), ready_dataset("other")
    bad = JobCreate.model_construct(
        dataset_id="x\x00", model_name="m", spec=JobSpec.model_validate(TINY_IMAGE_SPEC), priority=5, device="gpu"
    )
    group = [JobRequest(_key(auth_headers, "other"), _body(theirs)), JobRequest(_key(auth_headers), bad)]
    group.append(JobRequest(_key(auth_headers), _body(ours)))
    first, refused, last = _submitter(settings).commit(group)
    assert isinstance(first, tuple) and isinstance(last, tuple) and first[1] and last[1]
    assert isinstance(refused, DataError)
    assert _stored([first[0].id, last[0].id])[:2] == (2, 2)


def test_bad_idempotency_keys_and_nul_characters_are_422(client, admin_headers):
    dataset = ready_dataset()
    body = _body(dataset).model_dump(mode="json")
    empty = client.post("/v1/jobs", headers={**admin_headers, "Idempotency-Key": ""}, json=body)
    assert empty.status_code == 422 and "idempotency-key" in empty.json()["detail"].lower()
    nul = client.post("/v1/jobs", headers=admin_headers, json={**body, "model_name": "m", "dataset_id": "a\u0000b"})
    assert nul.status_code == 422 and "dataset_id" in nul.json()["detail"] and "NUL" in nul.json()["detail"]
    deep = {**body, "spec": {**body["spec"], "base": {**body["spec"]["base"], "name": "Mobile\u0000"}}}
    refused = client.post("/v1/jobs", headers=admin_headers, json=deep)
    assert refused.status_code == 422 and "spec.base.name" in refused.json()["detail"]
    assert client.get("/v1/jobs", headers=admin_headers).json()["total"] == 0
