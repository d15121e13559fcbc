"""/v1/models: the registry (versions, aliases, artifacts) and native predictions.

``GET /v1/models/{name}`` and ``GET /v1/models/{name}/versions/{n}`` are the registry documents and
also carry TF Serving's ``model_version_status`` list, so TF Serving status clients read them as is.
Predictions address a version or an alias: ``?version=3`` / ``?alias=staging``, or the path forms
``/versions/{n}/predict`` and ``/aliases/{alias}/predict``; with neither, the ``production`` alias
when it is set, else the latest version.
"""

from __future__ import annotations

import binascii
import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile

from app.auth import Principal, require, require_cached
from app.deps import SessionDep
from app.errors import BadRequest, NotFound, UnsupportedMediaType
from app.keras_layers import layers_key
from app.outbox import after_commit
from app.schemas.models import (
    AliasEventOut,
    AliasOut,
    AliasSet,
    ModelDoc,
    ModelVersionDoc,
    ModelVersionOut,
    ModelVersionPatch,
    Prediction,
    PredictResponse,
    VersionStatus,
)
from app.services import registry
from app.serving.inputs import decode_image, decode_off_loop_if_large, strict_b64decode
from app.serving.predictor import Predictor, check_backend
from app.serving.runtime import top_k as rank
from app.storage import get_store
from app.tables import ModelVersion

router = APIRouter(prefix="/v1/models", tags=["models"])
ReadPrincipal = Annotated[Principal, Depends(require("read"))]
WritePrincipal = Annotated[Principal, Depends(require("write"))]
InferPrincipal = Annotated[Principal, Depends(require_cached("read"))]
MAX_ITEMS = 1024


def version_doc(row: ModelVersion, aliases: list[str]) -> ModelVersionDoc:
    base = ModelVersionOut.model_validate(row).model_dump()
    return ModelVersionDoc(
        **base,
        serving_config=dict(row.serving_config or {}),
        aliases=aliases,
        model_version_status=[VersionStatus(version=str(row.version))],
    )


@router.get("")
def list_models(session: SessionDep, principal: ReadPrincipal) -> dict[str, Any]:
    items = [
        {"name": name, "latest_version": latest, "versions": count}
        for name, latest, count in registry.list_model_names(session, principal)
    ]
    return {"items": items, "total": len(items)}


@router.get("/{name}", response_model=ModelDoc)
def get_model(name: str, session: SessionDep, principal: ReadPrincipal) -> ModelDoc:
    versions = registry.list_versions(session, principal, name)
    by_version = registry.aliases_by_version(session, principal.project_id, name)
    docs = [version_doc(v, by_version.get(v.version, [])) for v in versions]
    return ModelDoc(
        name=name,
        latest_version=versions[0].version,
        aliases={alias: version for version, names in by_version.items() for alias in names},
        versions=docs,
        model_version_status=[VersionStatus(version=str(v.version)) for v in versions],
    )


@router.delete("/{name}", status_code=204)
def delete_model(name: str, request: Request, session: SessionDep, principal: WritePrincipal) -> Response:
    for row in registry.delete_model(session, principal, name):
        _cleanup_after_commit(request, session, row)
    _forget_after_commit(request, session, principal, name)
    return Response(status_code=204)


@router.get("/{name}/versions/{version}", response_model=ModelVersionDoc)
def get_version(name: str, version: int, session: SessionDep, principal: ReadPrincipal) -> ModelVersionDoc:
    row = registry.get_version(session, principal, name, version)
    return version_doc(row, registry.aliases_by_version(session, principal.project_id, name).get(row.version, []))


@router.patch("/{name}/versions/{version}", response_model=ModelVersionDoc)
def patch_version(
    name: str,
    version: int,
    body: ModelVersionPatch,
    request: Request,
    session: SessionDep,
    principal: WritePrincipal,
) -> ModelVersionDoc:
    """Per-version serving overrides (``max_batch_size``, ``max_wait_ms``); the model reloads on next use."""
    row = registry.update_serving(session, principal, name, version, body.serving.model_dump())
    predictor: Predictor = request.app.state.predictor
    version_id = row.id
    after_commit(session, lambda: predictor.evict_version(version_id))
    _forget_after_commit(request, session, principal, name)
    return version_doc(row, registry.aliases_by_version(session, principal.project_id, name).get(row.version, []))


def _forget_after_commit(request: Request, session: Any, principal: Principal, name: str) -> None:
    """Predictions resolve ``name`` afresh once this change commits (see ``app.serving.resolution``)."""
    predictor: Predictor = request.app.state.predictor
    project_id = principal.project_id
    after_commit(session, lambda: predictor.forget(project_id, name))


