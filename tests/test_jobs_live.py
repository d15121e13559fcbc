"""Jobs on a live Celery worker (Redis, Postgres): signed webhooks through the I/O queue, cancelling a running
job within a batch (watched over Server-Sent Events), and a worker process SIGKILLed mid-training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import image_zip, wait_for_job
from tests.jobs_helpers import WebhookReceiver, ready_dataset

# A three-layer convolutional base (uploaded-file kind): cheap to build and trace, yet every batch trains the
# whole base, so an epoch lasts long enough to act on mid-training.
SLOW_SPEC = {
    "task": "image_classification",
    "base": {"kind": "catalog", "name": "MobileNetV2", "weights": "none", "alpha": 0.35},
    "strategy": "fine_tune",
    "hyperparameters": {
        "epochs": 6,
        "batch_size": 2,
        "image_size": 32,
        "learning_rate": 0.001,
        "early_stopping": None,
        "validation_split": 0.2,
        "test_split": 0.1,
    },
    "export_formats": ["keras"],
    "seed": 3,
}
TINY_BASE = """
import sys, keras
inputs = keras.Input((32, 32, 3))
x = keras.layers.Rescaling(1 / 255.0)(inputs)
for filters in (32, 32, 32):
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
keras.Model(inputs, x, name="tiny").save(sys.argv[1])
"""


@pytest.fixture(scope="module")
def tiny_base_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bases") / "tiny.keras"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", TINY_BASE, str(path)], check=True, env=env)
    return path


@pytest.fixture()
def slow_spec(client, admin_headers, tiny_base_file) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """The slow spec on the tiny base, uploaded as a user would (POST /v1/bases/uploads)."""
    up = client.post(
        "/v1/bases/uploads", headers=admin_headers, files={"file": ("tiny.keras", tiny_base_file.read_bytes())}
    )
    assert up.status_code == 201, up.text
    return {**SLOW_SPEC, "base": {"kind": "keras_file", "upload_id": up.json()["upload_id"]}}


def _uploaded_dataset(client, headers, per_class: int = 10) -> str:  # type: ignore[no-untyped-def]
    up = client.post(
        "/v1/datasets",
        headers=headers,
        data={"name": "c"},
        files={"file": ("c.zip", image_zip(per_class=per_class), "application/zip")},
    )
    assert up.status_code in (200, 201, 202), up.text
    dataset = up.json()
    deadline = time.monotonic() + 60
    while dataset["state"] != "ready" and time.monotonic() < deadline:
        assert dataset["state"] in ("uploading", "validating"), dataset
        time.sleep(0.3)
        dataset = client.get(f"/v1/datasets/{dataset['id']}", headers=headers).json()
    return str(dataset["id"])


def _job_row(job_id: str):  # type: ignore[no-untyped-def]
    from app.db import session_scope
    from app.tables import Job

    with session_scope() as session:
        return session.get(Job, job_id)


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_webhooks_delivered_by_the_worker(client, admin_headers, live_worker):
    from app.services.webhooks import verify

    with WebhookReceiver() as receiver:
        hook = client.post("/v1/webhooks", headers=admin_headers, json={"url": receiver.url}).json()
        body = {"dataset_id": ready_dataset(), "model_name": "m", "spec": SLOW_SPEC, "device": "gpu"}
        job = client.post("/v1/jobs", headers=admin_headers, json=body).json()  # no gpu worker: stays queued
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=admin_headers)
        _wait(lambda: len(receiver.received) >= 2, 60, f"two webhook posts; worker log:\n{live_worker.log_tail()}")
        assert sorted(receiver.events()) == ["job.cancelled", "job.queued"]
        for request in receiver.received:
            headers = {k.lower(): v for k, v in request["headers"].items()}
            assert verify(
                hook["secret"], headers["x-transferlab-timestamp"], request["body"], headers["x-transferlab-signature"]
            )
    log = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=admin_headers).json()
    assert [d["state"] for d in log] == ["delivered", "delivered"]


@pytest.mark.slow
def test_cancel_running_job_over_sse(client, admin_headers, live_worker, settings, slow_spec):
    from app.services.sweep import job_dir

    dataset = _uploaded_dataset(client, admin_headers)
    spec = {**slow_spec, "hyperparameters": {**slow_spec["hyperparameters"], "epochs": 200}}
    job = client.post(
        "/v1/jobs",
        headers=admin_headers,
        json={"dataset_id": dataset, "model_name": "c", "spec": spec, "device": "cpu"},
    ).json()

    def cancel_once_training() -> None:
        _wait(lambda: (_job_row(job["id"]).progress or {}).get("batch"), 180, "training progress")
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=admin_headers)

    canceller = threading.Thread(target=cancel_once_training)
    canceller.start()
    with client.stream(
        "GET", f"/v1/jobs/{job['id']}/events", headers={**admin_headers, "Accept": "text/event-stream"}
    ) as stream:
        body = "".join(stream.iter_text())
    canceller.join()
    kinds = [line.split(": ", 1)[1] for line in body.splitlines() if line.startswith("event: ")]
    assert "progress" in kinds and kinds[-1] == "end", body[-2000:]
    assert json.loads(body.strip().splitlines()[-1].removeprefix("data: ")) == {"state": "cancelled"}
    final = client.get(f"/v1/jobs/{job['id']}", headers=admin_headers).json()
    assert final["state"] == "cancelled" and final["model_version"] is None
    assert final["progress"]["epoch"] < 200
    states = [
        e["data"]["state"]
        for e in client.get(f"/v1/jobs/{job['id']}/events", headers=admin_headers).json()["items"]
        if e["kind"] == "state"
    ]
    assert states == ["queued", "running", "cancelling", "cancelled"]
    assert not job_dir(settings, job["id"]).exists(), "partial artifacts are removed"
    assert (
        "cancelled; partial artifacts removed" in client.get(f"/v1/jobs/{job['id']}/logs", headers=admin_headers).text
    )


@pytest.mark.slow
def test_sigkilled_training_process_is_redelivered_and_resumes(client, admin_headers, live_worker, slow_spec):
    dataset = _uploaded_dataset(client, admin_headers)
    job = client.post(
        "/v1/jobs", headers=admin_headers, json={"dataset_id": dataset, "model_name": "k", "spec": slow_spec}
    ).json()

    def first_epoch_done():  # type: ignore[no-untyped-def]
        events = client.get(f"/v1/jobs/{job['id']}/events", headers=admin_headers).json()["items"]
        return any(e["kind"] == "epoch" for e in events)

    _wait(first_epoch_done, 180, f"the first epoch; worker log:\n{live_worker.log_tail()}")
    row = _job_row(job["id"])
    assert row.state == "running" and row.attempts == 1
    pid = int(row.worker.rsplit(":", 1)[1])
    assert pid != live_worker.proc.pid, "the job runs in a pool child, not in the worker's main process"
    os.kill(pid, signal.SIGKILL)  # the process doing the training

    final = wait_for_job(client, job["id"], admin_headers, timeout=240)
    assert final["state"] == "succeeded", (final, live_worker.log_tail())
    assert final["attempts"] == 2 and final["model_version"] == 1
    assert final["metrics"]["epochs_completed"] == 6
    assert final["result"]["resumed_from_epoch"] >= 1
    assert int(final["worker"].rsplit(":", 1)[1]) != pid
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=admin_headers).json()["items"]
    assert {e["data"]["epoch"] for e in events if e["kind"] == "epoch"} == {1, 2, 3, 4, 5, 6}
    assert (
        "redelivered after the worker was lost" in client.get(f"/v1/jobs/{job['id']}/logs", headers=admin_headers).text
    )
