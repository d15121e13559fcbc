"""Validating a CSV or JSONL text dataset, streaming it row by row.

``read_columns`` is the cheap check the upload request runs (the header, or the first JSON
object). ``validate_text_file`` reads every row: a UTF-8 byte-order mark is accepted and noted,
rows with undecodable bytes, empty text or empty label, and malformed rows are listed by line
and left out of the cleaned copy (UTF-8, no BOM, the two chosen columns) that gets stored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.errors import BadRequest
from app.validation.report import Outcome, balance_warnings, class_balance, listing, summary

BOM = b"\xef\xbb\xbf"
HEADER_LIMIT = 1024 * 1024
_SURROGATE = re.compile("[\udc80-\udcff]")
csv.field_size_limit(16 * 1024 * 1024)


def data_filename(fmt: str) -> str:
    return "data.jsonl" if fmt == "jsonl" else "data.csv"


def _open_text(path: Path) -> io.TextIOWrapper:
    # utf-8-sig drops a leading BOM; surrogateescape keeps bad bytes visible as lone surrogates.
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")  # noqa: SIM115


def read_columns(path: Path, fmt: str) -> list[str]:
    """The column names, from the CSV header or the first JSONL object. Raises BadRequest."""
    with _open_text(path) as f:
        if fmt == "csv":
            line = f.readline(HEADER_LIMIT)
            if not line.strip():
                raise BadRequest("the CSV file has no header row")
            header = next(csv.reader([line]))
            return [h.strip() for h in header]
        for lineno, line in enumerate(iter(lambda: f.readline(HEADER_LIMIT), ""), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadRequest(f"line {lineno} of the JSONL file is not valid JSON: {exc.msg}") from exc
            if not isinstance(row, dict):
                raise BadRequest(f"line {lineno} of the JSONL file is not a JSON object")
            return list(row.keys())
    raise BadRequest("the JSONL file has no rows")


def check_columns(path: Path, fmt: str, text_column: str, label_column: str) -> None:
    columns = read_columns(path, fmt)
    for column, what in ((text_column, "text_column"), (label_column, "label_column")):
        if column not in columns:
            shown = ", ".join(repr(c) for c in columns[:50])
            raise BadRequest(
                f"{what} {column!r} is not a column of the file; its columns are: {shown}",
                extra={"columns": columns[:50]},
            )


def read_rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, row or None when the row is malformed)."""
    with _open_text(path) as f:
        if fmt == "csv":
            reader = csv.DictReader(f)
            if reader.fieldnames:
                reader.fieldnames = [name.strip() for name in reader.fieldnames]
            try:
                for row in reader:
                    yield reader.line_num, (None if None in row else row)
            except csv.Error:
                yield reader.line_num, None
            return
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                yield lineno, None
                continue
            yield lineno, row if isinstance(row, dict) else None


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return json.dumps(value)


def validate_text_file(src: Path, fmt: str, text_column: str, label_column: str, out_dir: Path) -> Outcome:
    with src.open("rb") as f:
        has_bom = f.read(3) == BOM
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / data_filename(fmt)
    empty: list[int] = []
    undecodable: list[int] = []
    malformed: list[int] = []
    labels: Counter[str] = Counter()
    chars: list[int] = []
    words: list[int] = []
    seen: dict[str, list[tuple[int, str]]] = defaultdict(list)
    rows = 0
    with out_path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out) if fmt == "csv" else None
        if writer is not None:
            writer.writerow([text_column, label_column])
        for lineno, row in read_rows(src, fmt):
            rows += 1
            if row is None or text_column not in row or label_column not in row:
                malformed.append(lineno)
                continue
            text, label = _as_text(row[text_column]), _as_text(row[label_column]).strip()
            if _SURROGATE.search(text) or _SURROGATE.search(label):
                undecodable.append(lineno)
                continue
            if not text.strip() or not label:
                empty.append(lineno)
                continue
            labels[label] += 1
            chars.append(len(text))
            words.append(len(text.split()))
            seen[hashlib.sha256(text.encode()).hexdigest()].append((lineno, label))
            if writer is not None:
                writer.writerow([text, label])
            else:
                out.write(json.dumps({text_column: text, label_column: label}, ensure_ascii=False) + "\n")

    duplicates = [[line for line, _ in entries] for entries in seen.values() if len(entries) > 1]
    conflicting = [[line for line, _ in entries] for entries in seen.values() if len({lb for _, lb in entries}) > 1]
    balance = class_balance(labels)
    warnings_ = balance_warnings(balance)
    for what, items in (("empty", empty), ("undecodable (not UTF-8)", undecodable), ("malformed", malformed)):
        if items:
            warnings_.append(f"{len(items)} {what} row(s) were skipped")
    if duplicates:
        warnings_.append(f"{len(duplicates)} text(s) appear more than once")
    if conflicting:
        warnings_.append(f"{len(conflicting)} duplicated text(s) carry different labels")
    usable = sorted(labels)
    invalid = None
    if len(usable) < 2:
        invalid = f"training needs at least 2 labels with non-empty text; found {len(usable)}"
    report: dict[str, Any] = {
        "kind": "text",
        "format": fmt,
        "text_column": text_column,
        "label_column": label_column,
        "utf8_bom": has_bom,
        "rows": rows,
        "usable_rows": sum(labels.values()),
        "empty_rows": listing(empty),
        "undecodable_rows": listing(undecodable),
        "malformed_rows": listing(malformed),
        "label_counts": dict(sorted(labels.items())),
        **balance,
        "length_chars": summary(chars),
        "length_words": summary(words),
        "duplicates": {"exact": listing(duplicates), "conflicting_labels": listing(conflicting)},
        "splits_source": "computed at training (stratified, seeded)",
        "warnings": warnings_,
    }
    return Outcome(report, usable, sum(labels.values()), invalid)
