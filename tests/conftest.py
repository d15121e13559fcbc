"""Test fixtures: a fresh Postgres database built by Alembic, Redis as the broker, a live worker.

Every run gets its own database (``tl_test_<random>``) and its own Celery queue name, so runs on a
shared machine do not see each other. Tables are truncated after each test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

RUN_ID = uuid.uuid4().hex[:10]
PG_ADMIN_URL = os.environ.get("TL_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_DB = f"tl_test_{RUN_ID}"
TEST_DB_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{TEST_DB}"
DATA_DIR = Path(tempfile.mkdtemp(prefix=f"tl-test-{RUN_ID}-"))

# Set before anything imports app.config: every component under test reads these.
os.environ.update(
    {
        "TL_DATABASE_URL": TEST_DB_URL,
        "TL_BROKER_URL": REDIS_URL,
        "TL_DATA_DIR": str(DATA_DIR),
        "TL_DEFAULT_QUEUE": f"tl-test-{RUN_ID}",
        "TL_LOG_LEVEL": "INFO",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def _admin_engine():  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session", autouse=True)
def database() -> Iterator[str]:
    from sqlalchemy import text

    from app.migrate import upgrade

    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{TEST_DB}"'))
    upgrade(TEST_DB_URL)
    yield TEST_DB_URL
    from app.db import get_engine

    get_engine.cache_clear()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)'))
    admin.dispose()
    shutil.rmtree(DATA_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _clean_tables(database: str) -> Iterator[None]:
    yield
    from sqlalchemy import text

    from app.db import Base, get_engine

    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with get_engine(database).begin() as conn:
        conn.execute(text(f"TRUNCATE {names} CASCADE"))
    # The rows are gone, so are their files: the next test starts with an empty artifact store.
    for sub in ("uploads", "datasets", "models", "jobs", "batch_predictions"):
        shutil.rmtree(DATA_DIR / "artifacts" / sub, ignore_errors=True)


@pytest.fixture(scope="session")
def settings():  # type: ignore[no-untyped-def]
    from app.config import get_settings

    return get_settings()


@pytest.fixture()
def client(settings):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings)) as test_client:
        yield test_client


def make_key(project: str, scope: str) -> str:
    from app.auth import create_key
    from app.db import session_scope

    with session_scope() as session:
        _, key = create_key(session, project, scope)
    return key


@pytest.fixture()
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {make_key('acme', 'admin')}"}


@pytest.fixture()
def auth_headers():  # type: ignore[no-untyped-def]
    """Factory: headers for a new key of ``scope`` in ``project``."""

    def factory(project: str = "acme", scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {make_key(project, scope)}"}

    return factory


class LiveWorker:
    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        from app.cli import worker_argv

        argv = worker_argv(None, 1, "INFO")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-3000:]}")
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""


@pytest.fixture(scope="session")
def live_worker(database: str) -> Iterator[LiveWorker]:
    """A real Celery worker process (prefork, one job at a time) consuming this run's queues.

    Messages sent by earlier tests (for rows since truncated) are dropped first: the worker would
    otherwise spend a fresh child process on each of them before reaching the current test's work.
    """
    _purge_queues()
    # Tests measure no warm-start latency: skip the engine prewarm.
    worker = LiveWorker(DATA_DIR / "worker.log", dict(os.environ, PYTHONPATH=str(REPO_ROOT), TL_PREWARM_WORKER="false"))
    worker.start()
    yield worker
    worker.stop()


def _purge_queues() -> None:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        # The run's queues, their .io twin and the per-priority lists Celery keeps beside them.
        keys = list(client.scan_iter(match=os.environ["TL_DEFAULT_QUEUE"] + "*"))
        if keys:
            client.delete(*keys)
    except Exception:  # noqa: BLE001
        pass


def pytest_sessionfinish(session, exitstatus):  # type: ignore[no-untyped-def]
    # Leave no stray queue behind in the shared Redis.
    _purge_queues()


sys.path.insert(0, str(REPO_ROOT))
