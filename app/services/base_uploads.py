"""Uploaded ``.keras`` bases: stored per project in the artifact store, referenced by a job's
``base.upload_id``. The worker loads them with ``safe_mode=True`` (no code in the file ever runs)."""

from __future__ import annotations

import secrets
import zipfile

from app.auth import Principal
from app.errors import BadRequest, NotFound, UnsupportedMediaType
from app.keras_layers import NotAKerasModel, base_layer_names, record_layer_names, stored_layer_names
from app.storage import ArtifactStore
from app.uploads import SpooledUpload


def upload_key(project_id: str, upload_id: str) -> str:
    return f"bases/{project_id}/{upload_id}.keras"


def _check_keras_file(upload: SpooledUpload) -> None:
    if not upload.head.startswith(b"PK\x03\x04"):
        raise UnsupportedMediaType(
            "a base must be a Keras v3 '.keras' file (a zip holding config.json)", extra={"accepted": [".keras"]}
        )
    try:
        with zipfile.ZipFile(upload.path) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile as exc:
        raise BadRequest(f"the .keras file is corrupt: {exc}") from exc
    if "config.json" not in names:
        raise BadRequest("the file is a zip but not a Keras model: it holds no config.json")


def store_base(store: ArtifactStore, principal: Principal, upload: SpooledUpload) -> dict[str, object]:
    """Store the upload and its layer names (for checking ``unfreeze_from_layer`` at submit); all or nothing."""
    _check_keras_file(upload)
    try:
        names = base_layer_names(upload.path)
    except NotAKerasModel as exc:
        raise BadRequest(f"the .keras file cannot be read: {exc}") from exc
    upload_id = secrets.token_hex(12)
    key = upload_key(principal.project_id, upload_id)
    store.put_file(key, upload.path)
    try:
        record_layer_names(store, key, names)
    except BaseException:
        store.delete(key)
        raise
    return {
        "upload_id": upload_id,
        "size_bytes": upload.size,
        "sha256": upload.sha256,
        "filename": upload.filename,
        "layers": len(names) if names is not None else None,
    }


def upload_layer_names(store: ArtifactStore, project_id: str, upload_id: str) -> list[str]:
    """The layer names ``unfreeze_from_layer`` may take for an uploaded base (404 for an unknown upload)."""
    names = stored_layer_names(store, require_base(store, project_id, upload_id))
    if names is None:
        raise NotFound(
            f"no layer names are recorded for uploaded base {upload_id} (a text model): "
            "the engine checks unfreeze_from_layer when the job runs"
        )
    return names


def require_base(store: ArtifactStore, project_id: str, upload_id: str) -> str:
    key = upload_key(project_id, upload_id)
    if not upload_id.isalnum() or not store.exists(key):
        raise NotFound(f"uploaded base {upload_id} not found")
    return key
