"""TF Serving's REST API: ``/v1/models/{name}[/versions/{v}|/labels/{alias}]:predict`` and ``/metadata``.

Status (``GET /v1/models/{name}`` and ``/versions/{v}``) is answered by the registry documents in
``app/routes/models.py``, which carry TF Serving's ``model_version_status`` list; ``/labels/{alias}``
status is answered here. Images come as ``{"b64": ...}`` (encoded image bytes) or nested pixel lists;
texts as strings. Row format (``instances``) answers ``predictions``; columnar (``inputs``) answers
``outputs``. Without a version or label the ``production`` alias is used when set, else the latest.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request

from app.auth import Principal, require, require_cached
from app.deps import SessionDep
from app.errors import BadRequest, ProtocolErrorRoute
from app.services import registry
from app.serving.inputs import b64_bytes, decode_image, decode_off_loop_if_large, pixels
from app.serving.predictor import Predictor, check_backend
from app.serving.runtime import ModelRef

router = APIRouter(prefix="/v1/models", tags=["tf-serving"], route_class=ProtocolErrorRoute)
ReadPrincipal = Annotated[Principal, Depends(require("read"))]
InferPrincipal = Annotated[Principal, Depends(require_cached("read"))]
MAX_ITEMS = 1024


def _unwrap(value: Any, item: str) -> Any:
    """A named input (``{"image": ...}``) carries one value; ``{"b64": ...}`` is kept as is."""
    if isinstance(value, dict) and "b64" not in value:
        if len(value) != 1:
            raise BadRequest(f"{item}: this model has one input; got named inputs {', '.join(map(str, value))}")
        return next(iter(value.values()))
    return value


def _instance(value: Any, ref: ModelRef, item: str) -> Any:
    value = _unwrap(value, item)
    if ref.is_text:
        if not isinstance(value, str):
            raise BadRequest(f"{item}: this is a text model; each instance must be a string")
        return value
    if isinstance(value, dict):
        h, w = int(ref.signature["height"]), int(ref.signature["width"])
        return decode_image(b64_bytes(value["b64"], f"{item}.b64"), h, w, item)
    if isinstance(value, list):
        return pixels(value, ref.signature, item)[0]
    raise BadRequest(f'{item}: send an image as {{"b64": "<base64 image bytes>"}} or as a nested list of pixels')


def _batch(body: Any, ref: ModelRef) -> tuple[Any, str]:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object with 'instances' or 'inputs'")
    if "instances" in body:
        items, key, out = body["instances"], "instances", "predictions"
    elif "inputs" in body:
        items, key, out = _unwrap(body["inputs"], "inputs"), "inputs", "outputs"
        if isinstance(items, dict):  # a single {"b64": ...}
            items = [items]
    else:
        raise BadRequest("request body needs 'instances' (row format) or 'inputs' (columnar format)")
    if not isinstance(items, list) or not items:
        raise BadRequest(f"'{key}' must be a non-empty list")
    if len(items) > MAX_ITEMS:
        raise BadRequest(f"{len(items)} instances in one request; at most {MAX_ITEMS}")
    values = [_instance(v, ref, f"{key}[{i}]") for i, v in enumerate(items)]
    return (values if ref.is_text else np.stack(values)), out


def _parse(raw: bytes, ref: ModelRef) -> tuple[Any, str]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest("request body is not valid JSON") from exc
    return _batch(body, ref)


async def _predict(request: Request, principal: Principal, name: str, version: str | None) -> Any:
    predictor: Predictor = request.app.state.predictor
    ref, _ = await predictor.resolve(request.app.state.sessionmaker, principal, name, version=version)
    raw = await request.body()
    batch, out = await decode_off_loop_if_large(len(raw), _parse, raw, ref)
    probs, _ = await predictor.predict(ref, check_backend(ref, None), batch, "tfserving")
    return {out: probs.tolist()}


@router.post("/{name}:predict")
async def predict(name: str, request: Request, principal: InferPrincipal) -> Any:
    return await _predict(request, principal, name, None)


@router.post("/{name}/versions/{version}:predict")
async def predict_version(name: str, version: int, request: Request, principal: InferPrincipal) -> Any:
    return await _predict(request, principal, name, str(version))


@router.post("/{name}/labels/{label}:predict")
async def predict_label(name: str, label: str, request: Request, principal: InferPrincipal) -> Any:
    return await _predict(request, principal, name, label)


def _tensor(dtype: str, dims: list[int], name: str) -> dict[str, Any]:
    return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims]}, "name": name}


def _metadata(ref: ModelRef) -> dict[str, Any]:
    if ref.is_text:
        inputs = {"text": _tensor("DT_STRING", [-1], "text")}
    else:
        h, w = int(ref.signature["height"]), int(ref.signature["width"])
        inputs = {"image": _tensor("DT_UINT8", [-1, h, w, 3], "image")}
    outputs = {"probabilities": _tensor("DT_FLOAT", [-1, len(ref.labels)], "probabilities")}
    signature = {"inputs": inputs, "outputs": outputs, "method_name": "tensorflow/serving/predict"}
    return {
        "model_spec": {"name": ref.name, "signature_name": "", "version": str(ref.version)},
        "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}},
        "labels": list(ref.labels),
    }


@router.get("/{name}/metadata")
def metadata(name: str, session: SessionDep, principal: ReadPrincipal) -> Any:
    return _metadata(registry.to_ref(registry.resolve(session, principal, name)[0], principal.project_name))


@router.get("/{name}/versions/{version}/metadata")
def metadata_version(name: str, version: int, session: SessionDep, principal: ReadPrincipal) -> Any:
    row = registry.resolve(session, principal, name, version=version)[0]
    return _metadata(registry.to_ref(row, principal.project_name))


@router.get("/{name}/labels/{label}/metadata")
def metadata_label(name: str, label: str, session: SessionDep, principal: ReadPrincipal) -> Any:
    row = registry.resolve(session, principal, name, alias=label)[0]
    return _metadata(registry.to_ref(row, principal.project_name))


@router.get("/{name}/labels/{label}")
def status_label(name: str, label: str, session: SessionDep, principal: ReadPrincipal) -> Any:
    row = registry.resolve(session, principal, name, alias=label)[0]
    status = {"error_code": "OK", "error_message": ""}
    return {"model_version_status": [{"version": str(row.version), "state": "AVAILABLE", "status": status}]}
