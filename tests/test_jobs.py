"""Jobs without training: the state machine (function and database), submit validation, idempotency,
cancel and retry, events (JSON cursor, SSE), logs, the sweep, claim rules, priorities, webhooks."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.helpers import TINY_IMAGE_SPEC
from tests.jobs_helpers import WebhookReceiver, job_row, ready_dataset


def _submit(client, headers, dataset_id, spec=None, **extra):  # type: ignore[no-untyped-def]
    body = {"dataset_id": dataset_id, "model_name": "m", "spec": spec or TINY_IMAGE_SPEC, "device": "gpu", **extra}
    return client.post("/v1/jobs", headers=headers, json=body)


def _job(job_id):  # type: ignore[no-untyped-def]
    from app.db import session_scope
    from app.tables import Job

    with session_scope() as session:
        return session.get(Job, job_id)


# -- the state machine ------------------------------------------------------------------------------------------


def test_transition_function_refuses_illegal_moves():
    from app.services.job_states import IllegalTransition, transition
    from app.tables import Job

    job = Job(id="j", state="queued")
    with pytest.raises(IllegalTransition):
        transition(job, "succeeded")
    transition(job, "running")
    assert job.started_at is not None
    transition(job, "cancelling")
    assert job.cancel_requested_at is not None
    transition(job, "cancelled")
    assert job.finished_at is not None
    for state in ("queued", "running", "failed", "succeeded"):
        with pytest.raises(IllegalTransition):
            transition(job, state)


def _refused(conn, sql: str, **params) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(DBAPIError) as info:
        with conn.begin_nested():
            conn.execute(text(sql), params)
    return str(info.value)


def _check_guard(engine, job_id: str) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        msg = _refused(conn, "UPDATE jobs SET state='succeeded', finished_at=CURRENT_TIMESTAMP WHERE id=:i", i=job_id)
        assert "illegal job state transition" in msg
        conn.execute(text("UPDATE jobs SET state='running', started_at=CURRENT_TIMESTAMP WHERE id=:i"), {"i": job_id})
        conn.execute(text("UPDATE jobs SET attempts=2 WHERE id=:i"), {"i": job_id})  # same state: allowed
        conn.execute(text("UPDATE jobs SET state='failed', finished_at=CURRENT_TIMESTAMP WHERE id=:i"), {"i": job_id})
        assert "terminal" in _refused(conn, "UPDATE jobs SET attempts=5 WHERE id=:i", i=job_id)
        assert "terminal" in _refused(conn, "UPDATE jobs SET state='queued', finished_at=NULL WHERE id=:i", i=job_id)
        # The CHECK still ties finished_at to terminal states.
        job2 = conn.execute(text("SELECT id FROM jobs WHERE id<>:i"), {"i": job_id}).scalar()
        _refused(conn, "UPDATE jobs SET finished_at=CURRENT_TIMESTAMP WHERE id=:i", i=job2)
        conn.commit()
        assert conn.execute(text("SELECT state FROM jobs WHERE id=:i"), {"i": job_id}).scalar() == "failed"


def test_database_refuses_illegal_transitions_postgres():
    from app.db import get_engine

    dataset = ready_dataset()
    job_id = job_row(dataset)
    job_row(dataset)
    _check_guard(get_engine(), job_id)


def test_database_refuses_illegal_transitions_sqlite(tmp_path):
    from sqlalchemy import create_engine

    from app.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'guard.db'}"
    upgrade(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO projects (id, name, created_at) VALUES ('p', 'p', CURRENT_TIMESTAMP)"))
        conn.execute(
            text(
                "INSERT INTO datasets (id, project_id, name, description, task, state, format, content_hash,"
                " size_bytes,"
                " storage_key, num_examples, labels, report, created_at, updated_at) VALUES ('d', 'p', 'd', '',"
                " 'image_classification', 'ready', 'zip', 'h', 0, 'k', 0, '[]', '{}', CURRENT_TIMESTAMP,"
                " CURRENT_TIMESTAMP)"
            )
        )
        for jid in ("j1", "j2"):
            conn.execute(
                text(
                    "INSERT INTO jobs (id, project_id, dataset_id, model_name, spec, state, priority, queue, attempts,"
                    " max_attempts, progress, metrics, result, created_at, device) VALUES (:i, 'p', 'd', 'm', '{}',"
                    " 'queued', 5, 'q', 0, 3, '{}', '{}', '{}', CURRENT_TIMESTAMP, 'cpu')"
                ),
                {"i": jid},
            )
    _check_guard(engine, "j1")
    engine.dispose()


# -- submit -----------------------------------------------------------------------------------------------------


def test_submit_validates_against_dataset_and_base(client, admin_headers, tmp_path, monkeypatch):
    image_ds, text_ds = ready_dataset(), ready_dataset(task="text_classification")
    cases = [
        (text_ds, TINY_IMAGE_SPEC, "MobileNetV2 is an image base but dataset"),
        (
            image_ds,
            {**TINY_IMAGE_SPEC, "base": {"kind": "catalog", "name": "NoSuchNet", "weights": "none"}},
            "unknown catalog base 'NoSuchNet'",
        ),
        (
            image_ds,
            {**TINY_IMAGE_SPEC, "base": {"kind": "catalog", "name": "ResNet50", "weights": "none", "alpha": 0.5}},
            "has no width multiplier",
        ),
    ]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cases.append(
        (
            image_ds,
            {
                **TINY_IMAGE_SPEC,
                "base": {"kind": "catalog", "name": "MobileNetV2", "weights": "imagenet", "alpha": 0.35},
            },
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
        )
    )
    for dataset_id, spec, expected in cases:
        response = _submit(client, admin_headers, dataset_id, spec)
        assert response.status_code == 422, response.text
        assert expected in response.json()["detail"], response.json()
    assert client.get("/v1/jobs", headers=admin_headers).json()["total"] == 0


def test_idempotency_key(client, admin_headers):
    dataset = ready_dataset()
    headers = {**admin_headers, "Idempotency-Key": "k-1"}
    first = _submit(client, headers, dataset)
    assert first.status_code == 201, first.text
    again = _submit(client, headers, dataset)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = _submit(client, headers, dataset, priority=9)
    assert other.status_code == 409 and other.json()["job_id"] == first.json()["id"]
    assert _submit(client, admin_headers, dataset).json()["id"] != first.json()["id"]
    assert client.get("/v1/jobs", headers=admin_headers).json()["total"] == 2


def test_submit_routes_by_device_and_records_owner_message(client, admin_headers, settings):
    dataset = ready_dataset()
    gpu = _submit(client, admin_headers, dataset).json()
    cpu = _submit(client, admin_headers, dataset, device="cpu", priority=0).json()
    assert (gpu["device"], gpu["queue"]) == ("gpu", settings.gpu_queue)
    assert (cpu["device"], cpu["queue"]) == ("cpu", settings.default_queue)
    assert _job(gpu["id"]).task_id and gpu["enqueued_at"]
    from worker.job_runner import claim  # dropping the cpu job's message keeps a live worker off it

    client.post(f"/v1/jobs/{cpu['id']}/cancel", headers=admin_headers)
    assert claim(cpu["id"], _job(cpu["id"]).task_id, "w", settings).action == "drop"


# -- cancel, retry, events, logs --------------------------------------------------------------------------------


def test_cancel_queued_job_never_starts_and_retry(client, admin_headers, settings):
    from worker.job_runner import claim

    job = _submit(client, admin_headers, ready_dataset()).json()
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel", headers=admin_headers)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["finished_at"] and cancelled.json()["cancel_requested_at"]
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=admin_headers).status_code == 409
    assert claim(job["id"], _job(job["id"]).task_id, "w", settings).action == "drop"
    assert _job(job["id"]).attempts == 0

    retry = client.post(f"/v1/jobs/{job['id']}/retry", headers=admin_headers)
    assert retry.status_code == 201, retry.text
    new = retry.json()
    assert new["retry_of"] == job["id"] and new["state"] == "queued" and new["spec"] == job["spec"]
    assert new["id"] != job["id"] and new["device"] == "gpu"
    refused = client.post(f"/v1/jobs/{new['id']}/retry", headers=admin_headers)
    assert refused.status_code == 409 and "only a failed or cancelled job" in refused.json()["detail"]
    client.post(f"/v1/jobs/{new['id']}/cancel", headers=admin_headers)


def test_events_cursor_logs_and_sse_end(client, admin_headers):
    from app.db import session_scope
    from app.tables import JobEvent

    job = _submit(client, admin_headers, ready_dataset()).json()
    with session_scope() as session:
        session.add(JobEvent(job_id=job["id"], kind="epoch", data={"epoch": 1, "loss": 0.5}))
        session.add(JobEvent(job_id=job["id"], kind="log", data={"message": "hello from the engine"}))
    page = client.get(f"/v1/jobs/{job['id']}/events", headers=admin_headers).json()
    assert [e["kind"] for e in page["items"]] == ["state", "epoch", "log"]
    assert page["job_state"] == "queued"
    after = page["items"][0]["id"]
    rest = client.get(f"/v1/jobs/{job['id']}/events?after={after}", headers=admin_headers).json()
    assert [e["kind"] for e in rest["items"]] == ["epoch", "log"] and rest["next_after"] == page["next_after"]
    logs = client.get(f"/v1/jobs/{job['id']}/logs", headers=admin_headers)
    assert logs.headers["content-type"].startswith("text/plain") and "hello from the engine" in logs.text

    # SSE: the stream is open while the job is queued and ends once it is cancelled.
    def cancel_soon() -> None:
        time.sleep(1.0)
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=admin_headers)

    threading.Thread(target=cancel_soon).start()
    sse_headers = {**admin_headers, "Accept": "text/event-stream"}
    started = time.monotonic()
    with client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=sse_headers) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        body = "".join(stream.iter_text())
    assert time.monotonic() - started >= 0.9
    kinds = [line.split(": ", 1)[1] for line in body.splitlines() if line.startswith("event: ")]
    assert kinds[:3] == ["state", "epoch", "log"] and kinds[-2:] == ["state", "end"], body
    assert json.loads(body.strip().splitlines()[-1].removeprefix("data: ")) == {"state": "cancelled"}


# -- claim rules and the sweep ----------------------------------------------------------------------------------


def test_claim_drops_duplicates_resumes_redelivery_and_defers_over_the_limit(settings):
    from worker.job_runner import claim

    dataset = ready_dataset()
    running = job_row(dataset, "running", attempts=1, task_id="m-1", heartbeat_age_s=1)
    assert claim(running, "m-other", "w", settings).action == "drop"
    redelivered = claim(running, "m-1", "w2", settings)
    assert (redelivered.action, redelivered.resumed, redelivered.attempt) == ("run", True, 2)
    assert claim(job_row(dataset, "succeeded"), "t-1", "w", settings).action == "drop"

    waiting = job_row(dataset, "queued", task_id="m-2")
    limited = settings.model_copy(update={"max_running_per_project": 1})
    deferred = claim(waiting, "m-2", "w", limited)
    assert deferred.action == "defer" and "limit 1" in deferred.reason
    job = _job(waiting)
    assert job.state == "queued" and job.task_id != "m-2" and job.attempts == 0
    assert claim(waiting, job.task_id, "w", settings).action == "run"  # under the default limit it runs


def test_sweep_requeues_stale_jobs_then_fails_them(settings):
    from app.db import session_scope
    from app.services.sweep import run_sweep

    dataset = ready_dataset()
    fresh = job_row(dataset, "running", attempts=1, heartbeat_age_s=5)
    stale = job_row(dataset, "running", attempts=1, max_attempts=2, heartbeat_age_s=3600)
    spent = job_row(dataset, "running", attempts=2, max_attempts=2, heartbeat_age_s=3600)
    stopping = job_row(dataset, "cancelling", attempts=1, heartbeat_age_s=3600)
    quick = settings.model_copy(update={"heartbeat_stale_s": 60, "sweep_queued_after_s": 3600})
    with session_scope() as session:
        report = run_sweep(session, quick)
    assert (report.requeued_stale, report.failed_stale, report.cancelled_stale) == (1, 1, 1)
    assert _job(fresh).state == "running"
    requeued = _job(stale)
    assert requeued.state == "queued" and requeued.task_id != "t-1" and requeued.worker is None
    failed = _job(spent)
    assert failed.state == "failed" and failed.error_kind == "system"
    assert "no heartbeat since" in failed.error and "gave up after 2 of 2 attempts" in failed.error
    assert _job(stopping).state == "cancelled"


def test_sweep_resends_queued_jobs_the_broker_lost(client, admin_headers, settings):
    from app.db import session_scope
    from app.services.sweep import run_sweep
    from app.tables import Job

    dataset = ready_dataset()
    in_broker = _submit(client, admin_headers, dataset).json()["id"]  # its message waits on the gpu queue
    lost = job_row(dataset, "queued", task_id="never-sent", enqueued_age_s=600)
    with session_scope() as session:
        session.get(Job, in_broker).enqueued_at -= timedelta(seconds=600)
        session.get(Job, lost).queue = settings.gpu_queue
    with session_scope() as session:
        report = run_sweep(session, settings.model_copy(update={"sweep_queued_after_s": 60}))
    assert report.resent_queued == 1
    assert _job(lost).task_id != "never-sent"
    from app.broker import messages_in_broker

    held = messages_in_broker(settings, [settings.gpu_queue])
    assert held is not None and {_job(lost).task_id, _job(in_broker).task_id} <= held
    for job_id in (in_broker, lost):
        client.post(f"/v1/jobs/{job_id}/cancel", headers=admin_headers)


def test_priorities_are_served_highest_first(settings):
    from app.broker import celery_client, enqueue_job

    queue = f"{settings.default_queue}.prio-{uuid.uuid4().hex[:6]}"
    for job_id, priority in (("low", 1), ("high", 9), ("mid", 5)):
        enqueue_job(settings, job_id, queue, priority)
    order = []
    with celery_client(settings).connection_for_read() as conn:
        channel = conn.default_channel
        for _ in range(3):
            message = channel.basic_get(queue)
            order.append(json.loads(message.body)[0][0])
            message.ack()
    assert order == ["high", "mid", "low"]


# -- webhooks ---------------------------------------------------------------------------------------------------


def test_webhook_crud_scopes_and_isolation(client, admin_headers, auth_headers):
    write = auth_headers("acme", "write")
    assert client.post("/v1/webhooks", headers=write, json={"url": "http://127.0.0.1:9/h"}).status_code == 403
    bad = client.post("/v1/webhooks", headers=admin_headers, json={"url": "ftp://x"})
    assert bad.status_code == 422 and "http(s)" in bad.json()["detail"]
    created = client.post("/v1/webhooks", headers=admin_headers, json={"url": "http://127.0.0.1:9/h"})
    assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
    hook_id = created.json()["id"]
    listed = client.get("/v1/webhooks", headers=admin_headers).json()
    assert [h["id"] for h in listed] == [hook_id] and "secret" not in listed[0]
    other = auth_headers("other", "admin")
    assert client.get("/v1/webhooks", headers=other).json() == []
    assert client.delete(f"/v1/webhooks/{hook_id}", headers=other).status_code == 404
    assert client.delete(f"/v1/webhooks/{hook_id}", headers=admin_headers).status_code == 204
    assert client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=admin_headers).status_code == 404


def test_webhooks_are_signed_retried_and_logged(client, admin_headers, settings):
    from app.db import session_scope
    from app.services.webhooks import verify
    from app.tables import WebhookDelivery, utcnow
    from worker.webhook_delivery import deliver

    quick = settings.model_copy(update={"webhook_backoff_s": 30})
    with WebhookReceiver(fail_first=1) as receiver:
        hook = client.post("/v1/webhooks", headers=admin_headers, json={"url": receiver.url}).json()
        job = _submit(client, admin_headers, ready_dataset()).json()
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=admin_headers)
        log = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=admin_headers).json()
        assert sorted(d["event"] for d in log) == ["job.cancelled", "job.queued"]
        first, second = sorted(log, key=lambda d: d["event"], reverse=True)  # queued, then cancelled
        assert deliver(first["id"], quick) in ("retrying", "skipped")  # a live worker may be delivering too
        with session_scope() as session:
            row = session.get(WebhookDelivery, first["id"])
            if row.state == "pending":
                assert row.attempts == 1 and "HTTP 500" in row.error and row.next_attempt_at > utcnow()
                assert deliver(first["id"], quick) == "not_due"
                row.next_attempt_at = utcnow()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(receiver.received) < 2:
            for d in (first, second):
                deliver(d["id"], quick)
            time.sleep(0.2)
        assert sorted(receiver.events()) == ["job.cancelled", "job.queued"]
        for request in receiver.received:
            headers = {k.lower(): v for k, v in request["headers"].items()}
            ts = headers["x-transferlab-timestamp"]
            assert verify(hook["secret"], ts, request["body"], headers["x-transferlab-signature"])
            assert not verify("whsec_wrong", ts, request["body"], headers["x-transferlab-signature"])
            payload = json.loads(request["body"])
            assert payload["job"]["id"] == job["id"] and payload["event"] == f"job.{payload['job']['state']}"
    log = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=admin_headers).json()
    assert all(d["state"] == "delivered" for d in log)
    assert sum(d["attempts"] for d in log) == 3 and any(d["response_status"] == 200 for d in log)


def test_submit_checks_layer_names_of_catalog_bases(client, admin_headers):
    dataset = ready_dataset()
    fine_tune = {**TINY_IMAGE_SPEC, "strategy": "fine_tune"}
    bad = {**fine_tune, "hyperparameters": {**TINY_IMAGE_SPEC["hyperparameters"], "unfreeze_from_layer": "block_99_x"}}
    response = _submit(client, admin_headers, dataset, bad)
    assert response.status_code == 422, response.text
    body = response.json()
    assert "'block_99_x' is not a layer of MobileNetV2" in body["detail"] and "out_relu" in body["detail"]
    assert body["valid_examples"] and body["field"] == "hyperparameters.unfreeze_from_layer"
    assert client.get("/v1/jobs", headers=admin_headers).json()["total"] == 0
    layers = client.get("/v1/bases/MobileNetV2/layers", headers=admin_headers).json()["layers"]
    assert "block_16_project" in layers and layers[-1] == "out_relu"
    hyper = {**TINY_IMAGE_SPEC["hyperparameters"], "unfreeze_from_layer": "block_16_project"}
    good = {**fine_tune, "hyperparameters": hyper}
    assert _submit(client, admin_headers, dataset, good).status_code == 201
    assert client.get("/v1/bases/NoSuchNet/layers", headers=admin_headers).status_code == 404
