"""Inference for every protocol: resolve the artifact, load through the cache, run through the batcher.

The route layer turns a protocol's request into a batch (uint8 pixels or strings) and a ``ModelRef``;
``Predictor.predict`` returns the probabilities and records the per-model metrics.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.auth import Principal
from app.config import Settings
from app.errors import BadRequest, ServiceUnavailable
from app.serving import metrics
from app.serving.batching import Batch, BatcherClosed, DynamicBatcher
from app.serving.resolution import RefCache, Resolved, resolve_ref
from app.serving.runtime import (
    KERAS,
    SERVED_FORMATS,
    LoadedModel,
    ModelCache,
    ModelRef,
    estimate_footprint,
    load_backend,
    warm_up,
)
from app.storage import ArtifactStore


def check_backend(ref: ModelRef, backend: str | None) -> str:
    """The backend to serve ``ref`` with; a 400 naming the choices when it has no such artifact."""
    backend = backend or KERAS
    available = [f for f in SERVED_FORMATS if f in ref.artifacts]
    if backend not in available:
        raise BadRequest(
            f"backend {backend!r} is not available for {ref.name} version {ref.version}; "
            f"choose one of: {', '.join(available) or 'none'}"
        )
    if backend != KERAS and ref.is_text:
        raise BadRequest("TFLite backends serve image models only")
    return backend


class Predictor:
    def __init__(self, settings: Settings, store: ArtifactStore) -> None:
        self.settings = settings
        self.store = store
        self.cache = ModelCache(settings.model_cache_bytes)
        self.refs = RefCache(settings.serving_resolve_ttl_s)

    async def resolve(
        self,
        sessions: sessionmaker[Session],
        principal: Principal,
        name: str,
        *,
        version: int | str | None = None,
        alias: str | None = None,
    ) -> Resolved:
        """The version a prediction addresses: from the cache, else looked up in a short read-only session of
        its own, off the event loop. No database session or transaction is held during inference."""
        hit = self.refs.get((principal.project_id, name, version, alias))
        if hit is not None:
            return hit

        def work() -> Resolved:
            with sessions() as session:
                return resolve_ref(self.refs, session, principal, name, version=version, alias=alias)

        return await run_in_threadpool(work)

    def forget(self, project_id: str, name: str) -> None:
        """Drop the cached resolutions of one model: call after an alias, version or serving change commits."""
        self.refs.invalidate(project_id, name)

    def batching_for(self, ref: ModelRef) -> tuple[int, float]:
        """(max batch size, max wait ms): the version's serving config over the settings."""
        size = int(ref.serving.get("max_batch_size") or self.settings.serving_max_batch_size)
        wait = ref.serving.get("max_wait_ms")
        return size, float(self.settings.serving_max_wait_ms if wait is None else wait)

    def _load(self, ref: ModelRef, backend: str) -> LoadedModel:
        artifact = ref.artifacts[backend]
        path = self.store.local_path(artifact["key"])
        if not path.exists():
            raise ServiceUnavailable(f"the {backend} artifact of {ref.name} version {ref.version} is missing")
        model = load_backend(path, ref.signature, backend)
        warm_up(model, ref.signature)
        labels = {"project": ref.project, "model": ref.name, "version": str(ref.version), "backend": backend}
        size, wait = self.batching_for(ref)
        batch_hist = metrics.BATCH_SIZE.labels(**labels)
        batcher = DynamicBatcher(
            model,
            max_batch_size=size,
            max_wait_ms=wait,
            name=f"{ref.name}-{ref.version}-{backend}",
            on_batch=batch_hist.observe,
            busy_wait_ms=self.settings.serving_busy_wait_ms,
        )
        footprint = estimate_footprint(int(artifact.get("size_bytes") or 0), model.params)
        return LoadedModel(ref.cache_key(backend), ref, backend, model, footprint, batcher)

    def model(self, ref: ModelRef, backend: str) -> LoadedModel:
        return self.cache.get(ref.cache_key(backend), lambda: self._load(ref, backend))

    async def predict(self, ref: ModelRef, backend: str, batch: Batch, protocol: str) -> tuple[np.ndarray, float]:
        """Probabilities (N × labels) and the latency in milliseconds."""
        labels = {"project": ref.project, "model": ref.name, "version": str(ref.version), "backend": backend}
        started = time.perf_counter()
        outcome = "error"
        try:
            for attempt in range(2):
                loaded = self.cache.peek(ref.cache_key(backend))  # loaded already: no thread hop
                if loaded is None:
                    loaded = await run_in_threadpool(self.model, ref, backend)
                assert loaded.batcher is not None
                try:
                    future = loaded.batcher.submit(batch)
                    break
                except BatcherClosed:  # evicted between lookup and submit: load again
                    if attempt:
                        raise
            probs = await asyncio.wrap_future(future)
            outcome = "ok"
        finally:
            metrics.REQUESTS.labels(**labels, protocol=protocol, outcome=outcome).inc()
        elapsed = time.perf_counter() - started
        metrics.LATENCY.labels(**labels).observe(elapsed)
        metrics.ITEMS.labels(**labels).inc(len(batch))
        return probs, elapsed * 1000

    def evict_version(self, version_id: str) -> None:
        self.cache.evict(f"{version_id}:")

    def close(self) -> None:
        self.cache.close()


def as_list(probs: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in row] for row in probs]


def describe(ref: ModelRef) -> dict[str, Any]:
    return {"name": ref.name, "version": ref.version, "labels": list(ref.labels)}
