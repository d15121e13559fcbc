"""/v1/datasets: upload, list, get."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile, status
from fastapi.responses import JSONResponse

from app.auth import Principal, require
from app.deps import SessionDep
from app.schemas.common import Page
from app.schemas.datasets import DatasetCreated, DatasetOut
from app.services import datasets as service
from app.storage import get_store
from app.uploads import spool_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetCreated)
async def upload_dataset(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require("write"))],
    file: Annotated[UploadFile, File(description="zip/tar(.gz) of class folders, or CSV/JSONL")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    task: Annotated[str, Form(pattern="^(image_classification|text_classification)$")] = "image_classification",
    description: Annotated[str, Form(max_length=5000)] = "",
    text_column: Annotated[str, Form(min_length=1, max_length=100)] = "text",
    label_column: Annotated[str, Form(min_length=1, max_length=100)] = "label",
) -> JSONResponse:
    settings = request.app.state.settings
    upload = await spool_upload(file, settings.data_dir / "tmp", settings.max_upload_bytes)
    try:
        dataset, duplicate = service.create_from_upload(
            session,
            settings,
            get_store(settings),
            principal,
            upload,
            name=name,
            task=task,
            description=description,
            text_column=text_column,
            label_column=label_column,
        )
    finally:
        upload.discard()
    body = DatasetCreated.model_validate(dataset).model_copy(update={"duplicate": duplicate})
    code = status.HTTP_200_OK if duplicate else status.HTTP_201_CREATED
    return JSONResponse(body.model_dump(mode="json"), status_code=code)


@router.get("", response_model=Page[DatasetOut])
def list_datasets(
    session: SessionDep,
    principal: Annotated[Principal, Depends(require("read"))],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    task: Annotated[str | None, Query(pattern="^(image_classification|text_classification)$")] = None,
    state: Annotated[str | None, Query(pattern="^(uploading|validating|ready|invalid)$")] = None,
) -> Page[DatasetOut]:
    rows, total = service.list_datasets(session, principal, limit=limit, offset=offset, task=task, state=state)
    return Page(items=[DatasetOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{dataset_id}", response_model=DatasetOut)
def get_dataset(
    dataset_id: str, session: SessionDep, principal: Annotated[Principal, Depends(require("read"))]
) -> DatasetOut:
    return DatasetOut.model_validate(service.get_dataset(session, principal, dataset_id))
