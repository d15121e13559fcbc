"""API shapes for the model registry and predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    version: int
    task: str
    job_id: str | None
    dataset_id: str | None
    parent_version_id: str | None
    base: dict[str, Any]
    strategy: str
    labels: list[str]
    metrics: dict[str, Any]
    input_signature: dict[str, Any]
    artifacts: dict[str, Any]
    created_at: datetime


class LabelScore(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    label: str
    probability: float
    top: list[LabelScore]


class PredictResponse(BaseModel):
    model: str
    version: int
    predictions: list[Prediction]
    latency_ms: float
