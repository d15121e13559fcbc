"""Dataset business rules: accept an upload, look up, list, delete, re-queue stuck validations.

An upload is checked on the request path only as far as is cheap (type, archive headers, text
columns), stored as one file, and recorded in state ``validating``; the full validation runs on
a worker (``transferlab.validate_dataset``, on the io queue), enqueued after the commit. Services
flush, never commit.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.archives import Limits, inspect_archive
from app.auth import Principal
from app.broker import enqueue_validation
from app.config import Settings
from app.errors import BadRequest, Conflict, NotFound, Unprocessable, UnsupportedMediaType
from app.outbox import after_commit, after_rollback
from app.storage import ArtifactStore
from app.tables import TASKS, Dataset, Job, utcnow
from app.uploads import MultipartForm, SpooledUpload
from app.validation.text import check_columns

ACCEPTED = {
    "image_classification": ["zip", "tar", "tar.gz"],
    "text_classification": ["csv", "jsonl"],
}
ACCEPTED_TEXT = {
    "image_classification": "zip, tar or tar.gz of class folders (optionally under train/ val/ test/)",
    "text_classification": "csv or jsonl with a text and a label column",
}
ACTIVE_JOB_STATES = ("queued", "running", "cancelling")


class UploadForm(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    task: str = Field(default="image_classification", pattern="^(image_classification|text_classification)$")
    description: str = Field(default="", max_length=5000)
    text_column: str = Field(default="text", min_length=1, max_length=100)
    label_column: str = Field(default="label", min_length=1, max_length=100)


def parse_form(form: MultipartForm) -> UploadForm:
    if form.file is None:
        errors = [{"field": "file", "message": "a 'file' part is required"}]
        raise Unprocessable("file: a 'file' part is required", extra={"errors": errors})
    try:
        return UploadForm.model_validate(form.fields)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "form", "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise Unprocessable(detail, extra={"errors": errors}) from exc


def sniff_format(upload: SpooledUpload) -> str:
    name = upload.filename.lower()
    head = upload.head
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar"  # gzip: tar.gz (a plain .gz of something else fails the archive check)
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if name.endswith(".jsonl") or name.endswith(".ndjson"):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    return "unknown"


def check_format(task: str, fmt: str) -> None:
    if task not in TASKS:
        raise BadRequest(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    ok = (task == "image_classification" and fmt in ("zip", "tar")) or (
        task == "text_classification" and fmt in ("csv", "jsonl")
    )
    if not ok:
        raise UnsupportedMediaType(
            f"a {task} dataset must be a {ACCEPTED_TEXT[task]}; this upload looks like {fmt}",
            extra={"accepted": ACCEPTED[task], "accepted_by_task": ACCEPTED},
        )


def archive_limits(settings: Settings) -> Limits:
    return Limits(settings.max_uncompressed_bytes, settings.max_archive_members, settings.max_compression_ratio)


def _live(query: Any) -> Any:
    return query.where(Dataset.deleted_at.is_(None))


def find_by_hash(session: Session, project_id: str, content_hash: str) -> Dataset | None:
    return session.scalar(
        _live(select(Dataset).where(Dataset.project_id == project_id, Dataset.content_hash == content_hash))
    )


def duplicate_message(dataset: Dataset) -> str:
    return f"identical content was already uploaded as dataset {dataset.id} ({dataset.name!r}); returning it"


def upload_key_for(dataset_id: str, fmt: str) -> str:
    return f"uploads/{dataset_id}/upload.{fmt}"


def dataset_prefix(dataset_id: str) -> str:
    return f"datasets/{dataset_id}"


def create_from_upload(
    session: Session, settings: Settings, store: ArtifactStore, principal: Principal, form: MultipartForm
) -> tuple[Dataset, bool]:
    """Returns (dataset, duplicate). Checks cheaply, stores the upload, enqueues validation after commit."""
    fields = parse_form(form)
    upload = form.file
    assert upload is not None
    if upload.size == 0:
        raise BadRequest("the uploaded file is empty")
    fmt = sniff_format(upload)
    check_format(fields.task, fmt)
    existing = find_by_hash(session, principal.project_id, upload.sha256)
    if existing is not None:
        return existing, True

    if fields.task == "image_classification":
        inspect_archive(upload.path, fmt, archive_limits(settings))
    else:
        check_columns(upload.path, fmt, fields.text_column, fields.label_column)

    is_text = fields.task == "text_classification"
    dataset = Dataset(
        project_id=principal.project_id,
        name=fields.name,
        description=fields.description,
        task=fields.task,
        format=fmt,
        content_hash=upload.sha256,
        size_bytes=upload.size,
        state="validating",
        text_column=fields.text_column if is_text else None,
        label_column=fields.label_column if is_text else None,
        validation_requested_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(dataset)
            session.flush()
    except IntegrityError:  # the same content is being uploaded concurrently
        existing = find_by_hash(session, principal.project_id, upload.sha256)
        if existing is None:
            raise
        return existing, True
    dataset.upload_key = upload_key_for(dataset.id, fmt)
    store.put_file(dataset.upload_key, upload.path, move=True)
    upload_key, dataset_id = dataset.upload_key, dataset.id
    after_rollback(session, lambda: store.delete(upload_key))
    after_commit(session, lambda: enqueue_validation(settings, dataset_id))
    session.flush()
    return dataset, False


def get_dataset(session: Session, principal: Principal, dataset_id: str, *, share_lock: bool = False) -> Dataset:
    """The project's dataset. ``share_lock`` holds it (FOR SHARE) until commit, so a concurrent delete,
    which locks the row FOR UPDATE before checking for jobs, cannot slip in between."""
    dataset = session.get(Dataset, dataset_id, with_for_update={"read": True} if share_lock else None)
    return check_dataset(dataset, principal, dataset_id)


def check_dataset(dataset: Dataset | None, principal: Principal, dataset_id: str) -> Dataset:
    """``dataset`` if it is a live dataset of the principal's project, else ``NotFound``."""
    if dataset is None or dataset.project_id != principal.project_id:
        raise NotFound(f"dataset {dataset_id} not found")
    if dataset.deleted_at is not None:
        raise NotFound(f"dataset {dataset_id} was deleted at {dataset.deleted_at.isoformat()}")
    return dataset


