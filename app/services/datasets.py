"""Dataset business rules: create from an upload, look up, list. Services flush, never commit."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.archives import Limits, collapse_single_root, extract
from app.auth import Principal
from app.config import Settings
from app.errors import BadRequest, NotFound, UnsupportedMediaType
from app.storage import ArtifactStore
from app.tables import TASKS, Dataset
from app.uploads import SpooledUpload

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
ACCEPTED = {
    "image_classification": "zip, tar, tar.gz (class folders of images)",
    "text_classification": "csv, jsonl (a text and a label column)",
}
SPLIT_NAMES = ("train", "val", "test")


def sniff_format(upload: SpooledUpload) -> str:
    name = upload.filename.lower()
    head = upload.head
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if name.endswith(".jsonl") or name.endswith(".ndjson"):
        return "jsonl"
    if name.endswith(".csv") or name.endswith(".tsv"):
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
            f"a {task} dataset must be one of: {ACCEPTED[task]}; the upload looks like {fmt}",
            extra={"accepted": ACCEPTED[task]},
        )


def find_by_hash(session: Session, project_id: str, content_hash: str) -> Dataset | None:
    return session.scalar(select(Dataset).where(Dataset.project_id == project_id, Dataset.content_hash == content_hash))


def _image_class_counts(root: Path) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Per split, per class image counts; also the list of skipped non-image files."""
    splits = [d for d in root.iterdir() if d.is_dir() and d.name in SPLIT_NAMES]
    split_dirs = {d.name: d for d in splits} if splits else {"all": root}
    counts: dict[str, dict[str, int]] = {}
    skipped: list[str] = []
    for split, folder in split_dirs.items():
        per_class: dict[str, int] = {}
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            n = 0
            for f in class_dir.rglob("*"):
                if f.is_file():
                    if f.suffix.lower() in IMAGE_EXTENSIONS:
                        n += 1
                    else:
                        skipped.append(str(f.relative_to(root)))
            per_class[class_dir.name] = n
        for f in folder.iterdir():
            if f.is_file():
                skipped.append(str(f.relative_to(root)))
        counts[split] = per_class
    return counts, skipped


def _read_text_rows(path: Path, fmt: str) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the text file is not valid UTF-8 (byte offset {exc.start})") from exc
    if fmt == "csv":
        dialect = "excel-tab" if path.suffix == ".tsv" else "excel"
        return list(csv.DictReader(io.StringIO(text), dialect=dialect))
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"line {lineno} of the JSONL file is not valid JSON: {exc.msg}") from exc
        if not isinstance(row, dict):
            raise BadRequest(f"line {lineno} of the JSONL file is not a JSON object")
        rows.append(row)
    return rows


def validate_images(root: Path) -> tuple[dict[str, Any], list[str], int]:
    counts, skipped = _image_class_counts(root)
    totals: Counter[str] = Counter()
    for per_class in counts.values():
        totals.update(per_class)
    labels = sorted(label for label, n in totals.items() if n > 0)
    report = {"class_counts": counts, "skipped_files": skipped, "total_images": sum(totals.values())}
    return report, labels, sum(totals.values())


def validate_text(path: Path, fmt: str, text_column: str, label_column: str) -> tuple[dict[str, Any], list[str], int]:
    rows = _read_text_rows(path, fmt)
    if not rows:
        raise BadRequest("the text file has no rows")
    columns = set(rows[0].keys())
    for col, what in ((text_column, "text_column"), (label_column, "label_column")):
        if col not in columns:
            raise BadRequest(f"{what} {col!r} is not a column of the file; columns: {', '.join(sorted(columns))}")
    labels = Counter(str(r.get(label_column, "")).strip() for r in rows if str(r.get(text_column) or "").strip())
    labels.pop("", None)
    report = {"label_counts": dict(labels), "rows": len(rows)}
    return report, sorted(labels), sum(labels.values())


def create_from_upload(
    session: Session,
    settings: Settings,
    store: ArtifactStore,
    principal: Principal,
    upload: SpooledUpload,
    *,
    name: str,
    task: str,
    description: str,
    text_column: str,
    label_column: str,
) -> tuple[Dataset, bool]:
    """Returns (dataset, duplicate). Files are unpacked in a temporary place and moved atomically."""
    fmt = sniff_format(upload)
    check_format(task, fmt)
    existing = find_by_hash(session, principal.project_id, upload.sha256)
    if existing is not None:
        return existing, True

    dataset = Dataset(
        project_id=principal.project_id,
        name=name,
        description=description,
        task=task,
        format=fmt,
        content_hash=upload.sha256,
        size_bytes=upload.size,
        state="validating",
        text_column=text_column if task == "text_classification" else None,
        label_column=label_column if task == "text_classification" else None,
    )
    session.add(dataset)
    session.flush()
    key = f"datasets/{dataset.id}"
    work = Path(tempfile.mkdtemp(dir=settings.data_dir / "tmp"))
    try:
        if task == "image_classification":
            limits = Limits(
                settings.max_uncompressed_bytes, settings.max_archive_members, settings.max_compression_ratio
            )
            extract(upload.path, fmt, work / "files", limits)
            root = collapse_single_root(work / "files")
            report, labels, n = validate_images(root)
            store.put_tree(key, root)
        else:
            report, labels, n = validate_text(upload.path, fmt, text_column, label_column)
            suffix = ".jsonl" if fmt == "jsonl" else ".csv"
            store.put_file(f"{key}/data{suffix}", upload.path)
        usable = [label for label in labels]
        if len(usable) < 2:
            dataset.state = "invalid"
            dataset.error = f"training needs at least 2 classes with examples; found {len(usable)}"
        else:
            dataset.state = "ready"
        dataset.storage_key = key
        dataset.labels = labels
        dataset.num_examples = n
        dataset.report = report
        session.flush()
    except BaseException:
        store.delete(key)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dataset, False


def get_dataset(session: Session, principal: Principal, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.project_id != principal.project_id:
        raise NotFound(f"dataset {dataset_id} not found")
    return dataset


def list_datasets(
    session: Session, principal: Principal, *, limit: int, offset: int, task: str | None, state: str | None
) -> tuple[list[Dataset], int]:
    query = select(Dataset).where(Dataset.project_id == principal.project_id)
    if task:
        query = query.where(Dataset.task == task)
    if state:
        query = query.where(Dataset.state == state)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Dataset.created_at.desc()).limit(limit).offset(offset)).all()
    return list(rows), total
