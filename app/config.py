"""Service settings, read from the environment with the ``TL_`` prefix.

The defaults are the *embedded mode*: an SQLite file and a filesystem Celery transport under
``TL_DATA_DIR`` (``./.tl-data``), served by a real Celery worker process. Production sets
``TL_DATABASE_URL`` (Postgres) and ``TL_BROKER_URL`` (Redis).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
    io_queue: str = Field(default="", description="Queue for I/O tasks (batch prediction); default_queue + '.io'.")
    max_upload_bytes: int = 2 * 1024**3
    max_uncompressed_bytes: int = 8 * 1024**3
    max_archive_members: int = 200_000
    max_compression_ratio: float = 200.0
    max_image_pixels: int = 64_000_000
    auto_migrate: bool = True
    log_level: str = "INFO"
    # Serving: the loaded-model cache's memory budget and the dynamic batcher's defaults.
    model_cache_bytes: int = Field(default=2 * 1024**3, description="Memory budget of the loaded-model cache.")
    serving_max_batch_size: int = Field(default=32, ge=1, description="Most items run together in one batch.")
    serving_max_wait_ms: float = Field(
        default=0.0, ge=0, description="How long a batch waits for more requests; 0 batches only what queued up."
    )
    serving_busy_wait_ms: float = Field(
        default=5.0, ge=0,
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

    @model_validator(mode="after")
    def _default_io_queue(self) -> Settings:
        if not self.io_queue:
            self.io_queue = f"{self.default_queue}.io"
        return self

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
