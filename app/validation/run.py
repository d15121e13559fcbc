"""From a stored upload to a validated, cleaned tree of files and its report."""

from __future__ import annotations

from pathlib import Path

from app.archives import Limits, collapse_single_root, extract
from app.errors import ServiceError
from app.validation.images import validate_image_tree
from app.validation.report import Outcome
from app.validation.text import validate_text_file


def validate_dataset_files(
    upload: Path,
    *,
    task: str,
    fmt: str,
    work_dir: Path,
    limits: Limits,
    max_pixels: int,
    text_column: str | None = None,
    label_column: str | None = None,
) -> tuple[Outcome, Path | None]:
    """Returns the outcome and the folder to store (None when nothing usable could be unpacked)."""
    files = work_dir / "files"
    if task == "text_classification":
        outcome = validate_text_file(upload, fmt, text_column or "text", label_column or "label", files)
        return outcome, files
    try:
        extract(upload, fmt, work_dir / "unpacked", limits)
    except ServiceError as exc:  # the request checked the headers; this is what the bytes really held
        report = {"kind": "images", "warnings": [], "unpack_error": exc.detail}
        return Outcome(report, [], 0, f"the archive could not be unpacked: {exc.detail}"), None
    root = collapse_single_root(work_dir / "unpacked")
    outcome = validate_image_tree(root, max_pixels)
    root.rename(files)
    return outcome, files
