"""Safe unpacking of dataset archives (zip, tar, tar.gz).

Rejected: absolute paths, ``..`` components, symlinks and hard links, device files; bounded: total
uncompressed size, member count and compression ratio. Raises ``BadRequest`` naming the member.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from app.errors import BadRequest, PayloadTooLarge

IGNORED_PREFIXES = ("__MACOSX/",)
IGNORED_NAMES = (".DS_Store", "Thumbs.db")


def _safe_name(name: str) -> PurePosixPath:
    normalized = name.replace("\\", "/")
    path = PurePosixPath(normalized)
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        raise BadRequest(f"archive member {name!r} has an absolute path")
    if any(part == ".." for part in path.parts):
        raise BadRequest(f"archive member {name!r} escapes the archive with '..'")
    return path


def _skip(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES) or PurePosixPath(name).name in IGNORED_NAMES


class Limits:
    def __init__(self, max_bytes: int, max_members: int, max_ratio: float) -> None:
        self.max_bytes = max_bytes
        self.max_members = max_members
        self.max_ratio = max_ratio


def _check_totals(total: int, members: int, compressed: int, limits: Limits) -> None:
    if members > limits.max_members:
        raise PayloadTooLarge(f"archive has {members} members; the limit is {limits.max_members}")
    if total > limits.max_bytes:
        raise PayloadTooLarge(f"archive unpacks to {total} bytes; the limit is {limits.max_bytes}")
    if compressed > 0 and total / compressed > limits.max_ratio and total > 10 * 1024 * 1024:
        raise PayloadTooLarge(f"archive compression ratio {total / compressed:.0f}:1 exceeds {limits.max_ratio:.0f}:1")


def _copy_bounded(src, dest: Path, budget: list[int]) -> None:  # type: ignore[no-untyped-def]
    """Copy a member stream, counting real bytes (headers can lie about sizes)."""
    with dest.open("wb") as out:
        while chunk := src.read(1024 * 1024):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise PayloadTooLarge("archive unpacks to more bytes than its headers declare or the limit")
            out.write(chunk)


def extract_zip(archive: Path, dest: Path, limits: Limits) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = [i for i in zf.infolist() if not _skip(i.filename)]
        total = sum(i.file_size for i in infos)
        _check_totals(total, len(infos), archive.stat().st_size, limits)
        budget = [limits.max_bytes]
        for info in infos:
            rel = _safe_name(info.filename)
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:
                raise BadRequest(f"archive member {info.filename!r} is a symlink; links are not accepted")
            if mode not in (0, 0o100000, 0o040000):
                raise BadRequest(f"archive member {info.filename!r} is not a regular file")
            target = dest / rel
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src:
                _copy_bounded(src, target, budget)


def extract_tar(archive: Path, dest: Path, limits: Limits) -> None:
    with tarfile.open(archive, "r:*") as tf:
        members = [m for m in tf.getmembers() if not _skip(m.name)]
        total = sum(m.size for m in members if m.isfile())
        _check_totals(total, len(members), archive.stat().st_size, limits)
        budget = [limits.max_bytes]
        for member in members:
            rel = _safe_name(member.name)
            if member.issym() or member.islnk():
                raise BadRequest(f"archive member {member.name!r} is a link; links are not accepted")
            if member.isdir():
                (dest / rel).mkdir(parents=True, exist_ok=True)
                continue
            if not member.isfile():
                raise BadRequest(f"archive member {member.name!r} is a device or special file")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            assert src is not None
            with src:
                _copy_bounded(src, target, budget)


def extract(archive: Path, kind: str, dest: Path, limits: Limits) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "zip":
            extract_zip(archive, dest, limits)
        else:
            extract_tar(archive, dest, limits)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise BadRequest(f"the archive is corrupt or truncated: {exc}") from exc
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def collapse_single_root(root: Path) -> Path:
    """Archives often wrap everything in one top folder (``mydata/cats/...``): descend into it."""
    current = root
    while True:
        entries = [p for p in current.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].name in ("train", "val", "test"):
            return current
        sub = entries[0]
        if any(p.is_file() for p in sub.iterdir()):
            return current
        current = sub
