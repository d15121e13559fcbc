"""Builders for job tests: a ready dataset row, a job row in any state, a local webhook receiver."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers import TINY_IMAGE_SPEC


def ready_dataset(project: str = "acme", task: str = "image_classification") -> str:
    from app.auth import get_or_create_project
    from app.db import session_scope
    from app.tables import Dataset, new_id

    with session_scope() as session:
        p = get_or_create_project(session, project)
        ds = Dataset(
            project_id=p.id,
            name="d",
            task=task,
            state="ready",
            format="zip" if task.startswith("image") else "csv",
            content_hash=new_id(),
            storage_key="datasets/none",
            labels=["a", "b"],
            num_examples=20,
        )
        session.add(ds)
        session.flush()
        return ds.id


def job_row(
    dataset_id: str,
    state: str = "queued",
    *,
    heartbeat_age_s: float | None = None,
    attempts: int = 0,
    max_attempts: int = 3,
    task_id: str | None = "t-1",
    enqueued_age_s: float = 0.0,
) -> str:
    """A job row put straight into ``state`` (bypassing the API), for sweep and claim tests."""
    from app.db import session_scope
    from app.tables import Dataset, Job, utcnow

    now = utcnow()
    with session_scope() as session:
        ds = session.get(Dataset, dataset_id)
        assert ds is not None
        job = Job(
            project_id=ds.project_id,
            dataset_id=ds.id,
            model_name="m",
            spec=dict(TINY_IMAGE_SPEC),
            state=state,
            attempts=attempts,
            max_attempts=max_attempts,
            queue="q",
            task_id=task_id,
            enqueued_at=now - timedelta(seconds=enqueued_age_s),
            started_at=now if state != "queued" else None,
            heartbeat_at=now - timedelta(seconds=heartbeat_age_s) if heartbeat_age_s is not None else None,
            finished_at=now if state in ("succeeded", "failed", "cancelled") else None,
        )
        session.add(job)
        session.flush()
        return job.id


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records what is posted; ``fail_first`` answers 500 that many times."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    failing = receiver.fail_first > 0
                    receiver.fail_first -= 1 if failing else 0
                    if not failing:
                        receiver.received.append({"headers": dict(self.headers), "body": body})
                self.send_response(500 if failing else 200)
                self.end_headers()
                self.wfile.write(b"no" if failing else b"ok")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[str]:
        with self.lock:
            return [json.loads(r["body"])["event"] for r in self.received]
