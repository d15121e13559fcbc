"""Group commit for ``POST /v1/jobs``: submissions that arrive while a group is being committed are
committed together as the next group.

A submission costs a few milliseconds of Python, most of it per transaction and per broker send rather than
per job: the key lookup, the connection checkout, BEGIN and COMMIT, one INSERT per table, a Redis round trip.
Under load the submitter takes every submission waiting, checks each on its own (key, dataset, spec,
Idempotency-Key; one refused submission never affects another), creates the accepted jobs with one
statement per table in one transaction and sends their messages in one pipelined Redis round trip after the
commit. Nothing waits for company: a submission that finds the submitter idle is committed at once, alone.
Every caller hears back only after its group has committed (and its message has been handed to the broker).

If the group's transaction fails for any reason but an unreachable or busy database (a constraint: the same
Idempotency-Key committed concurrently by another server; a value the database refuses), each submission is
committed again on its own, so only the one concerned sees the replay or the error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.auth import KeyUsage, Principal, check_key
from app.config import Settings
from app.db import unit_of_work
from app.errors import ServiceError
from app.schemas.jobs import JobCreate, JobOut
from app.services.jobs import Submission, submit_jobs

#: What a caller gets: the job and whether it was created now (False: an idempotent replay), or an error.
Result = tuple[JobOut, bool] | BaseException


@dataclass(frozen=True)
class JobRequest:
    """One ``POST /v1/jobs`` as received: the caller's API key, the body and its ``Idempotency-Key``."""

    api_key: str
    body: JobCreate
    idempotency_key: str | None = None


@dataclass
class _Waiting:
    request: JobRequest
    future: asyncio.Future[tuple[JobOut, bool]] = field(repr=False)


class JobSubmitter:
    """Commits job submissions in groups; one group at a time, at most ``max_group`` submissions each."""

    def __init__(
        self, sessions: sessionmaker[Session], settings: Settings, usage: KeyUsage, max_group: int = 64
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.usage = usage
        self.max_group = max(1, max_group)
        self._waiting: list[_Waiting] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, api_key: str, body: JobCreate, idempotency_key: str | None) -> tuple[JobOut, bool]:
        """Authenticate (scope ``write``), validate and create the job; returns once it is committed."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(JobRequest(api_key, body, idempotency_key), loop.create_future())
        self._waiting.append(waiting)
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await waiting.future

    async def _drain(self) -> None:
        group: list[_Waiting] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting[: self.max_group], self._waiting[self.max_group :]
                try:
                    results: list[Result] = await run_in_threadpool(self.commit, [waiting.request for waiting in group])
                except Exception as exc:  # the whole group failed (say, the database is down): all hear of it
                    results = [exc] * len(group)
                for waiting, result in zip(group, results, strict=True):
                    if waiting.future.done():  # the caller went away
                        continue
                    if isinstance(result, BaseException):
                        waiting.future.set_exception(result)
                    else:
                        waiting.future.set_result(result)
                group = []
        except BaseException:  # cancelled (shutdown): nobody may wait forever
            for waiting in group + self._waiting:
                if not waiting.future.done():
                    waiting.future.cancel()
            self._waiting = []
            raise
        finally:
            self._drainer = None

    def commit(self, group: list[JobRequest]) -> list[Result]:
        """One transaction for the group (a worker thread); one result per submission, in order."""
        try:
            with unit_of_work(self.sessions) as session:
                return self._results(session, group)
        except (OperationalError, PoolTimeoutError):
            raise  # the database is unreachable or busy: every submission of the group hears of it
        except IntegrityError:
            if len(group) > 1:
                return [self._alone(request) for request in group]
            if group[0].idempotency_key is None:
                raise
            # The same key was committed concurrently by another request: now it is found and replayed.
            with unit_of_work(self.sessions) as session:
                return self._results(session, group)
        except Exception:
            if len(group) > 1:  # whichever submission caused it fails alone; the others are committed
                return [self._alone(request) for request in group]
            raise

    def _alone(self, request: JobRequest) -> Result:
        try:
            return self.commit([request])[0]
        except Exception as exc:  # this submission's own failure, reported to its caller alone
            return exc

    def _results(self, session: Session, group: list[JobRequest]) -> list[Result]:
        principals: dict[str, Principal | ServiceError] = {}
        for api_key in {request.api_key for request in group}:
            try:
                principals[api_key] = check_key(session, api_key, "write", self.usage, self.sessions)
            except ServiceError as exc:
                principals[api_key] = exc
        submissions = [
            Submission(principal, request.body, request.idempotency_key)
            for request in group
            if isinstance(principal := principals[request.api_key], Principal)
        ]
        outcomes = iter(submit_jobs(session, self.settings, submissions))
        results: list[Result] = []
        for request in group:
            principal = principals[request.api_key]
            outcome = principal if isinstance(principal, ServiceError) else next(outcomes)
            results.append(
                outcome if isinstance(outcome, ServiceError) else (JobOut.model_validate(outcome[0]), outcome[1])
            )
        return results
