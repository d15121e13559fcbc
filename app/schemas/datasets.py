"""API shapes for datasets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str
    task: str
    state: str
    format: str
    content_hash: str
    size_bytes: int
    num_examples: int
    labels: list[str]
    text_column: str | None
    label_column: str | None
    error: str | None
    report: dict[str, Any]
    created_at: datetime


class DatasetCreated(DatasetOut):
    duplicate: bool = False
