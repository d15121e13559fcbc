"""Dynamic batching: concurrent requests for one model are run together in one call.

One thread per loaded model takes the requests queued for it. It runs whatever has queued up
(never more than ``max_batch_size`` items), and with ``max_wait_ms`` > 0 it waits that long after
the first request for more to arrive. With ``max_wait_ms`` 0 it waits only under load: when more
requests are already queued behind the first, it waits up to ``busy_wait_ms`` for further ones (the
clients whose answers the last batch just sent are usually about to ask again), so an idle model
still answers a lone request at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

Batch = np.ndarray | list[str]


class BatcherClosed(RuntimeError):
    pass


@dataclass
class _Request:
    items: Batch
    future: Future[np.ndarray] = field(default_factory=Future)

    def __len__(self) -> int:
        return len(self.items)


def _join(parts: Sequence[Batch]) -> Batch:
    if isinstance(parts[0], np.ndarray):
        return parts[0] if len(parts) == 1 else np.concatenate(parts)  # type: ignore[arg-type]
    joined: list[str] = []
    for part in parts:
        joined.extend(part)
    return joined


class DynamicBatcher:
    def __init__(
        self,
        run: Callable[[Batch], np.ndarray],
        *,
        max_batch_size: int,
        max_wait_ms: float,
        name: str,
        on_batch: Callable[[int], None] | None = None,
        busy_wait_ms: float = 0.0,
    ) -> None:
        self.run = run
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_wait_s = max(0.0, float(max_wait_ms)) / 1000
        self.busy_wait_s = max(0.0, float(busy_wait_ms)) / 1000
        self.on_batch = on_batch
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._stopped = False
        self._carry: _Request | None = None
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, items: Batch) -> Future[np.ndarray]:
        """Queue ``items``; the future holds their outputs. Raises ``BatcherClosed`` once closed."""
        request = _Request(items)
        if len(request) == 0:
            raise ValueError("an empty batch cannot be submitted")
        with self._lock:
            if self._stopped:
                raise BatcherClosed("the model was unloaded")
            self._queue.put(request)
        return request.future

    def close(self) -> None:
        """Stop after answering every request already queued."""
        self._closed.set()
        self._queue.put(None)  # wakes the thread

    def _next(self, timeout: float | None) -> _Request | None:
        if self._carry is not None:
            carried, self._carry = self._carry, None
            return carried
        try:
            request = self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        return request

    def _collect(self) -> list[_Request]:
        first = self._next(None)
        if first is None:  # the wake-up from close()
            return []
        batch, size = [first], len(first)
        wait = self.max_wait_s
        pending = self._carry is not None or not self._queue.empty()
        if self.busy_wait_s > wait and size < self.max_batch_size and pending:
            wait = self.busy_wait_s  # under load: let the batch fill up a little more
        deadline = time.monotonic() + wait
        while size < self.max_batch_size:
            remaining = deadline - time.monotonic()
            request = self._next(remaining if remaining > 0 else 0)
            if request is None:
                break
            if size + len(request) > self.max_batch_size:
                self._carry = request  # it starts the next batch
                break
            batch.append(request)
            size += len(request)
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            if batch:
                self._run(batch)
            if self._closed.is_set():
                with self._lock:
                    if self._carry is None and self._queue.empty():
                        self._stopped = True
                        return

    def _run(self, batch: list[_Request]) -> None:
        try:
            inputs = _join([r.items for r in batch])
            step = self.max_batch_size
            outputs = [self.run(inputs[i : i + step]) for i in range(0, len(inputs), step)]
            result = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
            if self.on_batch is not None:
                self.on_batch(len(inputs))
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request
            for request in batch:
                request.future.set_exception(exc)
            return
        offset = 0
        for request in batch:
            request.future.set_result(result[offset : offset + len(request)])
            offset += len(request)