def _cleanup_after_commit(request: Request, session: Any, row: ModelVersion) -> None:
    store = get_store(request.app.state.settings)
    predictor: Predictor = request.app.state.predictor
    keys: list[str] = []
    for fmt, artifact in (row.artifacts or {}).items():
        if isinstance(artifact, dict) and artifact.get("key"):
            keys += [artifact["key"], layers_key(artifact["key"])] if fmt == "keras" else [artifact["key"]]
    version_id = row.id

    def cleanup() -> None:
        predictor.evict_version(version_id)
        for key in keys:
            store.delete(key)

    after_commit(session, cleanup)


@router.delete("/{name}/versions/{version}", status_code=204)
def delete_version(
    name: str, version: int, request: Request, session: SessionDep, principal: WritePrincipal
) -> Response:
    """409 while an alias points at the version. Its artifacts are removed once the delete commits."""
    row = registry.delete_version(session, principal, name, version)
    _cleanup_after_commit(request, session, row)
    _forget_after_commit(request, session, principal, name)
    return Response(status_code=204)


@router.get("/{name}/versions/{version}/artifacts/{fmt}")
def download_artifact(
    name: str, version: int, fmt: str, request: Request, session: SessionDep, principal: ReadPrincipal
) -> FileResponse:
    """One exported format as a file; a directory format (SavedModel) comes as a zip."""
    row = registry.get_version(session, principal, name, version)
    artifact = (row.artifacts or {}).get(fmt)
    if not isinstance(artifact, dict) or "key" not in artifact:
        raise NotFound(f"{name} version {version} has no {fmt!r} artifact; it has: {', '.join(sorted(row.artifacts))}")
    path = get_store(request.app.state.settings).local_path(artifact["key"])
    if not path.exists():
        raise NotFound(f"the {fmt} artifact of {name} version {version} is missing from the artifact store")
    stem = f"{name}-v{version}-{fmt}"
    if path.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=request.app.state.settings.data_dir / "tmp"))
        archive = shutil.make_archive(str(tmp / stem), "zip", root_dir=path)
        return FileResponse(
            archive,
            filename=f"{stem}.zip",
            media_type="application/zip",
            background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True),
        )
    return FileResponse(path, filename=f"{stem}{path.suffix}", media_type="application/octet-stream")


def _alias_out(name: str, alias: str, session: Any, principal: Principal, history: bool) -> AliasOut:
    row, version = registry.get_alias(session, principal, name, alias)
    events = registry.alias_history(session, principal, name, alias) if history else []
    return AliasOut(
        model=name,
        alias=alias,
        version=version.version,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
        history=[AliasEventOut.model_validate(e) for e in events],
    )


@router.get("/{name}/aliases")
def list_aliases(name: str, session: SessionDep, principal: ReadPrincipal) -> dict[str, Any]:
    items = [
        AliasOut(model=name, alias=row.alias, version=version, updated_by=row.updated_by, updated_at=row.updated_at)
        for row, version in registry.list_aliases(session, principal, name)
    ]
    return {"items": [i.model_dump(mode="json", exclude={"history"}) for i in items], "total": len(items)}


@router.get("/{name}/aliases/{alias}", response_model=AliasOut)
def get_alias(name: str, alias: str, session: SessionDep, principal: ReadPrincipal) -> AliasOut:
    """Where the alias points now, and every move (newest first)."""
    return _alias_out(name, alias, session, principal, history=True)


@router.put("/{name}/aliases/{alias}", response_model=AliasOut)
def set_alias(
    name: str, alias: str, body: AliasSet, request: Request, session: SessionDep, principal: WritePrincipal
) -> AliasOut:
    registry.set_alias(session, principal, name, alias, body.version)
    _forget_after_commit(request, session, principal, name)
    return _alias_out(name, alias, session, principal, history=True)


@router.post("/{name}/aliases/{alias}/rollback", response_model=AliasOut)
def rollback_alias(name: str, alias: str, request: Request, session: SessionDep, principal: WritePrincipal) -> AliasOut:
    """Undo the alias's latest move not already undone; 409 when there is nothing to go back to."""
    registry.rollback_alias(session, principal, name, alias)
    _forget_after_commit(request, session, principal, name)
    return _alias_out(name, alias, session, principal, history=True)


@router.delete("/{name}/aliases/{alias}", status_code=204)
def delete_alias(name: str, alias: str, request: Request, session: SessionDep, principal: WritePrincipal) -> Response:
    registry.delete_alias(session, principal, name, alias)
    _forget_after_commit(request, session, principal, name)
    return Response(status_code=204)


