"""The API-side sweep that re-sends dataset validations whose message may have been lost.

It runs at start-up (an API that died between commit and send loses nothing) and then every
``TL_SWEEP_INTERVAL_S`` seconds. Several API processes may run it at once: rows are locked with
SKIP LOCKED and workers claim datasets atomically, so a duplicate send is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.services.datasets import requeue_stale_validations

log = logging.getLogger("transferlab.sweep")


def sweep_once(make_session: sessionmaker[Session], settings: Settings) -> list[str]:
    with make_session() as session, session.begin():
        requeued = requeue_stale_validations(session, settings)
    if requeued:
        log.info("re-sent %d dataset validation(s): %s", len(requeued), ", ".join(requeued))
    return requeued


async def _loop(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    while True:
        try:
            await run_in_threadpool(sweep_once, app.state.sessionmaker, settings)
        except Exception:  # a database hiccup must not stop the loop
            log.exception("dataset validation sweep failed")
        await asyncio.sleep(settings.sweep_interval_s)


@contextlib.asynccontextmanager
async def sweep_lifespan(app: FastAPI) -> AsyncIterator[None]:
    if app.state.settings.sweep_interval_s <= 0:
        yield
        return
    task = asyncio.create_task(_loop(app))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
