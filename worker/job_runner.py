"""Running one job: claim it, call the training engine with callbacks, record the outcome.

The engine (``worker.training``) knows nothing of the database; this module is the bridge. Each message
carries the job id; the message's own id decides what it may do (see ``claim``): a queued job is claimed by
any message for it; a running job only by a redelivery of the message that claimed it (its worker died:
the job resumes from the engine's last epoch checkpoint in the same work directory); anything else is a
duplicate and is dropped, as is any message for a job that has ended.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from app.config import Settings, get_settings
from app.db import session_scope
from app.keras_layers import base_layer_names, record_layer_names
from app.services.job_states import is_terminal, transition
from app.services.jobs import send_job
from app.services.registry import next_version, register_version
from app.services.sweep import job_dir, remove_job_dir
from app.storage import ArtifactStore, get_store
from app.tables import Dataset, Job, JobEvent, ModelVersion, Project, utcnow

log = logging.getLogger("transferlab.worker")
PROGRESS_EVERY_S = 1.0
CANCEL_POLL_S = 0.5
ACTIVE = ("running", "cancelling")


class JobLogAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {})["job_id"] = self.extra["job_id"] if self.extra else None
        return msg, kwargs


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def job_log(job_id: str, message: str, level: int = logging.INFO) -> None:
    """A line of the job's own log (``GET /v1/jobs/{id}/logs``), also written to the worker's log."""
    JobLogAdapter(log, {"job_id": job_id}).log(level, "%s", message)
    with session_scope() as session:
        session.add(JobEvent(job_id=job_id, kind="log", data={"message": message}))


@dataclass
class Claim:
    action: str  # "run" | "drop" | "defer"
    reason: str = ""
    attempt: int = 0
    resumed: bool = False
    job: dict[str, Any] = field(default_factory=dict)


def _running_in_project(session: Any, project_id: str, job_id: str) -> int:
    # Lock the project row so that two workers claiming jobs of one project count one after the other.
    session.execute(select(Project.id).where(Project.id == project_id).with_for_update())
    return int(
        session.scalar(
            select(func.count()).where(Job.project_id == project_id, Job.state.in_(ACTIVE), Job.id != job_id)
        )
        or 0
    )


def claim(job_id: str, task_id: str | None, worker: str, settings: Settings) -> Claim:
    """Decide what this message does with the job, and mark the job running when it runs."""
    with session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            return Claim("drop", "unknown job")
        if is_terminal(job.state):
            return Claim("drop", f"job is already {job.state}")
        redelivery = job.state in ACTIVE and task_id is not None and job.task_id == task_id
        if job.state in ACTIVE and not redelivery:
            return Claim("drop", f"job is {job.state} under another message; duplicate dropped")
        if job.state == "cancelling":
            transition(job, "cancelled", reason="cancelled while its worker was lost")
            return Claim("drop", "cancelled")
        if job.state == "queued" and settings.max_running_per_project:
            running = _running_in_project(session, job.project_id, job.id)
            if running >= settings.max_running_per_project:
                send_job(session, settings, job, countdown=settings.limit_wait_s)
                return Claim("defer", f"project has {running} jobs running (limit {settings.max_running_per_project})")
        if job.attempts >= job.max_attempts:
            job.error = f"gave up after {job.attempts} of {job.max_attempts} attempts (the worker was lost each time)"
            job.error_kind = "system"
            if job.state == "queued":
                transition(job, "running")
            transition(job, "failed", error=job.error, error_kind="system")
            return Claim("drop", job.error)
        job.attempts += 1
        job.worker = worker
        job.heartbeat_at = utcnow()
        job.task_id = task_id or job.task_id
        if job.state == "queued":
            transition(job, "running", attempt=job.attempts, worker=worker)
        dataset = session.get(Dataset, job.dataset_id)
        assert dataset is not None
        return Claim(
            "run",
            attempt=job.attempts,
            resumed=redelivery,
            job={
                "spec": dict(job.spec),
                "project_id": job.project_id,
                "dataset": {
                    "task": dataset.task,
                    "storage_key": dataset.storage_key,
                    "format": dataset.format,
                    "text_column": dataset.text_column,
                    "label_column": dataset.label_column,
                },
                "splits": job.splits,
                "task_id": job.task_id,
            },
        )


class Ownership:
    """Whether this worker still owns the job (the sweep may have given it to another after a stall)."""

    def __init__(self, job_id: str, task_id: str | None) -> None:
        self.job_id = job_id
        self.task_id = task_id
        self.lost = False

    def where(self) -> list[Any]:
        clauses = [Job.id == self.job_id, Job.state.in_(ACTIVE)]
        if self.task_id is not None:
            clauses.append(Job.task_id == self.task_id)
        return clauses

    def touch(self, **values: Any) -> bool:
        """Update the job if still owned (always refreshing the heartbeat); False once it is not."""
        with session_scope() as session:
            result = session.execute(update(Job).where(*self.where()).values(heartbeat_at=utcnow(), **values))
            owned = bool(getattr(result, "rowcount", 1))
        if not owned:
            self.lost = True
        return owned


class Heartbeat(threading.Thread):
    """Refreshes the job's heartbeat while the engine works, also through phases that report no progress."""

    def __init__(self, ownership: Ownership, interval: float) -> None:
        super().__init__(name=f"heartbeat-{ownership.job_id}", daemon=True)
        self.ownership = ownership
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                if not self.ownership.touch():
                    return
            except Exception:  # noqa: BLE001 - a missed beat is retried at the next interval
                log.exception("heartbeat failed", extra={"job_id": self.ownership.job_id})

    def stop(self) -> None:
        self.stopped.set()


