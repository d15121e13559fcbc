"""API shapes for fine-tuning jobs. The job spec itself is the engine's ``JobSpec``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.jobspec import JobSpec


def _nul_in(value: Any, path: str) -> str | None:
    """The path of the first string under ``value`` holding a NUL character (the database refuses them)."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _nul_in(key, path) if isinstance(key, str) else None
        found = found or _nul_in(item, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        where = _nul_in(data, "")
        if where is not None:
            raise ValueError(f"{where or 'body'}: text must not contain NUL (\\u0000) characters")
        return data

    dataset_id: str = Field(min_length=1, max_length=32)
    model_name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    spec: JobSpec
    priority: int = Field(default=5, ge=0, le=9, description="0-9; higher runs first")
    device: Literal["cpu", "gpu"] | None = Field(default=None, description="queue by device; default TL_DEFAULT_DEVICE")


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    dataset_id: str
    model_name: str
    spec: dict[str, Any]
    state: str
    priority: int
    device: str
    queue: str
    attempts: int
    max_attempts: int
    worker: str | None
    heartbeat_at: datetime | None
    progress: dict[str, Any]
    metrics: dict[str, Any]
    result: dict[str, Any]
    error: str | None
    error_kind: str | None
    retry_of: str | None
    created_at: datetime
    enqueued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    model_version: int | None = None


class JobEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    data: dict[str, Any]
    created_at: datetime


class JobEventsPage(BaseModel):
    items: list[JobEventOut]
    next_after: int = Field(description="pass as ?after= to get the events after these")
    job_state: str
