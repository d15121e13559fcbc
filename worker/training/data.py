"""Reading datasets: image class-folder trees and text CSV/JSONL files, item ids and splits.

Item ids are stable strings: the file path relative to the data root (images) or the row index (text).
The tf.data pipelines live in ``pipelines.py``; this module needs no TensorFlow.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from worker.training.errors import InvalidSpecError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
SPLITS = ("train", "val", "test")


@dataclass
class DataSource:
    """Where the data is. ``splits`` (item ids per split) reproduces an earlier job's split exactly."""

    kind: Literal["image_folders", "text_file"]
    root: Path
    text_column: str = "text"
    label_column: str = "label"
    splits: dict[str, list[str]] | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)


@dataclass
class Examples:
    """All items of a dataset. ``values`` are absolute file paths (images) or texts; ``labels`` may hold
    None for unlabelled text rows (zero-shot). ``folder_split`` is the split a top folder implied."""

    ids: list[str]
    values: list[str]
    labels: list[str | None]
    folder_split: dict[str, str] = field(default_factory=dict)

    def label_names(self) -> list[str]:
        return sorted({lab for lab in self.labels if lab is not None})


def _class_root(root: Path) -> Path:
    """Descend through a lone wrapper folder (a zip that holds one top directory)."""
    current = root
    for _ in range(3):
        entries = [p for p in current.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        dirs = [p for p in entries if p.is_dir()]
        files = [p for p in entries if p.is_file()]
        if len(dirs) == 1 and not files and dirs[0].name.lower() not in SPLIT_FOLDERS:
            inner = [p for p in dirs[0].iterdir() if p.is_dir() and not p.name.startswith(".")]
            if inner:
                current = dirs[0]
                continue
        break
    return current


def _scan_classes(folder: Path, root: Path, split: str | None, out: Examples) -> None:
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(class_dir.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."):
                item_id = f.relative_to(root).as_posix()
                out.ids.append(item_id)
                out.values.append(str(f))
                out.labels.append(class_dir.name)
                if split:
                    out.folder_split[item_id] = split


def scan_image_folders(root: Path) -> Examples:
    if not root.is_dir():
        raise InvalidSpecError(f"image data root {root} is not a directory")
    top = _class_root(root)
    out = Examples([], [], [])
    split_dirs = {
        p: SPLIT_FOLDERS[p.name.lower()] for p in top.iterdir() if p.is_dir() and p.name.lower() in SPLIT_FOLDERS
    }
    if split_dirs and "train" in split_dirs.values():
        for folder, split in sorted(split_dirs.items(), key=lambda kv: SPLITS.index(kv[1])):
            _scan_classes(folder, root, split, out)
    else:
        _scan_classes(top, root, None, out)
    if not out.ids:
        raise InvalidSpecError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in class folders under {root}")
    return out


def read_text_file(path: Path, text_column: str, label_column: str) -> Examples:
    if not path.is_file():
        raise InvalidSpecError(f"text data file {path} does not exist")
    rows: list[dict[str, object]]
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = []
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise InvalidSpecError(f"{path.name} line {n} is not valid JSON: {exc}") from exc
    elif suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
    else:
        raise InvalidSpecError(f"text data must be .csv, .tsv or .jsonl, got {path.name}")
    if not rows:
        raise InvalidSpecError(f"{path.name} holds no rows")
    if text_column not in rows[0]:
        raise InvalidSpecError(f"{path.name} has no column {text_column!r} (columns: {sorted(rows[0])})")
    out = Examples([], [], [])
    for i, row in enumerate(rows):
        label = row.get(label_column)
        out.ids.append(str(i))
        out.values.append("" if row.get(text_column) is None else str(row[text_column]))
        out.labels.append(None if label is None or str(label) == "" else str(label))
    return out


def load_examples(data: DataSource) -> Examples:
    if data.kind == "image_folders":
        return scan_image_folders(data.root)
    if data.kind == "text_file":
        return read_text_file(data.root, data.text_column, data.label_column)
    raise InvalidSpecError(f"unknown data kind {data.kind!r}")


def _split_counts(n: int, val_frac: float, test_frac: float) -> tuple[int, int]:
    n_test = round(n * test_frac)
    n_val = round(n * val_frac)
    if n >= 3:
        if test_frac > 0:
            n_test = max(1, n_test)
        if val_frac > 0:
            n_val = max(1, n_val)
    while n_test + n_val > n - 1 and (n_test or n_val):
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def stratified_split(ids: list[str], labels: list[str], fractions: dict[str, float], seed: int) -> dict[str, list[str]]:
    """Split ids per class with a seeded shuffle; ``fractions`` holds "val" and "test" (train is the rest).
    Every class keeps at least one training item."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for item_id, lab in zip(ids, labels, strict=True):
        by_class[lab].append(item_id)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    rng = random.Random(seed)
    for lab in sorted(by_class):
        members = sorted(by_class[lab])
        rng.shuffle(members)
        n_val, n_test = _split_counts(len(members), fractions.get("val", 0.0), fractions.get("test", 0.0))
        out["test"].extend(members[:n_test])
        out["val"].extend(members[n_test : n_test + n_val])
        out["train"].extend(members[n_test + n_val :])
    return {s: sorted(v) for s, v in out.items()}


def make_splits(
    ex: Examples, val_frac: float, test_frac: float, seed: int, given: dict[str, list[str]] | None = None
) -> dict[str, list[str]]:
    """The split of labelled items: the given one, the one top folders imply, or a stratified seeded one."""
    labelled = [(i, lab) for i, lab in zip(ex.ids, ex.labels, strict=True) if lab is not None]
    if given is not None:
        known = set(ex.ids)
        out = {s: list(given.get(s, [])) for s in SPLITS}
        missing = [i for s in SPLITS for i in out[s] if i not in known]
        if missing:
            raise InvalidSpecError(
                f"{len(missing)} item ids of the given splits are not in the data, e.g. {missing[:3]}"
            )
        return out
    if ex.folder_split:
        out = {s: [] for s in SPLITS}
        for item_id, _lab in labelled:
            out[ex.folder_split.get(item_id, "train")].append(item_id)
        lab_of = dict(labelled)
        carve = {}
        if not out["test"] and test_frac > 0:
            carve["test"] = test_frac
        if not out["val"] and val_frac > 0:
            carve["val"] = val_frac
        if carve:
            train = out["train"]
            sub = stratified_split(train, [lab_of[i] for i in train], carve, seed)
            out["train"] = sub["train"]
            for s in carve:
                out[s] = sub[s]
        return {s: sorted(v) for s, v in out.items()}
    return stratified_split(
        [i for i, _ in labelled], [lab for _, lab in labelled], {"val": val_frac, "test": test_frac}, seed
    )
