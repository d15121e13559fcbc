"""Batch predictions: ``POST /v1/models/{name}/batch-predictions`` (202), status, and results as CSV or JSONL."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from app.auth import Principal, require
from app.deps import SessionDep
from app.errors import Conflict, NotFound
from app.schemas.models import BatchPredictionCreate, BatchPredictionOut
from app.services import batch_predictions
from app.storage import get_store
from app.tables import BatchPrediction

router = APIRouter(tags=["batch-predictions"])
MEDIA = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


def _out(row: BatchPrediction) -> BatchPredictionOut:
    out = BatchPredictionOut.model_validate(row)
    if row.state == "succeeded":
        out.results = {fmt: f"/v1/batch-predictions/{row.id}/results?format={fmt}" for fmt in row.result_keys}
    return out


@router.post("/v1/models/{name}/batch-predictions", status_code=202, response_model=BatchPredictionOut)
def create(
    name: str,
    body: BatchPredictionCreate,
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require("write"))],
) -> BatchPredictionOut:
    return _out(batch_predictions.create(session, request.app.state.settings, principal, name, body))


@router.get("/v1/batch-predictions/{batch_id}", response_model=BatchPredictionOut)
def get(
    batch_id: str, session: SessionDep, principal: Annotated[Principal, Depends(require("read"))]
) -> BatchPredictionOut:
    return _out(batch_predictions.get(session, principal, batch_id))


@router.get("/v1/batch-predictions/{batch_id}/results")
def results(
    batch_id: str,
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require("read"))],
    format: Annotated[Literal["csv", "jsonl"], Query()] = "jsonl",
) -> FileResponse:
    row = batch_predictions.get(session, principal, batch_id)
    if row.state != "succeeded":
        raise Conflict(f"batch prediction {batch_id} is {row.state}; results exist once it has succeeded")
    path = get_store(request.app.state.settings).local_path(row.result_keys[format])
    if not path.exists():
        raise NotFound(f"the {format} results of batch prediction {batch_id} are missing from the artifact store")
    return FileResponse(path, media_type=MEDIA[format], filename=f"predictions-{batch_id}.{format}")
