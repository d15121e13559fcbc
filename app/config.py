"""Service settings, read from the environment with the ``TL_`` prefix.

The defaults are the *embedded mode*: an SQLite file and a filesystem Celery transport under
``TL_DATA_DIR`` (``./.tl-data``), served by a real Celery worker process. Production sets
``TL_DATABASE_URL`` (Postgres) and ``TL_BROKER_URL`` (Redis).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TL_", extra="ignore")

    data_dir: Path = Field(default=Path(".tl-data"), description="Root for embedded-mode state.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite under data_dir if unset.")
    broker_url: str | None = Field(default=None, description="Celery broker URL; filesystem transport if unset.")
    artifact_dir: Path | None = Field(
        default=None, description="Local artifact store root; data_dir/artifacts if unset."
    )
    default_queue: str = "transferlab"
    # I/O tasks (dataset validation, batch prediction, webhooks) have their own queue, so they never
    # wait behind a long training job on a worker that serves only the training queue.
    io_queue: str = Field(default="", description="Queue for I/O tasks; <default_queue>.io if unset.")
    max_upload_bytes: int = 2 * 1024**3
    max_uncompressed_bytes: int = 8 * 1024**3
    max_archive_members: int = 200_000
    max_compression_ratio: float = 200.0
    max_image_pixels: int = 64_000_000
    # Artifact store: a local directory (default) or S3-compatible object storage (AWS S3, MinIO, ...).
    artifact_store: Literal["local", "s3"] = "local"
    s3_bucket: str = "transferlab"
    s3_prefix: str = ""
    s3_endpoint_url: str | None = Field(default=None, description="e.g. http://minio:9000; AWS when unset.")
    s3_region: str | None = None
    s3_access_key_id: str | None = Field(default=None, description="Falls back to the usual AWS credential chain.")
    s3_secret_access_key: str | None = None
    validation_requeue_after_s: float = 600.0
    validation_stale_after_s: float = 1800.0
    validation_max_attempts: int = 3
    auto_migrate: bool = True
    log_level: str = "INFO"
    # Serving: the loaded-model cache's memory budget and the dynamic batcher's defaults.
    model_cache_bytes: int = Field(default=2 * 1024**3, description="Memory budget of the loaded-model cache.")
    serving_max_batch_size: int = Field(default=32, ge=1, description="Most items run together in one batch.")
    serving_max_wait_ms: float = Field(
        default=0.0, ge=0, description="How long a batch waits for more requests; 0 batches only what queued up."
    )
    serving_busy_wait_ms: float = Field(
        default=5.0,
        ge=0,
        description="With requests already queued behind a batch's first, how long it waits for more; "
        "a lone request never waits.",
    )
    serving_resolve_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a resolved model version/alias is reused by predictions; 0: never."
    )
    auth_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long the inference routes trust an API key checked before; 0: never."
    )
    api_key_touch_interval_s: float = Field(
        default=60.0, ge=0, description="An API key's last_used_at is written at most this often."
    )
    # Jobs: routing, limits, liveness and the sweep that repairs what a crash or a lost message left behind.
    gpu_queue: str = Field(default="", description="Queue of jobs needing a GPU; default_queue + '.gpu'.")
    default_device: str = Field(default="cpu", pattern="^(cpu|gpu)$", description="Device of a job that names none.")
    max_running_per_project: int = Field(
        default=4, ge=0, description="Jobs of one project running at once; 0: no limit."
    )
    limit_wait_s: float = Field(default=15.0, gt=0, description="Countdown before a job over the limit is tried again.")
    job_max_attempts: int = Field(default=3, ge=1)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    heartbeat_stale_s: float = Field(default=120.0, gt=0, description="A running job silent this long is requeued.")
    sweep_interval_s: float = Field(default=30.0, gt=0, description="Period of the Celery beat sweep.")
    sweep_queued_after_s: float = Field(
        default=60.0, ge=0, description="A queued job older than this with no message in the broker is enqueued again."
    )
    prewarm_worker: bool = Field(default=True, description="Import the training engine in each fresh worker child.")
    webhook_timeout_s: float = 10.0
    webhook_max_attempts: int = Field(default=6, ge=1)
    webhook_backoff_s: float = Field(default=5.0, gt=0, description="First retry delay; doubles each attempt.")

    @model_validator(mode="after")
    def _default_io_queue(self) -> Settings:
        if not self.io_queue:
            self.io_queue = f"{self.default_queue}.io"
        if not self.gpu_queue:
            self.gpu_queue = f"{self.default_queue}.gpu"
        return self

    def queue_for_device(self, device: str) -> str:
        return self.gpu_queue if device == "gpu" else self.default_queue

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'transferlab.db').resolve()}"

    @property
    def is_embedded_broker(self) -> bool:
        return not self.broker_url or self.broker_url.startswith("filesystem://")

    @property
    def broker_folder(self) -> Path:
        return (self.data_dir / "broker").resolve()

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def resolved_io_queue(self) -> str:
        return self.io_queue or f"{self.default_queue}.io"

    @property
    def resolved_artifact_dir(self) -> Path:
        return (self.artifact_dir or self.data_dir / "artifacts").resolve()

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.resolved_artifact_dir.mkdir(parents=True, exist_ok=True)
        if self.is_embedded_broker:
            self.broker_folder.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