class DbCallbacks:
    """Engine callbacks that write progress, epoch events and log lines, and poll for cancellation."""

    def __init__(self, job_id: str, ownership: Ownership) -> None:
        self.job_id = job_id
        self.ownership = ownership
        self._last_progress = 0.0
        self._last_cancel_poll = 0.0
        self._cancel = False

    def on_progress(self, progress: Any) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = now
        self.ownership.touch(progress=progress.to_dict())

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        with session_scope() as session:
            session.add(JobEvent(job_id=self.job_id, kind="epoch", data={"epoch": epoch, **metrics}))
        self.ownership.touch()

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if not self._cancel and now - self._last_cancel_poll >= CANCEL_POLL_S:
            self._last_cancel_poll = now
            with session_scope() as session:
                state = session.scalar(select(Job.state).where(Job.id == self.job_id))
            self._cancel = state != "running" or self.ownership.lost
        return self._cancel

    def log(self, message: str) -> None:
        job_log(self.job_id, message)


def _resolve_base(spec: Any, store: ArtifactStore, project_id: str) -> Any:
    """Point an uploaded or earlier-model base at its local ``.keras`` file (the API never takes paths)."""
    from worker.training.errors import InvalidSpecError

    base = spec.base
    if base.kind == "keras_file" and base.upload_id:
        from app.services.base_uploads import upload_key

        path = store.local_path(upload_key(project_id, base.upload_id))
        return spec.model_copy(update={"base": base.model_copy(update={"path": str(path)})})
    if base.kind == "model_version" and base.model_version_id and not base.path:
        with session_scope() as session:
            version = session.get(ModelVersion, base.model_version_id)
            if version is None or version.project_id != project_id or "keras" not in version.artifacts:
                raise InvalidSpecError(f"base model version {base.model_version_id} is gone or has no .keras file")
            key, labels = version.artifacts["keras"]["key"], list(version.labels)
        path = store.local_path(key)
        return spec.model_copy(update={"base": base.model_copy(update={"path": str(path), "labels": labels})})
    return spec


def _data_source(store: ArtifactStore, dataset: dict[str, Any], splits: dict[str, Any] | None) -> Any:
    from worker.training.data import DataSource

    root = store.local_path(dataset["storage_key"])
    if dataset["task"] == "text_classification":
        files = sorted(p for p in Path(root).iterdir() if p.name.startswith("data."))
        return DataSource(
            kind="text_file",
            root=files[0],
            text_column=dataset["text_column"] or "text",
            label_column=dataset["label_column"] or "label",
            splits=splits,
        )
    return DataSource(kind="image_folders", root=Path(root), splits=splits)


def _store_artifacts(store: ArtifactStore, prefix: str, result: Any) -> dict[str, Any]:
    artifacts: dict[str, Any] = {}
    for fmt, info in result.artifacts.items():
        path = Path(info.path)
        key = f"{prefix}/{path.name}"
        if path.is_dir():
            store.put_tree(key, path)
        else:
            store.put_file(key, path)
        if fmt == "keras":  # for checking unfreeze_from_layer when a later job starts from this version
            record_layer_names(store, key, base_layer_names(path))
        artifacts[fmt] = {"key": key, "size_bytes": info.size_bytes, "parity": info.parity}
    return artifacts


def _locked_if_owned(session: Any, ownership: Ownership) -> Job | None:
    job = session.get(Job, ownership.job_id, with_for_update=True)
    if job is None or is_terminal(job.state) or (ownership.task_id and job.task_id != ownership.task_id):
        return None
    return job


