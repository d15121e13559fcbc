"""/v1/datasets: upload (streamed), list, get (with report), samples, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.auth import Principal, require
from app.deps import SessionDep
from app.schemas.common import Page
from app.schemas.datasets import DatasetCreated, DatasetOut, DatasetSamples, DatasetSummary
from app.services import dataset_samples
from app.services import datasets as service
from app.storage import get_store
from app.uploads import receive_multipart

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "name"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "zip / tar / tar.gz of class folders (optionally under train/ val/ "
                            "test/), or CSV / JSONL with a text and a label column",
                        },
                        "name": {"type": "string", "maxLength": 200},
                        "task": {"type": "string", "enum": ["image_classification", "text_classification"]},
                        "description": {"type": "string", "maxLength": 5000},
                        "text_column": {"type": "string", "default": "text"},
                        "label_column": {"type": "string", "default": "label"},
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetCreated,
    openapi_extra=UPLOAD_BODY,
    responses={200: {"description": "Identical content exists: that dataset is returned, duplicate=true"}},
)
async def upload_dataset(
    request: Request, session: SessionDep, principal: Annotated[Principal, Depends(require("write"))]
) -> JSONResponse:
    """Stream an upload to disk; the dataset is ``validating`` until a worker has checked every file."""
    settings = request.app.state.settings
    form = await receive_multipart(request, settings.data_dir / "tmp", settings.max_upload_bytes)
    try:
        dataset, duplicate = await run_in_threadpool(
            service.create_from_upload, session, settings, get_store(settings), principal, form
        )
    finally:
        if form.file is not None:
            form.file.discard()
    message = service.duplicate_message(dataset) if duplicate else None
    body = DatasetCreated.model_validate(dataset).model_copy(update={"duplicate": duplicate, "message": message})
    code = status.HTTP_200_OK if duplicate else status.HTTP_201_CREATED
    return JSONResponse(
        body.model_dump(mode="json"), status_code=code, headers={"Location": f"/v1/datasets/{dataset.id}"}
    )


@router.get("", response_model=Page[DatasetSummary])
def list_datasets(
    session: SessionDep,
    principal: Annotated[Principal, Depends(require("read"))],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    task: Annotated[str | None, Query(pattern="^(image_classification|text_classification)$")] = None,
    state: Annotated[str | None, Query(pattern="^(uploading|validating|ready|invalid)$")] = None,
) -> Page[DatasetSummary]:
    rows, total = service.list_datasets(session, principal, limit=limit, offset=offset, task=task, state=state)
    return Page(items=[DatasetSummary.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(
    dataset_id: str, session: SessionDep, principal: Annotated[Principal, Depends(require("read"))]
) -> DatasetOut:
    return DatasetOut.model_validate(service.get_dataset(session, principal, dataset_id))


@router.get("/{dataset_id}/samples", response_model=DatasetSamples)
def get_samples(
    dataset_id: str,
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require("read"))],
    label: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 8,
) -> DatasetSamples:
    """Thumbnails (base64 PNG, at most 96 px) or text rows, spread over the labels unless one is chosen."""
    settings = request.app.state.settings
    dataset = service.get_dataset(session, principal, dataset_id)
    body = dataset_samples.samples(get_store(settings), dataset, label, limit, settings.max_image_pixels)
    return DatasetSamples.model_validate(body)


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dataset(
    dataset_id: str, request: Request, session: SessionDep, principal: Annotated[Principal, Depends(require("write"))]
) -> Response:
    """409 while a queued or running job uses it; model versions trained on it keep their lineage."""
    service.delete_dataset(session, get_store(request.app.state.settings), principal, dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