def _b64_images(items: Any, field: str, height: int, width: int) -> list[Any]:
    if not isinstance(items, list) or not items:
        raise BadRequest(f"'{field}' must be a non-empty list of base64 strings")
    decoded = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise BadRequest(f"{field}[{i}] must be a base64 string")
        try:
            raw = strict_b64decode(item)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(f"{field}[{i}] is not valid base64") from exc
        decoded.append(decode_image(raw, height, width, f"{field}[{i}]"))
    return decoded


def _json_inputs(raw: bytes, signature: dict[str, Any]) -> list[Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest("request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    if signature.get("type") == "text":
        if "images" in body:
            raise BadRequest("this is a text model: send 'texts', not 'images'")
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts:
            raise BadRequest("'texts' must be a non-empty list of strings")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise BadRequest(f"texts[{i}] must be a string")
        return texts
    if "texts" in body:
        raise BadRequest("this is an image model: send 'images' (base64) or multipart files, not 'texts'")
    return _b64_images(body.get("images"), "images", int(signature["height"]), int(signature["width"]))


async def _read_inputs(request: Request, signature: dict[str, Any]) -> list[Any]:
    """The request's items: parsed and decoded on the event loop when small, else in the thread pool."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        if signature.get("type") == "text":
            raise UnsupportedMediaType('this is a text model: send JSON {"texts": [...]}')
        form = await request.form()
        files = [v for v in form.getlist("files") + form.getlist("file") if isinstance(v, UploadFile)]
        if not files:
            raise BadRequest("multipart body has no image under the field 'files'")
        h, w = int(signature["height"]), int(signature["width"])
        blobs = [(await f.read(), f"files[{i}] ({f.filename})") for i, f in enumerate(files)]
        size = sum(len(data) for data, _ in blobs)
        return await decode_off_loop_if_large(size, lambda: [decode_image(data, h, w, item) for data, item in blobs])
    if content_type.startswith("application/json"):
        raw = await request.body()
        return await decode_off_loop_if_large(len(raw), _json_inputs, raw, signature)
    raise UnsupportedMediaType("send multipart/form-data (images) or application/json (texts or base64 images)")


async def _predict(
    request: Request,
    principal: Principal,
    name: str,
    *,
    version: int | None,
    alias: str | None,
    top_k: int,
    backend: str | None,
) -> Response:
    import numpy as np

    predictor: Predictor = request.app.state.predictor
    ref, via = await predictor.resolve(request.app.state.sessionmaker, principal, name, version=version, alias=alias)
    chosen = check_backend(ref, backend)
    inputs = await _read_inputs(request, ref.signature)
    if len(inputs) > MAX_ITEMS:
        raise BadRequest(f"{len(inputs)} items in one request; at most {MAX_ITEMS}")
    batch = inputs if ref.is_text else np.stack(inputs)
    probs, latency = await predictor.predict(ref, chosen, batch, "native")
    answer = PredictResponse(
        model=ref.name,
        version=ref.version,
        alias=via,
        backend=chosen,
        predictions=[Prediction.model_validate(p) for p in rank(probs, ref.labels, top_k)],
        latency_ms=latency,
    )
    # Serialised once: returning the model would make FastAPI dump it, validate the dump and dump that again.
    return Response(answer.model_dump_json(), media_type="application/json")


TopK = Annotated[int, Query(ge=1, le=100)]
BackendQ = Annotated[str | None, Query(description="keras (default) or an exported tflite_* variant")]


@router.post("/{name}/predict", response_model=PredictResponse)
async def predict(
    name: str,
    request: Request,
    principal: InferPrincipal,
    version: Annotated[int | None, Query(ge=1)] = None,
    alias: str | None = None,
    top_k: TopK = 5,
    backend: BackendQ = None,
) -> Response:
    return await _predict(request, principal, name, version=version, alias=alias, top_k=top_k, backend=backend)


@router.post("/{name}/versions/{version}/predict", response_model=PredictResponse)
async def predict_version(
    name: str,
    version: int,
    request: Request,
    principal: InferPrincipal,
    top_k: TopK = 5,
    backend: BackendQ = None,
) -> Response:
    return await _predict(request, principal, name, version=version, alias=None, top_k=top_k, backend=backend)


@router.post("/{name}/aliases/{alias}/predict", response_model=PredictResponse)
async def predict_alias(
    name: str,
    alias: str,
    request: Request,
    principal: InferPrincipal,
    top_k: TopK = 5,
    backend: BackendQ = None,
) -> Response:
    return await _predict(request, principal, name, version=None, alias=alias, top_k=top_k, backend=backend)