def _finish(ownership: Ownership, state: str, error: str | None = None, error_kind: str | None = None) -> bool:
    with session_scope() as session:
        job = _locked_if_owned(session, ownership)
        if job is None:
            return False
        if state == "cancelled" and job.state == "running":
            transition(job, "cancelling")
        job.error, job.error_kind = error, error_kind
        transition(job, state, error=error, error_kind=error_kind)
        return True


def _record_success(ownership: Ownership, store: ArtifactStore, result: Any, engine_seconds: float) -> int | None:
    with session_scope() as session:
        job = _locked_if_owned(session, ownership)
        if job is None:
            return None
        if job.state == "cancelling":  # the user asked to stop; the last batch finished first
            transition(job, "cancelled", reason="cancel requested before the result was recorded")
            return None
        version = next_version(session, job.project_id, job.model_name)
        prefix = f"models/{job.project_id}/{job.model_name}/{version}"
        artifacts = _store_artifacts(store, prefix, result)
        metrics = dict(result.metrics)
        metrics.update(
            trainable_params=result.trainable_params,
            total_params=result.total_params,
            epochs_completed=result.epochs_completed,
        )
        if result.source_accuracy_before is not None:
            metrics["source_accuracy_before"] = result.source_accuracy_before
            metrics["target_accuracy_after"] = result.target_accuracy_after
        register_version(
            session,
            job,
            version=version,
            labels=list(result.labels),
            metrics=metrics,
            input_signature=dict(result.input_signature),
            artifacts=artifacts,
            task=job.spec.get("task", ""),
        )
        job.metrics = metrics
        job.splits = result.splits
        job.result = {
            "notes": result.notes,
            "history": result.history,
            "resumed_from_epoch": result.resumed_from_epoch,
            "engine_seconds": round(engine_seconds, 3),
        }
        job.progress = {**(job.progress or {}), "percent": 100.0, "eta_seconds": 0}
        transition(job, "succeeded", version=version)
        return version


def run_job_by_id(job_id: str, task_id: str | None = None, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    logger = JobLogAdapter(log, {"job_id": job_id})
    claimed = claim(job_id, task_id, worker_name(), settings)
    if claimed.action != "run":
        logger.info("message %s: %s (%s)", task_id, claimed.action, claimed.reason)
        return claimed.action
    job_log(
        job_id,
        f"attempt {claimed.attempt} started on {worker_name()}"
        + (" (redelivered after the worker was lost: resuming from the last checkpoint)" if claimed.resumed else ""),
    )
    ownership = Ownership(job_id, claimed.job["task_id"])
    heartbeat = Heartbeat(ownership, settings.heartbeat_interval_s)
    heartbeat.start()
    try:
        return _train_and_record(job_id, claimed, ownership, settings)
    finally:
        heartbeat.stop()


def _train_and_record(job_id: str, claimed: Claim, ownership: Ownership, settings: Settings) -> str:
    store = get_store(settings)
    workdir = job_dir(settings, job_id) / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    from worker.training.engine import train
    from worker.training.errors import InvalidSpecError, TrainingCancelled
    from worker.training.spec import JobSpec

    started = time.monotonic()
    try:
        spec = _resolve_base(JobSpec.model_validate(claimed.job["spec"]), store, claimed.job["project_id"])
        data = _data_source(store, claimed.job["dataset"], claimed.job["splits"])
        result = train(spec, data, DbCallbacks(job_id, ownership), workdir)
    except TrainingCancelled:
        if ownership.lost:
            log.warning("job was given to another worker; this attempt stops", extra={"job_id": job_id})
            return "abandoned"
        _finish(ownership, "cancelled")
        remove_job_dir(settings, job_id)
        job_log(job_id, "cancelled; partial artifacts removed")
        return "cancelled"
    except InvalidSpecError as exc:
        job_log(job_id, f"failed (invalid input): {exc}", logging.WARNING)
        _finish(ownership, "failed", str(exc), "user")
        remove_job_dir(settings, job_id)
        return "failed"
    except Exception as exc:  # noqa: BLE001 - recorded as a system failure
        log.exception("job failed", extra={"job_id": job_id})
        job_log(job_id, f"failed: {exc.__class__.__name__}: {exc}", logging.ERROR)
        _finish(ownership, "failed", f"{exc.__class__.__name__}: {exc}", "system")
        remove_job_dir(settings, job_id)
        return "failed"
    engine_seconds = time.monotonic() - started
    version = _record_success(ownership, store, result, engine_seconds)
    remove_job_dir(settings, job_id)
    if version is None:
        return "cancelled" if not ownership.lost else "abandoned"
    job_log(job_id, f"succeeded in {engine_seconds:.1f}s of training: model version {version}")
    return "succeeded"
