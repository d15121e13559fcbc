"""The Celery client the API uses to enqueue work by task name (it never imports ``worker``).

``celery_config`` is shared with the worker so both sides agree on broker, queues and serializers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from celery import Celery

from app.config import Settings, get_settings

RUN_JOB_TASK = "transferlab.run_job"
BATCH_PREDICT_TASK = "transferlab.batch_predict"
VALIDATE_DATASET_TASK = "transferlab.validate_dataset"
DELIVER_WEBHOOK_TASK = "transferlab.deliver_webhook"
SWEEP_TASK = "transferlab.sweep"
#: Redis keeps one list per priority step and pops lower steps first; the API's priority is 0-9, higher first.
PRIORITY_STEPS = list(range(10))
REDIS_PRIORITY_SEP = ":"


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
        "beat_schedule": {
            "transferlab-sweep": {
                "task": SWEEP_TASK,
                "schedule": settings.sweep_interval_s,
                "options": {"queue": settings.io_queue, "expires": settings.sweep_interval_s},
            }
        },
    }
    if settings.is_embedded_broker:
        folder = settings.broker_folder
        config["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    else:
        # Redis: redeliver an unacked job after this long (longer than any job is allowed to run).
        # Priorities: one list per step, served in step order (see ``redis_priority``).
        config["broker_transport_options"] = {
            "visibility_timeout": 6 * 3600,
            "priority_steps": PRIORITY_STEPS,
            "sep": REDIS_PRIORITY_SEP,
            "queue_order_strategy": "priority",
        }
    return config


def ensure_broker_dirs(settings: Settings) -> None:
    if settings.is_embedded_broker:
        for sub in ("queue", "processed", "control"):
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


def redis_priority(priority: int) -> int:
    """The API's priority (0-9, 9 most urgent) as a Redis priority step (0 is served first)."""
    return max(PRIORITY_STEPS) - min(max(priority, 0), max(PRIORITY_STEPS))


@dataclass(frozen=True)
class JobMessage:
    """One ``run_job`` message: the job, its queue and priority, and the message id the job row records."""

    job_id: str
    queue: str
    priority: int | None
    task_id: str
    countdown: float | None = None


def enqueue_jobs(settings: Settings, messages: list[JobMessage]) -> None:
    """Send ``run_job`` messages; several go to Redis in one pipelined round trip (kombu's publish batch)."""
    app = celery_client(settings)
    with app.producer_or_acquire() as producer, producer.batch():
        for message in messages:
            app.send_task(
                RUN_JOB_TASK,
                args=[message.job_id],
                queue=message.queue or settings.default_queue,
                priority=None
                if message.priority is None or settings.is_embedded_broker
                else redis_priority(message.priority),
                task_id=message.task_id,
                countdown=message.countdown,
                producer=producer,
                argsrepr=f"[{message.job_id!r}]",
                kwargsrepr="{}",
            )


def enqueue_job(
    settings: Settings,
    job_id: str,
    queue: str | None = None,
    priority: int | None = None,
    *,
    task_id: str | None = None,
    countdown: float | None = None,
) -> None:
    message = JobMessage(job_id, queue or settings.default_queue, priority, task_id or uuid.uuid4().hex, countdown)
    enqueue_jobs(settings, [message])


def enqueue_batch_prediction(settings: Settings, batch_id: str) -> None:
    celery_client(settings).send_task(BATCH_PREDICT_TASK, args=[batch_id], queue=settings.io_queue)


def enqueue_validation(settings: Settings, dataset_id: str) -> None:
    """Dataset validation goes to the io queue, never behind a training job on a training-only worker."""
    celery_client(settings).send_task(VALIDATE_DATASET_TASK, args=[dataset_id], queue=settings.resolved_io_queue)


def send_webhook_delivery(settings: Settings, delivery_id: str, countdown: float | None = None) -> None:
    celery_client(settings).send_task(
        DELIVER_WEBHOOK_TASK, args=[delivery_id], queue=settings.io_queue, countdown=countdown
    )


def _message_id(raw: bytes | str) -> str | None:
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if isinstance(message, list) and message:  # Redis "unacked" entries: [message, exchange, routing key]
        message = message[0]
    headers = message.get("headers") if isinstance(message, dict) else None
    task_id = headers.get("id") if isinstance(headers, dict) else None
    return task_id if isinstance(task_id, str) else None


def messages_in_broker(settings: Settings, queues: list[str]) -> set[str] | None:
    """Ids of the task messages the broker holds for ``queues`` (waiting, or taken but not acknowledged).

    None when the broker cannot be inspected; the sweep then falls back to resending after a delay.
    """
    ids: set[str] = set()
    try:
        if settings.is_embedded_broker:
            folder = settings.broker_folder / "queue"
            for path in folder.iterdir():
                if path.suffix == ".msg":
                    ids.add(_message_id(path.read_bytes()) or "")
            return ids
        import redis

        client = redis.Redis.from_url(settings.resolved_broker_url)
        try:
            for queue in queues:
                for step in PRIORITY_STEPS:
                    key = queue if step == 0 else f"{queue}{REDIS_PRIORITY_SEP}{step}"
                    ids.update(filter(None, (_message_id(raw) for raw in client.lrange(key, 0, -1))))
            ids.update(filter(None, (_message_id(raw) for raw in client.hvals("unacked"))))
        finally:
            client.close()
        return ids
    except Exception:  # noqa: BLE001 - inspection is best effort
        return None


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
