"""Running one job: claim it, call the training engine with callbacks, record the outcome.

The engine (``worker.training``) knows nothing of the database; this module is the bridge.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

from sqlalchemy import update

from app.config import Settings, get_settings
from app.db import session_scope
from app.services.job_states import is_terminal, transition
from app.services.registry import next_version, register_version
from app.storage import ArtifactStore, get_store
from app.tables import Dataset, Job, JobEvent, utcnow

log = logging.getLogger("transferlab.worker")
PROGRESS_EVERY_S = 1.0
CANCEL_POLL_S = 0.5


class JobLogAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {})["job_id"] = self.extra["job_id"] if self.extra else None
        return msg, kwargs


def _claim(job_id: str, worker_name: str) -> dict[str, Any] | None:
    """Mark the job running; None when it must not run (unknown, terminal, cancelled)."""
    with session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or is_terminal(job.state):
            return None
        if job.state == "cancelling" or job.cancel_requested_at is not None:
            transition(job, "cancelled")
            return None
        if job.attempts >= job.max_attempts:
            if job.state == "queued":
                transition(job, "running")
            transition(job, "failed")
            job.error = f"gave up after {job.attempts} attempts"
            job.error_kind = "system"
            return None
        if job.state == "queued":
            transition(job, "running")
        job.attempts += 1
        job.worker = worker_name
        job.heartbeat_at = utcnow()
        dataset = session.get(Dataset, job.dataset_id)
        assert dataset is not None
        session.add(JobEvent(job_id=job.id, kind="state", data={"state": "running", "attempt": job.attempts}))
        return {
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
        }


class DbCallbacks:
    """Engine callbacks that write progress and epoch events, and poll for cancellation."""

    def __init__(self, job_id: str, logger: logging.LoggerAdapter) -> None:  # type: ignore[type-arg]
        self.job_id = job_id
        self.log_ = logger
        self._last_progress = 0.0
        self._last_cancel_poll = 0.0
        self._cancel = False

    def on_progress(self, progress: Any) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = now
        with session_scope() as session:
            session.execute(
                update(Job)
                .where(Job.id == self.job_id, Job.state.in_(("running", "cancelling")))
                .values(progress=progress.to_dict(), heartbeat_at=utcnow())
            )

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        with session_scope() as session:
            session.add(JobEvent(job_id=self.job_id, kind="epoch", data={"epoch": epoch, **metrics}))
            session.execute(update(Job).where(Job.id == self.job_id).values(heartbeat_at=utcnow()))
        self.log_.info("epoch %d: %s", epoch, metrics)

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if not self._cancel and now - self._last_cancel_poll >= CANCEL_POLL_S:
            self._last_cancel_poll = now
            with session_scope() as session:
                job = session.get(Job, self.job_id)
                self._cancel = job is None or job.state == "cancelling" or job.cancel_requested_at is not None
        return self._cancel

    def log(self, message: str) -> None:
        self.log_.info("%s", message)


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
        artifacts[fmt] = {"key": key, "size_bytes": info.size_bytes, "parity": info.parity}
    return artifacts


def _finish(job_id: str, state: str, error: str | None = None, error_kind: str | None = None) -> None:
    with session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or is_terminal(job.state):
            return
        if state == "cancelled" and job.state == "running":
            transition(job, "cancelling")
        transition(job, state)
        job.error, job.error_kind = error, error_kind
        session.add(JobEvent(job_id=job.id, kind="state", data={"state": state, "error": error}))


def _record_success(job_id: str, store: ArtifactStore, result: Any) -> int:
    with session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        assert job is not None
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
        job.result = {"notes": result.notes, "history": result.history, "resumed_from_epoch": result.resumed_from_epoch}
        job.progress = {**(job.progress or {}), "percent": 100.0, "eta_seconds": 0}
        transition(job, "succeeded")
        session.add(JobEvent(job_id=job.id, kind="state", data={"state": "succeeded", "version": version}))
        return version


def run_job_by_id(job_id: str, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    logger = JobLogAdapter(log, {"job_id": job_id})
    claimed = _claim(job_id, socket.gethostname())
    if claimed is None:
        logger.info("job is not runnable; message dropped")
        return "skipped"
    logger.info("job started")
    store = get_store(settings)
    workdir = settings.resolved_artifact_dir / "jobs" / job_id / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    from worker.training.engine import train
    from worker.training.errors import InvalidSpecError, TrainingCancelled
    from worker.training.spec import JobSpec

    try:
        spec = JobSpec.model_validate(claimed["spec"])
        data = _data_source(store, claimed["dataset"], claimed["splits"])
        result = train(spec, data, DbCallbacks(job_id, logger), workdir)
    except TrainingCancelled:
        _finish(job_id, "cancelled")
        logger.info("job cancelled")
        return "cancelled"
    except InvalidSpecError as exc:
        _finish(job_id, "failed", str(exc), "user")
        logger.warning("job failed (user input): %s", exc)
        return "failed"
    except Exception as exc:  # noqa: BLE001 - recorded as a system failure
        logger.exception("job failed")
        _finish(job_id, "failed", f"{exc.__class__.__name__}: {exc}", "system")
        return "failed"
    version = _record_success(job_id, store, result)
    logger.info("job succeeded: model version %d", version)
    return "succeeded"
