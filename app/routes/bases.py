"""/v1/bases: the catalog of pretrained backbones a job can start from."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.concurrency import run_in_threadpool

from app.auth import Principal, require
from app.errors import BadRequest, NotFound
from app.services.base_uploads import store_base, upload_layer_names
from app.storage import get_store
from app.uploads import receive_multipart

router = APIRouter(prefix="/v1/bases", tags=["bases"])


@router.get("")
def list_bases(_: Annotated[Principal, Depends(require("read"))]) -> dict[str, Any]:
    from app.catalog import list_bases as catalog

    items = catalog()
    return {"items": items, "total": len(items)}


@router.get("/{name}/layers")
def base_layers(name: str, _: Annotated[Principal, Depends(require("read"))]) -> dict[str, Any]:
    """The backbone's layer names, in order: what ``hyperparameters.unfreeze_from_layer`` may name."""
    from app.catalog import IMAGE_BASES, catalog_layer_names

    names = catalog_layer_names(name)
    if names is None:
        known = ", ".join(sorted(IMAGE_BASES))
        raise NotFound(f"no layer names recorded for base {name!r}; catalog image bases: {known}")
    return {"base": name, "layers": list(names), "total": len(names)}


@router.get("/uploads/{upload_id}/layers")
def uploaded_base_layers(
    upload_id: str, request: Request, principal: Annotated[Principal, Depends(require("read"))]
) -> dict[str, Any]:
    """An uploaded base's layer names, in order: what ``hyperparameters.unfreeze_from_layer`` may name."""
    names = upload_layer_names(get_store(request.app.state.settings), principal.project_id, upload_id)
    return {"upload_id": upload_id, "layers": names, "total": len(names)}


@router.post("/uploads", status_code=status.HTTP_201_CREATED)
async def upload_base(request: Request, principal: Annotated[Principal, Depends(require("write"))]) -> dict[str, Any]:
    """Upload a ``.keras`` model to start jobs from: ``{"base": {"kind": "keras_file", "upload_id": ...}}``."""
    settings = request.app.state.settings
    form = await receive_multipart(request, settings.data_dir / "tmp", settings.max_upload_bytes)
    try:
        if form.file is None:
            raise BadRequest("multipart body has no 'file' part holding the .keras model")
        return await run_in_threadpool(store_base, get_store(settings), principal, form.file)
    finally:
        if form.file is not None:
            form.file.discard()
