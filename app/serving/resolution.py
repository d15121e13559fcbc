"""Which model version a prediction request addresses, resolved once and kept briefly.

A prediction names a model and a version, an alias, or neither (``production``, else the latest). Looking
that up costs a few queries per request; the ``RefCache`` keeps each answer for ``ttl_s`` seconds
(``TL_SERVING_RESOLVE_TTL_S``). Changes made through this API process (alias set, rollback or delete,
version or model delete, serving overrides) drop the model's entries as soon as they commit. Changes made
elsewhere — a new version registered by a worker, an alias moved through another API replica — are seen
within ``ttl_s``. ``ttl_s=0`` turns the cache off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from app.auth import Principal
from app.services import registry
from app.serving.runtime import ModelRef

Resolved = tuple[ModelRef, str | None]
CacheKey = tuple[str, str, Any, str | None]


class RefCache:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = max(0.0, float(ttl_s))
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[CacheKey, tuple[float, Resolved]] = {}
        self._generations: dict[tuple[str, str], int] = {}

    def generation(self, project_id: str, name: str) -> int:
        with self._lock:
            return self._generations.get((project_id, name), 0)

    def get(self, key: CacheKey) -> Resolved | None:
        if not self.ttl_s:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() >= entry[0]:
                del self._entries[key]
                return None
            return entry[1]

    def put(self, key: CacheKey, value: Resolved, generation: int) -> None:
        """Keep ``value`` unless the model was invalidated since ``generation`` was read (a stale answer)."""
        if not self.ttl_s:
            return
        with self._lock:
            if self._generations.get((key[0], key[1]), 0) == generation:
                self._entries[key] = (self._clock() + self.ttl_s, value)

    def invalidate(self, project_id: str, name: str) -> None:
        """Forget every resolution of one model (call it after the change commits)."""
        with self._lock:
            self._generations[(project_id, name)] = self._generations.get((project_id, name), 0) + 1
            for key in [k for k in self._entries if k[0] == project_id and k[1] == name]:
                del self._entries[key]


def resolve_ref(
    cache: RefCache,
    session: Session,
    principal: Principal,
    name: str,
    *,
    version: int | str | None = None,
    alias: str | None = None,
) -> Resolved:
    """The ``ModelRef`` to serve and the alias it was reached by, from the cache or the registry."""
    key: CacheKey = (principal.project_id, name, version, alias)
    hit = cache.get(key)
    if hit is not None:
        return hit
    generation = cache.generation(principal.project_id, name)
    row, via = registry.resolve(session, principal, name, version=version, alias=alias)
    resolved = (registry.to_ref(row, principal.project_name), via)
    cache.put(key, resolved, generation)
    return resolved
