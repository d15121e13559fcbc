"""API shapes for datasets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DatasetSummary(BaseModel):
    """A dataset without its (possibly long) validation report: the list view."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str
    task: str
    state: str = Field(description="uploading → validating → ready | invalid")
    format: str
    content_hash: str = Field(description="SHA-256 of the uploaded bytes")
    size_bytes: int
    num_examples: int
    labels: list[str]
    text_column: str | None
    label_column: str | None
    error: str | None = Field(description="Why the dataset is invalid, when it is")
    created_at: datetime
    validated_at: datetime | None = None


class DatasetOut(DatasetSummary):
    report: dict[str, Any] = Field(description="The validation report (empty while validating)")


class DatasetCreated(DatasetOut):
    duplicate: bool = False
    message: str | None = None


class DatasetSamples(BaseModel):
    dataset_id: str
    task: str
    label: str | None
    items: list[dict[str, Any]] = Field(
        description="Images: path, label, split, width, height, thumbnail_png_base64. Text: text, label."
    )
