"""/v1/bases: the catalog of pretrained backbones a job can start from."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from app.auth import Principal, require

router = APIRouter(prefix="/v1/bases", tags=["bases"])


@router.get("")
def list_bases(_: Annotated[Principal, Depends(require("read"))]) -> dict[str, Any]:
    from app.catalog import list_bases as catalog

    items = catalog()
    return {"items": items, "total": len(items)}
