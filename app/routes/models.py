"""/v1/models: the registry (list, get, versions) and native predictions."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import UploadFile

from app.auth import Principal, require
from app.deps import SessionDep
from app.errors import BadRequest, UnsupportedMediaType
from app.schemas.models import ModelVersionOut, PredictResponse
from app.services import registry
from app.serving.inputs import decode_image
from app.storage import get_store

router = APIRouter(prefix="/v1/models", tags=["models"])
ReadPrincipal = Annotated[Principal, Depends(require("read"))]


@router.get("")
def list_models(session: SessionDep, principal: ReadPrincipal) -> dict[str, Any]:
    items = [
        {"name": name, "latest_version": latest, "versions": count}
        for name, latest, count in registry.list_model_names(session, principal)
    ]
    return {"items": items, "total": len(items)}


@router.get("/{name}")
def get_model(name: str, session: SessionDep, principal: ReadPrincipal) -> dict[str, Any]:
    versions = registry.list_versions(session, principal, name)
    return {
        "name": name,
        "latest_version": versions[0].version,
        "versions": [ModelVersionOut.model_validate(v).model_dump(mode="json") for v in versions],
    }


@router.get("/{name}/versions/{version}", response_model=ModelVersionOut)
def get_version(name: str, version: int, session: SessionDep, principal: ReadPrincipal) -> ModelVersionOut:
    return ModelVersionOut.model_validate(registry.get_version(session, principal, name, version))


async def _read_inputs(request: Request, signature: dict[str, Any]) -> list[Any]:
    content_type = request.headers.get("content-type", "")
    is_text = signature.get("type") == "text"
    if content_type.startswith("multipart/form-data"):
        if is_text:
            raise UnsupportedMediaType('this is a text model: send JSON {"texts": [...]}')
        form = await request.form()
        files = [v for v in form.getlist("files") + form.getlist("file") if isinstance(v, UploadFile)]
        if not files:
            raise BadRequest("multipart body has no image under the field 'files'")
        h, w = int(signature["height"]), int(signature["width"])
        return [decode_image(await f.read(), h, w, f"files[{i}] ({f.filename})") for i, f in enumerate(files)]
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError as exc:
            raise BadRequest("request body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        if is_text:
            texts = body.get("texts")
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise BadRequest("'texts' must be a non-empty list of strings")
            return texts
        images = body.get("images")
        if not isinstance(images, list) or not images:
            raise BadRequest("'images' must be a non-empty list of base64 strings")
        h, w = int(signature["height"]), int(signature["width"])
        decoded = []
        for i, item in enumerate(images):
            if not isinstance(item, str):
                raise BadRequest(f"images[{i}] must be a base64 string")
            try:
                raw = base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise BadRequest(f"images[{i}] is not valid base64") from exc
            decoded.append(decode_image(raw, h, w, f"images[{i}]"))
        return decoded
    raise UnsupportedMediaType("send multipart/form-data (images) or application/json (texts or base64 images)")


@router.post("/{name}/predict", response_model=PredictResponse)
async def predict(
    name: str,
    request: Request,
    session: SessionDep,
    principal: ReadPrincipal,
    version: Annotated[int | None, Query(ge=1)] = None,
    top_k: Annotated[int, Query(ge=1, le=100)] = 5,
) -> PredictResponse:
    import numpy as np
    from starlette.concurrency import run_in_threadpool

    from app.serving.runtime import top_k as rank

    row = registry.get_version(session, principal, name, version)
    inputs = await _read_inputs(request, row.input_signature)
    store = get_store(request.app.state.settings)
    path = store.local_path(row.artifacts["keras"]["key"])
    started = time.perf_counter()
    loaded = await run_in_threadpool(request.app.state.model_cache.get, row.id, path, row.labels, row.input_signature)
    batch = inputs if row.input_signature.get("type") == "text" else np.stack(inputs)
    probs = await run_in_threadpool(loaded.run, batch)
    latency = (time.perf_counter() - started) * 1000
    return PredictResponse(
        model=row.name, version=row.version, predictions=rank(probs, row.labels, top_k), latency_ms=latency
    )
