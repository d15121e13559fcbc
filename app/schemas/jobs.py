"""API shapes for fine-tuning jobs. The job spec itself is the engine's ``JobSpec``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.jobspec import JobSpec


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(min_length=1, max_length=32)
    model_name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    spec: JobSpec
    priority: int = Field(default=5, ge=0, le=9)


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    dataset_id: str
    model_name: str
    spec: dict[str, Any]
    state: str
    priority: int
    attempts: int
    worker: str | None
    progress: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None
    error_kind: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    model_version: int | None = None
