"""KServe V2 / Open Inference Protocol under ``/v2`` (what Triton's clients speak).

Health is open; everything under ``/v2/models`` needs a read key. ``{version}`` is a version number
or an alias name. Infer accepts one input tensor: BYTES (encoded images, or strings for a text
model), or UINT8 / FP32 pixels shaped [N, H, W, 3]; JSON data or the binary tensor extension
(``Inference-Header-Content-Length``). Outputs: ``probabilities`` (FP32 [N, labels]) and ``label``
(BYTES [N], the top label), in JSON or binary as requested.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import text

from app.auth import Principal, require, require_cached
from app.deps import SessionDep
from app.errors import BadRequest, ProtocolErrorRoute, ServiceUnavailable
from app.services import registry
from app.serving.inputs import b64_bytes, decode_image, decode_off_loop_if_large, pixels
from app.serving.predictor import Predictor, check_backend
from app.serving.runtime import ModelRef
from app.tables import ModelVersion

router = APIRouter(prefix="/v2", tags=["kserve-v2"], route_class=ProtocolErrorRoute)
ReadPrincipal = Annotated[Principal, Depends(require("read"))]
InferPrincipal = Annotated[Principal, Depends(require_cached("read"))]
HEADER_LENGTH = "Inference-Header-Content-Length"
NUMPY_TYPES = {"UINT8": np.uint8, "FP32": np.float32}
MAX_ITEMS = 1024


@router.get("")
def server_metadata() -> dict[str, Any]:
    return {"name": "transferlab", "version": "0.1.0", "extensions": ["binary_tensor_data"]}


@router.get("/health/live")
def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
def ready(request: Request) -> dict[str, bool]:
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        raise ServiceUnavailable("the database is unreachable") from exc
    return {"ready": True}


def _model_metadata(row: ModelVersion, versions: list[int], ref: ModelRef) -> dict[str, Any]:
    if ref.is_text:
        inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    else:
        inputs = [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    return {
        "name": row.name,
        "versions": [str(v) for v in versions],
        "platform": "tensorflow_keras",
        "inputs": inputs,
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(ref.labels)]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
        "parameters": {"labels": list(ref.labels), "version": str(row.version), "input_signature": ref.signature},
    }


def _metadata(session: Any, principal: Principal, name: str, version: str | None) -> dict[str, Any]:
    row, _ = registry.resolve(session, principal, name, version=version)
    versions = [v.version for v in registry.list_versions(session, principal, name)]
    ref = registry.to_ref(row, principal.project_name)
    return _model_metadata(row, versions if version is None else [row.version], ref)


@router.get("/models/{name}")
def model_metadata(name: str, session: SessionDep, principal: ReadPrincipal) -> dict[str, Any]:
    return _metadata(session, principal, name, None)


@router.get("/models/{name}/versions/{version}")
def version_metadata(name: str, version: str, session: SessionDep, principal: ReadPrincipal) -> dict[str, Any]:
    return _metadata(session, principal, name, version)


def _ready(session: Any, principal: Principal, name: str, version: str | None) -> dict[str, Any]:
    row, _ = registry.resolve(session, principal, name, version=version)
    return {"name": row.name, "version": str(row.version), "ready": True}


@router.get("/models/{name}/ready")
def model_ready(name: str, session: SessionDep, principal: ReadPrincipal) -> dict[str, Any]:
    return _ready(session, principal, name, None)


@router.get("/models/{name}/versions/{version}/ready")
def version_ready(name: str, version: str, session: SessionDep, principal: ReadPrincipal) -> dict[str, Any]:
    return _ready(session, principal, name, version)


def _split_body(raw: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    try:
        if header_length is not None:
            n = int(header_length)
            if n < 0 or n > len(raw):
                raise BadRequest(f"{HEADER_LENGTH} {n} does not fit a body of {len(raw)} bytes")
            header, rest = json.loads(raw[:n]), raw[n:]
        else:
            header, rest = json.loads(raw), b""
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("the inference request header is not valid JSON") from exc
    if not isinstance(header, dict):
        raise BadRequest("the inference request must be a JSON object")
    return header, rest


def _bytes_elements(blob: bytes, item: str) -> list[bytes]:
    out, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise BadRequest(f"{item}: truncated BYTES element length")
        (n,) = struct.unpack_from("<I", blob, offset)
        offset += 4
        if offset + n > len(blob):
            raise BadRequest(f"{item}: truncated BYTES element")
        out.append(blob[offset : offset + n])
        offset += n
    return out


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [x for d in data for x in _flatten(d)]
    return [data]


def _decode_input(tensor: dict[str, Any], binary: bytes | None, ref: ModelRef) -> Any:
    name = str(tensor.get("name", "input"))
    item = f"input {name}"
    datatype, shape = tensor.get("datatype"), tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape) or not shape:
        raise BadRequest(f"{item}: 'shape' must be a non-empty list of non-negative integers")
    if datatype == "BYTES":
        if binary is not None:
            elements: list[Any] = _bytes_elements(binary, item)
        else:
            elements = _flatten(tensor.get("data"))
        if len(elements) != int(np.prod(shape)):
            raise BadRequest(f"{item}: shape {shape} holds {int(np.prod(shape))} elements, got {len(elements)}")
        if ref.is_text:
            try:
                return [e.decode("utf-8") if isinstance(e, bytes) else str(e) for e in elements]
            except UnicodeDecodeError as exc:
                raise BadRequest(f"{item}: a BYTES element is not UTF-8 text") from exc
        h, w = int(ref.signature["height"]), int(ref.signature["width"])
        images = [
            decode_image(e if isinstance(e, bytes) else b64_bytes(e, f"{item}[{i}]"), h, w, f"{item}[{i}]")
            for i, e in enumerate(elements)
        ]
        return np.stack(images)
    if datatype in NUMPY_TYPES:
        if ref.is_text:
            raise BadRequest(f"{item}: this is a text model; send a BYTES tensor of strings, not {datatype}")
        dtype = NUMPY_TYPES[datatype]
        count = int(np.prod(shape))
        if binary is not None:
            if len(binary) != count * np.dtype(dtype).itemsize:
                raise BadRequest(f"{item}: {len(binary)} bytes do not hold a {datatype} tensor of shape {shape}")
            array = np.frombuffer(binary, dtype=dtype)
        else:
            flat = _flatten(tensor.get("data"))
            if len(flat) != count:
                raise BadRequest(f"{item}: shape {shape} holds {count} elements, got {len(flat)}")
            try:
                array = np.asarray(flat, dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise BadRequest(f"{item}: data is not a {datatype} tensor") from exc
        return pixels(array.reshape(shape), ref.signature, item)
    raise BadRequest(f"{item}: datatype {datatype!r} is not accepted; send BYTES, UINT8 or FP32")


def _read_inputs(header: dict[str, Any], rest: bytes, ref: ModelRef) -> Any:
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest("'inputs' must hold exactly one tensor (this model has one input)")
    tensor = inputs[0]
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    binary = None
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(rest):
            raise BadRequest(f"input '{tensor.get('name')}': binary_data_size {size} exceeds the body")
        binary = rest[:size]
    batch = _decode_input(tensor, binary, ref)
    if len(batch) > MAX_ITEMS:
        raise BadRequest(f"{len(batch)} items in one request; at most {MAX_ITEMS}")
    if len(batch) == 0:
        raise BadRequest("the input tensor is empty")
    return batch


def _encode_bytes(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in (v.encode() for v in values))


def _response(header: dict[str, Any], ref: ModelRef, probs: np.ndarray) -> Response:
    labels = [ref.labels[i] for i in np.argmax(probs, axis=1)]
    params = header.get("parameters") or {}
    wanted = header.get("outputs") or [{"name": "probabilities"}, {"name": "label"}]
    default_binary = bool(params.get("binary_data_output", False))
    outputs, blobs = [], []
    for out in wanted:
        name = out.get("name") if isinstance(out, dict) else None
        binary = bool((out.get("parameters") or {}).get("binary_data", default_binary)) if name else False
        if name == "probabilities":
            entry: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(probs.shape)}
            blob = np.ascontiguousarray(probs, dtype=np.float32).tobytes()
            data: list[Any] = [float(v) for v in probs.reshape(-1)]
        elif name == "label":
            entry = {"name": name, "datatype": "BYTES", "shape": [len(labels)]}
            blob, data = _encode_bytes(labels), labels
        else:
            raise BadRequest(f"unknown output {name!r}; this model has outputs 'probabilities' and 'label'")
        if binary:
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = data
        outputs.append(entry)
    body: dict[str, Any] = {"model_name": ref.name, "model_version": str(ref.version), "outputs": outputs}
    if "id" in header:
        body["id"] = header["id"]
    encoded = json.dumps(body).encode()
    if not blobs:
        return Response(encoded, media_type="application/json")
    return Response(
        encoded + b"".join(blobs),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(encoded))},
    )


async def _infer(request: Request, principal: Principal, name: str, version: str | None) -> Response:
    predictor: Predictor = request.app.state.predictor
    ref, _ = await predictor.resolve(request.app.state.sessionmaker, principal, name, version=version)
    raw = await request.body()
    encoding = request.headers.get("content-encoding", "").lower()
    try:
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
    except (OSError, zlib.error) as exc:
        raise BadRequest(f"the request body is not valid {encoding} data") from exc
    header, rest = _split_body(raw, request.headers.get(HEADER_LENGTH))
    batch = await decode_off_loop_if_large(len(raw), _read_inputs, header, rest, ref)
    probs, _ = await predictor.predict(ref, check_backend(ref, None), batch, "v2")
    return _response(header, ref, probs)


@router.post("/models/{name}/infer")
async def infer(name: str, request: Request, principal: InferPrincipal) -> Response:
    return await _infer(request, principal, name, None)


@router.post("/models/{name}/versions/{version}/infer")
async def infer_version(name: str, version: str, request: Request, principal: InferPrincipal) -> Response:
    return await _infer(request, principal, name, version)
