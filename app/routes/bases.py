"""/v1/bases: the catalog of pretrained backbones a job can start from."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from app.auth import Principal, require
from app.errors import NotFound

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
