"""Checks a job spec against its dataset and the base catalog before anything is queued.

What can be known without TensorFlow is checked here: task and modality, catalog names, weight files on this
machine, width multipliers, the earlier model a job builds on, and ``unfreeze_from_layer`` against the layer
names of the base (a catalog base's from the committed ``worker/training/catalog_layers.json``; an uploaded
base's or an earlier model version's from the names recorded when it was stored, see ``app.keras_layers``).
What only loading the model can tell (a ``feature_layer`` cut, a base stored before names were recorded) the
engine checks, and its refusal fails the job as the user's error.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.auth import Principal
from app.catalog import IMAGE_BASES, TEXT_BASES, catalog_layer_names, image_weights_path, text_preset_dir
from app.config import Settings
from app.errors import NotFound, Unprocessable
from app.jobspec import JobSpec
from app.keras_layers import stored_layer_names
from app.services.base_uploads import require_base, upload_key
from app.storage import get_store
from app.tables import Dataset, ModelVersion

TEXT_KINDS = ("text_preset",)
IMAGE_KINDS = ("catalog",)


def check_against_dataset(spec: JobSpec, dataset: Dataset) -> None:
    if dataset.state != "ready":
        raise Unprocessable(f"dataset {dataset.id} is {dataset.state}; only a ready dataset can be trained on")
    base = spec.base
    if base.kind in IMAGE_KINDS and dataset.task != "image_classification":
        raise Unprocessable(f"base {base.name} is an image base but dataset {dataset.id} is a {dataset.task} dataset")
    if base.kind in TEXT_KINDS and dataset.task != "text_classification":
        raise Unprocessable(
            f"base {base.name or base.path} is a text base but dataset {dataset.id} is a {dataset.task} dataset"
        )
    if spec.task != dataset.task:
        raise Unprocessable(f"spec.task is {spec.task} but dataset {dataset.id} is a {dataset.task} dataset")


def check_base(session: Session, settings: Settings, principal: Principal, spec: JobSpec) -> None:
    base = spec.base
    if base.kind == "catalog":
        info = IMAGE_BASES.get(base.name or "")
        if info is None:
            raise Unprocessable(
                f"unknown catalog base {base.name!r}; known image bases: {', '.join(sorted(IMAGE_BASES))}"
            )
        if base.alpha is not None and not info.supports_alpha:
            raise Unprocessable(f"base {info.name} has no width multiplier; remove base.alpha")
        if base.weights == "imagenet":
            hw = spec.hyperparameters.image_hw()
            path = image_weights_path(info, base.alpha, hw[0] if hw else None)
            if not path.exists():
                raise Unprocessable(
                    f"ImageNet weights for {info.name} are not on this server: expected the file {path}; "
                    "place it there (Keras cache, $KERAS_HOME/models) or use base.weights 'none'"
                )
    elif base.kind == "text_preset" and base.path is None:
        text = TEXT_BASES.get(base.name or "")
        if text is None:
            raise Unprocessable(f"unknown text base {base.name!r}; known text bases: {', '.join(sorted(TEXT_BASES))}")
        if text_preset_dir(text) is None:
            raise Unprocessable(f"text base {text.name} is not installed on this server (source {text.source})")
    if base.kind in ("keras_file", "model_version") and base.path is not None:
        raise Unprocessable(
            f"base.path names a file on the server; a {base.kind} base is given by "
            + ("upload_id (POST /v1/bases/uploads)" if base.kind == "keras_file" else "model_version_id")
        )
    if base.upload_id is not None:
        try:
            require_base(get_store(settings), principal.project_id, base.upload_id)
        except NotFound as exc:
            raise Unprocessable(f"base.upload_id: {exc.detail}") from exc
    if base.model_version_id is not None:
        version = session.get(ModelVersion, base.model_version_id)
        if version is None or version.project_id != principal.project_id:
            raise Unprocessable(f"base.model_version_id {base.model_version_id} is not a model version of this project")


@dataclass(frozen=True)
class _KnownLayers:
    label: str  # the base, as messages name it
    names: list[str]
    listing: str | None = None  # the route that lists them all


def _known_layers(session: Session, settings: Settings, principal: Principal, spec: JobSpec) -> _KnownLayers | None:
    """The base's layer names where they are known without TensorFlow, else None (the engine checks)."""
    base = spec.base
    if base.kind == "catalog":
        catalog = catalog_layer_names(base.name or "")
        if catalog is None:
            return None
        return _KnownLayers(base.name or "", list(catalog), f"GET /v1/bases/{base.name}/layers")
    if base.kind == "keras_file" and base.upload_id:
        names = stored_layer_names(get_store(settings), upload_key(principal.project_id, base.upload_id))
        listing = f"GET /v1/bases/uploads/{base.upload_id}/layers"
        return _KnownLayers(f"uploaded base {base.upload_id}", names, listing) if names is not None else None
    if base.kind == "model_version" and base.model_version_id:
        version = session.get(ModelVersion, base.model_version_id)
        key = ((version.artifacts or {}).get("keras") or {}).get("key") if version is not None else None
        names = stored_layer_names(get_store(settings), key) if key else None
        return _KnownLayers(f"model version {base.model_version_id}", names) if names is not None else None
    return None


def check_layer_names(session: Session, settings: Settings, principal: Principal, spec: JobSpec) -> None:
    """``hyperparameters.unfreeze_from_layer`` must name a layer of the base's backbone: a catalog base's (from
    the committed name file), an uploaded base's or an earlier model version's (recorded when it was stored;
    one stored before that is checked by the engine)."""
    layer = spec.hyperparameters.unfreeze_from_layer
    known = _known_layers(session, settings, principal, spec) if layer is not None else None
    if layer is None or known is None or layer in known.names:
        return
    names = known.names
    close = difflib.get_close_matches(layer, names, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    listing = f"; {known.listing}" if known.listing else ""
    raise Unprocessable(
        f"hyperparameters.unfreeze_from_layer {layer!r} is not a layer of {known.label}; {hint}"
        f"its last layers are {', '.join(names[-6:])} ({len(names)} layers{listing})",
        extra={"field": "hyperparameters.unfreeze_from_layer", "valid_examples": list(close or names[-6:])},
    )


def validate_job(session: Session, settings: Settings, principal: Principal, spec: JobSpec, dataset: Dataset) -> None:
    check_against_dataset(spec, dataset)
    check_base(session, settings, principal, spec)
    check_layer_names(session, settings, principal, spec)
