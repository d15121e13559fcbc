"""The Celery client the API uses to enqueue work by task name (it never imports ``worker``).

``celery_config`` is shared with the worker so both sides agree on broker, queues and serializers.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery

from app.config import Settings, get_settings

RUN_JOB_TASK = "transferlab.run_job"
BATCH_PREDICT_TASK = "transferlab.batch_predict"
VALIDATE_DATASET_TASK = "transferlab.validate_dataset"


def celery_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "broker_url": settings.resolved_broker_url,
        "task_default_queue": settings.default_queue,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": 1,
        "worker_concurrency": 1,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
    }
    if settings.is_embedded_broker:
        folder = settings.broker_folder
        config["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
        }
    else:
        # Redis: redeliver an unacked job after this long (longer than any job is allowed to run).
        config["broker_transport_options"] = {"visibility_timeout": 6 * 3600}
    return config


def ensure_broker_dirs(settings: Settings) -> None:
    if settings.is_embedded_broker:
        for sub in ("queue", "processed"):
            (settings.broker_folder / sub).mkdir(parents=True, exist_ok=True)


def make_celery(settings: Settings, name: str = "transferlab") -> Celery:
    ensure_broker_dirs(settings)
    app = Celery(name)
    app.conf.update(celery_config(settings))
    return app


@lru_cache(maxsize=4)
def _client_for(settings_json: str) -> Celery:
    return make_celery(Settings.model_validate_json(settings_json), name="transferlab-api")


def celery_client(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    return _client_for(settings.model_dump_json())


def enqueue_job(settings: Settings, job_id: str, queue: str | None = None, priority: int | None = None) -> None:
    celery_client(settings).send_task(
        RUN_JOB_TASK, args=[job_id], queue=queue or settings.default_queue, priority=priority
    )


def enqueue_batch_prediction(settings: Settings, batch_id: str) -> None:
    celery_client(settings).send_task(BATCH_PREDICT_TASK, args=[batch_id], queue=settings.io_queue)


def enqueue_validation(settings: Settings, dataset_id: str) -> None:
    """Dataset validation goes to the io queue, never behind a training job on a training-only worker."""
    celery_client(settings).send_task(VALIDATE_DATASET_TASK, args=[dataset_id], queue=settings.resolved_io_queue)


def broker_reachable(settings: Settings) -> str | None:
    """None when the broker answers, else a short reason."""
    if settings.is_embedded_broker:
        folder = settings.broker_folder / "queue"
        return None if folder.is_dir() else f"broker folder {folder} is missing"
    try:
        with celery_client(settings).connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"broker unreachable: {exc.__class__.__name__}: {exc}"
