"""Checks a job spec against its dataset and the base catalog before anything is queued.

What can be known without TensorFlow is checked here (task and modality, catalog names, weight files on
this machine, width multipliers, the earlier model a job builds on, and layer names of catalog bases, read
from the committed ``worker/training/catalog_layers.json``); the layer names of an uploaded or earlier model
are checked by the engine, and its refusal fails the job as the user's error.
"""

from __future__ import annotations

import difflib

from sqlalchemy.orm import Session

from app.auth import Principal
from app.catalog import IMAGE_BASES, TEXT_BASES, catalog_layer_names, image_weights_path, text_preset_dir
from app.config import Settings
from app.errors import NotFound, Unprocessable
from app.jobspec import JobSpec
from app.services.base_uploads import require_base
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


def check_layer_names(spec: JobSpec) -> None:
    """``hyperparameters.unfreeze_from_layer`` must name a layer of a catalog base's backbone."""
    layer = spec.hyperparameters.unfreeze_from_layer
    if layer is None or spec.base.kind != "catalog":
        return
    names = catalog_layer_names(spec.base.name or "")
    if names is None or layer in names:
        return
    close = difflib.get_close_matches(layer, names, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    raise Unprocessable(
        f"hyperparameters.unfreeze_from_layer {layer!r} is not a layer of {spec.base.name}; {hint}"
        f"its last layers are {', '.join(names[-6:])} ({len(names)} layers; GET /v1/bases/{spec.base.name}/layers)",
        extra={"field": "hyperparameters.unfreeze_from_layer", "valid_examples": list(close or names[-6:])},
    )


def validate_job(session: Session, settings: Settings, principal: Principal, spec: JobSpec, dataset: Dataset) -> None:
    check_against_dataset(spec, dataset)
    check_base(session, settings, principal, spec)
    check_layer_names(spec)
