"""API shapes for the model registry and predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
    alias: str | None = None
    backend: str = "keras"
    predictions: list[Prediction]
    latency_ms: float


class VersionStatus(BaseModel):
    """TF Serving's model status entry (``GET /v1/models/{name}`` answers a superset of its status)."""

    version: str
    state: str = "AVAILABLE"
    status: dict[str, str] = {"error_code": "OK", "error_message": ""}


class ModelVersionDoc(ModelVersionOut):
    serving_config: dict[str, Any]
    aliases: list[str]
    model_version_status: list[VersionStatus]


class ModelDoc(BaseModel):
    name: str
    latest_version: int
    aliases: dict[str, int]
    versions: list[ModelVersionDoc]
    model_version_status: list[VersionStatus]


class AliasSet(BaseModel):
    version: int = Field(ge=1)


class AliasEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    action: str
    from_version: int | None
    to_version: int | None
    actor: str | None
    created_at: datetime


class AliasOut(BaseModel):
    model: str
    alias: str
    version: int
    updated_by: str | None
    updated_at: datetime
    history: list[AliasEventOut] = []


class ServingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch_size: int | None = Field(default=None, ge=1, le=1024)
    max_wait_ms: float | None = Field(default=None, ge=0, le=1000)


class ModelVersionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serving: ServingConfig


class BatchPredictionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str
    version: int | None = Field(default=None, ge=1)
    alias: str | None = None
    top_k: int = Field(default=5, ge=1, le=100)
    backend: str = "keras"


class BatchPredictionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    model_name: str
    version: int
    dataset_id: str
    backend: str
    top_k: int
    state: str
    num_items: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    results: dict[str, str] = {}
