"""Validating an unpacked image dataset: class folders, optionally under ``train/ val/ test/``.

Every file is opened: undecodable and truncated images, images over the pixel limit
(decompression bombs, never decoded) and non-image files are listed in the report and removed
from the tree that gets stored, so training only ever sees usable images. Exact duplicates are
found by content hash, within a split and across splits (leakage).
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from PIL import Image

from app.validation.report import Outcome, balance_warnings, class_balance, listing, summary

# The formats the training input pipeline decodes, and the split folder names it reads (kept in
# step with worker/training/data.py, which app/ may not import).
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
SPLIT_NAMES = ("train", "val", "test")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
ALL = "all"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _inspect_image(path: Path, max_pixels: int) -> tuple[str, dict[str, Any]]:
    """('ok', info) | ('too_large' | 'truncated' | 'undecodable', info)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > max_pixels:
                    return "too_large", {"pixels": width * height, "limit": max_pixels}
                fmt, mode = img.format or "", img.mode
                img.load()
        return "ok", {"width": width, "height": height, "mode": mode, "format": fmt}
    except Image.DecompressionBombError as exc:
        return "too_large", {"reason": str(exc), "limit": max_pixels}
    except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as exc:
        kind = "truncated" if "truncat" in str(exc).lower() else "undecodable"
        return kind, {"reason": str(exc) or exc.__class__.__name__}


def _layout(root: Path) -> tuple[str, dict[str, Path], list[Path]]:
    """('splits' | 'class_folders', {split: folder}, stray top-level entries).

    Split folders (``train``, ``Validation``, ...) are renamed to their canonical names."""
    top = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    split_dirs: dict[str, Path] = {}
    for p in top:
        split = SPLIT_ALIASES.get(p.name.lower())
        if p.is_dir() and split and split not in split_dirs:
            split_dirs[split] = p
    if split_dirs:
        stray = [p for p in top if p not in split_dirs.values()]
        for split, folder in list(split_dirs.items()):
            if folder.name != split:
                split_dirs[split] = folder.rename(root / split)
        return "splits", dict(sorted(split_dirs.items(), key=lambda kv: SPLIT_NAMES.index(kv[0]))), stray
    return "class_folders", {ALL: root}, [p for p in top if p.is_file()]


def _files_under(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def validate_image_tree(root: Path, max_pixels: int) -> Outcome:
    """Validate (and clean, in place) an unpacked image tree."""
    layout, splits, stray = _layout(root)
    skipped: list[str] = []
    bad: dict[str, list[dict[str, Any]]] = {"undecodable": [], "truncated": [], "too_large": []}
    counts: dict[str, Counter[str]] = {}
    by_hash: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    widths: list[int] = []
    heights: list[int] = []
    modes: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    manifest: list[dict[str, Any]] = []
    warnings_: list[str] = []

    for entry in stray:
        skipped.extend(str(f.relative_to(root).as_posix()) for f in _files_under(entry))
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    if layout == "splits" and stray:
        warnings_.append("only train/, val/ and test/ folders are read at the top level; other entries were skipped")

    for split, folder in splits.items():
        per_class: Counter[str] = Counter()
        for entry in sorted(folder.iterdir()):
            if entry.is_file():  # files beside the class folders have no label
                skipped.append(entry.relative_to(root).as_posix())
                entry.unlink()
                continue
            if entry.name.startswith("."):
                shutil.rmtree(entry)
                continue
            label = entry.name
            per_class[label] += 0
            for f in _files_under(entry):
                rel = f.relative_to(root).as_posix()
                if _hidden(f, root) or f.suffix.lower() not in IMAGE_EXTENSIONS:
                    skipped.append(rel)
                    f.unlink()
                    continue
                status, info = _inspect_image(f, max_pixels)
                if status != "ok":
                    bad[status].append({"path": rel, **info})
                    f.unlink()
                    continue
                per_class[label] += 1
                widths.append(info["width"])
                heights.append(info["height"])
                modes[info["mode"]] += 1
                formats[info["format"]] += 1
                by_hash[_sha256(f)].append((split, label, rel))
                manifest.append({"path": rel, "label": label, "split": split})
            if per_class[label] == 0:  # an empty class folder would become a class with no examples
                shutil.rmtree(entry)
        counts[split] = per_class

    within: list[dict[str, Any]] = []
    across: list[dict[str, Any]] = []
    conflicting: list[dict[str, Any]] = []
    for digest, entries in sorted(by_hash.items()):
        if len(entries) < 2:
            continue
        group = {"sha256": digest, "paths": [e[2] for e in entries]}
        split_counts = Counter(e[0] for e in entries)
        if len(split_counts) > 1:
            across.append({**group, "splits": sorted(split_counts)})
        if any(n > 1 for n in split_counts.values()):
            within.append(group)
        if len({e[1] for e in entries}) > 1:
            conflicting.append({**group, "labels": sorted({e[1] for e in entries})})

    totals: Counter[str] = Counter()
    for per_class in counts.values():
        totals.update(per_class)
    train_counts = counts.get("train", counts.get(ALL, Counter()))
    usable = sorted(label for label, n in train_counts.items() if n > 0)
    balance = class_balance({k: v for k, v in train_counts.items()})
    warnings_.extend(balance_warnings(balance))

    invalid: str | None = None
    if layout == "splits" and "train" not in splits:
        invalid = "the archive has val/ or test/ folders but no train/ folder"
    elif len(usable) < 2:
        where = "in train/" if layout == "splits" else ""
        invalid = f"training needs at least 2 classes with usable images {where}; found {len(usable)}".replace(
            "  ", " "
        )
    if layout == "splits":
        for split, per_class in counts.items():
            missing = sorted(label for label, n in per_class.items() if n > 0 and train_counts.get(label, 0) == 0)
            if split != "train" and missing:
                warnings_.append(f"classes in {split}/ with no training images: {', '.join(missing)}")
    for kind, items in bad.items():
        if items:
            warnings_.append(f"{len(items)} {kind.replace('_', ' ')} image(s) were skipped")
    if skipped:
        warnings_.append(f"{len(skipped)} non-image file(s) were skipped")
    if across:
        warnings_.append(f"{len(across)} image(s) appear in more than one split (train/test leakage)")
    if within:
        warnings_.append(f"{len(within)} image(s) are exact duplicates within a split")
    if conflicting:
        warnings_.append(f"{len(conflicting)} duplicated image(s) carry different labels")

    report: dict[str, Any] = {
        "kind": "images",
        "layout": layout,
        "splits_source": "upload" if layout == "splits" else "computed at training (stratified, seeded)",
        "class_counts": dict(sorted(totals.items())),
        "split_counts": {split: dict(sorted(c.items())) for split, c in counts.items()},
        "total_images": sum(totals.values()),
        "undecodable": listing(bad["undecodable"]),
        "truncated": listing(bad["truncated"]),
        "too_large": listing(bad["too_large"]),
        "skipped_files": listing(skipped),
        "duplicates": {
            "within_split": listing(within),
            "across_splits": listing(across),
            "conflicting_labels": listing(conflicting),
        },
        **balance,
        "image_stats": {
            "width": summary(widths),
            "height": summary(heights),
            "modes": dict(modes.most_common()),
            "formats": dict(formats.most_common()),
        },
        "warnings": warnings_,
    }
    return Outcome(report, usable, sum(totals.values()), invalid, manifest)