def datasets_for_jobs(session: Session, dataset_ids: set[str]) -> dict[str, Dataset]:
    """The datasets jobs are about to be created on, by id, each held FOR SHARE until commit (as
    ``get_dataset(share_lock=True)``); unknown ids are absent. Check each with ``check_dataset``."""
    if not dataset_ids:
        return {}
    query = select(Dataset).where(Dataset.id.in_(sorted(dataset_ids))).with_for_update(read=True)
    return {dataset.id: dataset for dataset in session.scalars(query)}


def list_datasets(
    session: Session, principal: Principal, *, limit: int, offset: int, task: str | None, state: str | None
) -> tuple[list[Dataset], int]:
    query = _live(select(Dataset).where(Dataset.project_id == principal.project_id))
    if task:
        query = query.where(Dataset.task == task)
    if state:
        query = query.where(Dataset.state == state)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Dataset.created_at.desc(), Dataset.id).limit(limit).offset(offset)).all()
    return list(rows), total


def delete_dataset(session: Session, store: ArtifactStore, principal: Principal, dataset_id: str) -> None:
    """Soft delete: the files go, the row stays (jobs and model versions keep their lineage)."""
    get_dataset(session, principal, dataset_id)
    dataset = session.get(Dataset, dataset_id, with_for_update=True, populate_existing=True)
    assert dataset is not None
    active = session.scalars(
        select(Job.id).where(Job.dataset_id == dataset_id, Job.state.in_(ACTIVE_JOB_STATES)).limit(20)
    ).all()
    if active:
        raise Conflict(
            f"dataset {dataset_id} is used by {len(active)} queued or running job(s): {', '.join(active)}; "
            "cancel them or wait for them to finish",
            extra={"jobs": list(active)},
        )
    dataset.deleted_at = utcnow()
    keys = [dataset_prefix(dataset_id)] + ([dataset.upload_key] if dataset.upload_key else [])
    dataset.upload_key = None
    session.flush()

    def _remove_files() -> None:
        for key in keys:
            store.delete(key)

    after_commit(session, _remove_files)


def requeue_stale_validations(session: Session, settings: Settings) -> list[str]:
    """Re-send validations whose message may be lost; give up (invalid) after the attempt limit.

    A dataset still ``validating`` is re-sent when nobody claimed it within
    ``validation_requeue_after_s`` of the last send, or when its claim is older than
    ``validation_stale_after_s`` (the worker died). Duplicate messages are harmless: a worker
    claims a dataset atomically and drops a message for one already claimed or finished.
    """
    now = utcnow()
    unclaimed_before = now - timedelta(seconds=settings.validation_requeue_after_s)
    stale_before = now - timedelta(seconds=settings.validation_stale_after_s)
    rows = session.scalars(
        _live(select(Dataset).where(Dataset.state == "validating"))
        .where(
            or_(
                Dataset.validation_started_at.is_(None) & (Dataset.validation_requested_at < unclaimed_before),
                Dataset.validation_started_at < stale_before,
            )
        )
        .with_for_update(skip_locked=True)
        .limit(500)
    ).all()
    requeued: list[str] = []
    for dataset in rows:
        if dataset.validation_attempts >= settings.validation_max_attempts:
            dataset.state = "invalid"
            dataset.error = f"validation did not complete after {dataset.validation_attempts} attempts"
            dataset.validated_at = now
            continue
        dataset.validation_requested_at = now
        dataset.validation_started_at = None
        requeued.append(dataset.id)
    session.flush()
    for dataset_id in requeued:
        after_commit(session, lambda d=dataset_id: enqueue_validation(settings, d))  # type: ignore[misc]
    return requeued
