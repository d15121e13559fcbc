"""The inference fast path: throttled last_used_at, cached key checks and version resolution (dropped on
alias moves), and the batcher's wait under load."""

from __future__ import annotations

import base64
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import select, update

from tests.conftest import make_key
from tests.helpers import COLORS, image_bytes
from tests.model_factory import register_image_model

RED = {"images": [base64.b64encode(image_bytes(COLORS["red"], 8)).decode()]}


def _app_client(settings, **overrides):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from app.main import create_app

    return TestClient(create_app(settings.model_copy(update=overrides)))


def _last_used(key: str) -> datetime | None:
    from app.db import session_scope
    from app.tables import ApiKey

    with session_scope() as session:
        value = session.scalar(select(ApiKey.last_used_at).where(ApiKey.prefix == key.split("_")[1]))
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _set_last_used(key: str, value: datetime | None) -> None:
    from app.db import session_scope
    from app.tables import ApiKey

    with session_scope() as session:
        session.execute(update(ApiKey).where(ApiKey.prefix == key.split("_")[1]).values(last_used_at=value))


def test_last_used_at_is_written_once_per_interval_and_again_after_it(settings):
    register_image_model()
    key = make_key("acme", "read")
    headers = {"Authorization": f"Bearer {key}"}
    with _app_client(settings, auth_cache_ttl_s=0) as client:
        assert _last_used(key) is None
        assert client.post("/v1/models/colors/predict", headers=headers, json=RED).status_code == 200
        first = _last_used(key)
        assert first is not None
        for _ in range(3):  # within the interval: no write at all
            assert client.post("/v1/models/colors/predict", headers=headers, json=RED).status_code == 200
            assert client.get("/v1/models", headers=headers).status_code == 200
        assert _last_used(key) == first
        _set_last_used(key, first - timedelta(minutes=2))  # the interval has passed
        client.app.state.key_usage._written.clear()  # noqa: SLF001 - as after a minute in this process
        assert client.get("/v1/models/colors", headers=headers).status_code == 200
        assert _last_used(key) >= first


def test_key_usage_claims_one_write_per_interval():
    from app.auth import KeyUsage

    usage = KeyUsage(60)
    now = datetime.now(UTC)
    assert usage.due("k", None, now)
    assert not usage.due("k", None, now + timedelta(seconds=1))  # claimed by the first request
    assert not usage.due("other", now, now + timedelta(seconds=30))  # written recently (by anyone)
    assert usage.due("k", now, now + timedelta(seconds=61))
    assert usage.due("naive", now.replace(tzinfo=None) - timedelta(minutes=5), now)  # SQLite's naive values


def test_revoked_key_is_refused_once_the_auth_cache_expires(settings):
    from app.db import session_scope
    from app.tables import ApiKey

    register_image_model()
    key = make_key("acme", "read")
    headers = {"Authorization": f"Bearer {key}"}
    with _app_client(settings, auth_cache_ttl_s=0.5) as client:
        assert client.post("/v1/models/colors/predict", headers=headers, json=RED).status_code == 200
        with session_scope() as session:
            session.execute(update(ApiKey).values(revoked_at=datetime.now(UTC)))
        assert client.get("/v1/models", headers=headers).status_code == 401  # other routes: looked up each time
        time.sleep(0.6)
        refused = client.post("/v1/models/colors/predict", headers=headers, json=RED)
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_cached_resolution_follows_alias_moves_at_once(settings, admin_headers):
    register_image_model()
    register_image_model()
    with _app_client(settings, serving_resolve_ttl_s=3600) as client:

        def served(path: str = "/v1/models/colors/predict") -> tuple[int, str | None]:
            body = client.post(path, headers=admin_headers, json=RED).json()
            return body["version"], body["alias"]

        assert served() == (2, None)
        client.put("/v1/models/colors/aliases/production", headers=admin_headers, json={"version": 1})
        assert served() == (1, "production")
        assert served("/v1/models/colors/aliases/production/predict") == (1, "production")
        client.put("/v1/models/colors/aliases/production", headers=admin_headers, json={"version": 2})
        assert served() == (2, "production")
        assert served("/v1/models/colors/aliases/production/predict") == (2, "production")
        client.post("/v1/models/colors/aliases/production/rollback", headers=admin_headers)
        assert served() == (1, "production")
        client.delete("/v1/models/colors/aliases/production", headers=admin_headers)
        assert served() == (2, None)
        assert served("/v1/models/colors/versions/2/predict") == (2, None)
        client.delete("/v1/models/colors/versions/2", headers=admin_headers)
        assert served() == (1, None)
        gone = client.post("/v1/models/colors/versions/2/predict", headers=admin_headers, json=RED)
        assert gone.status_code == 404


def test_ref_cache_expires_and_drops_answers_read_before_an_invalidation():
    from app.serving.resolution import RefCache
    from app.serving.runtime import ModelRef

    now = [0.0]
    cache = RefCache(5, clock=lambda: now[0])
    ref = ModelRef("v1", "acme", "m", 1, "image_classification", ("a",), {}, {})
    key = ("p", "m", None, None)
    cache.put(key, (ref, None), cache.generation("p", "m"))
    assert cache.get(key) == (ref, None)
    now[0] = 5.1
    assert cache.get(key) is None
    stale_generation = cache.generation("p", "m")
    cache.invalidate("p", "m")  # an alias moved while that lookup was running
    cache.put(key, (ref, None), stale_generation)
    assert cache.get(key) is None
    assert RefCache(0).get(key) is None


def test_batcher_waits_under_load_but_never_for_a_lone_request():
    from app.serving.batching import DynamicBatcher

    sizes: list[int] = []
    release = threading.Event()

    def run(batch):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        if len(sizes) == 1:
            release.wait(10)
        return np.zeros((len(batch), 1), np.float32)

    batcher = DynamicBatcher(run, max_batch_size=8, max_wait_ms=0, busy_wait_ms=1000, name="t")
    try:
        started = time.monotonic()
        x = np.zeros((1, 2), np.uint8)
        first = batcher.submit(x)
        time.sleep(0.1)  # the first batch is running: what follows queues up
        queued = [batcher.submit(x) for _ in range(2)]
        release.set()
        time.sleep(0.3)  # inside the busy wait: joins the queued two
        late = batcher.submit(x)
        for f in [first, *queued, late]:
            f.result(10)
        assert sizes == [1, 3]
        assert time.monotonic() - started < 5
        lone_started = time.monotonic()
        batcher.submit(x).result(10)  # idle model, empty queue: no wait
        assert time.monotonic() - lone_started < 1.0 and sizes[-1] == 1
    finally:
        release.set()
        batcher.close()
