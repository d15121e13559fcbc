"""Safe unpacking of dataset archives (zip, tar, tar.gz).

Rejected (400, naming the member): absolute paths, ``..`` components, symlinks and hard links,
device files, FIFOs, encrypted members. Bounded (413): total uncompressed size, member count and
compression ratio. ``inspect_archive`` checks all of this from the headers without writing
anything (the upload request uses it, so a bad archive is refused before anything is stored);
``extract`` checks again and also counts the bytes really written (headers can lie).
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from app.errors import BadRequest, PayloadTooLarge

IGNORED_PREFIXES = ("__MACOSX/",)
IGNORED_NAMES = (".DS_Store", "Thumbs.db")
# Below this many unpacked bytes the compression ratio does not matter (a small file of zeros is harmless).
RATIO_FLOOR_BYTES = 10 * 1024 * 1024
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLIT_FOLDER_NAMES = ("train", "training", "val", "valid", "validation", "test", "testing")
S_IFMT, S_IFREG, S_IFDIR, S_IFLNK = 0o170000, 0o100000, 0o040000, 0o120000


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_members: int
    max_ratio: float


@dataclass(frozen=True)
class ArchiveSummary:
    members: int
    files: int
    total_bytes: int


def _safe_name(name: str) -> PurePosixPath:
    normalized = name.replace("\\", "/")
    if "\x00" in normalized:
        raise BadRequest(f"archive member {name!r} has a NUL byte in its name")
    path = PurePosixPath(normalized)
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        raise BadRequest(f"archive member {name!r} has an absolute path")
    if any(part == ".." for part in path.parts):
        raise BadRequest(f"archive member {name!r} escapes the archive with '..'")
    return path


def _skip(name: str) -> bool:
    return name.startswith(IGNORED_PREFIXES) or PurePosixPath(name).name in IGNORED_NAMES


def _check_count(members: int, limits: Limits) -> None:
    if members > limits.max_members:
        raise PayloadTooLarge(
            f"archive has more than {limits.max_members} members (TL_MAX_ARCHIVE_MEMBERS)",
            extra={"limit": limits.max_members},
        )


def _check_size(total: int, compressed: int, limits: Limits) -> None:
    if total > limits.max_bytes:
        raise PayloadTooLarge(
            f"archive unpacks to more than {limits.max_bytes} bytes (TL_MAX_UNCOMPRESSED_BYTES)",
            extra={"limit": limits.max_bytes},
        )
    if compressed > 0 and total > RATIO_FLOOR_BYTES and total / compressed > limits.max_ratio:
        raise PayloadTooLarge(
            f"archive compression ratio {total / compressed:.0f}:1 exceeds {limits.max_ratio:.0f}:1 "
            "(TL_MAX_COMPRESSION_RATIO); this looks like a zip bomb",
            extra={"limit": limits.max_ratio},
        )


def _check_zip_member(info: zipfile.ZipInfo) -> None:
    _safe_name(info.filename)
    mode = (info.external_attr >> 16) & S_IFMT
    if mode == S_IFLNK:
        raise BadRequest(f"archive member {info.filename!r} is a symlink; links are not accepted")
    if mode not in (0, S_IFREG, S_IFDIR):
        raise BadRequest(f"archive member {info.filename!r} is a device or special file")
    if info.flag_bits & 0x1:
        raise BadRequest(f"archive member {info.filename!r} is encrypted; encrypted archives are not accepted")


def _check_tar_member(member: tarfile.TarInfo) -> None:
    _safe_name(member.name)
    if member.issym() or member.islnk():
        raise BadRequest(f"archive member {member.name!r} is a link; links are not accepted")
    if not (member.isfile() or member.isdir()):
        raise BadRequest(f"archive member {member.name!r} is a device or special file")


def _corrupt(exc: Exception) -> BadRequest:
    return BadRequest(f"the archive is corrupt or truncated: {exc}")


def _inspect_zip(archive: Path, limits: Limits) -> ArchiveSummary:
    with zipfile.ZipFile(archive) as zf:
        infos = [i for i in zf.infolist() if not _skip(i.filename)]
        _check_count(len(infos), limits)
        for info in infos:
            _check_zip_member(info)
        total = sum(i.file_size for i in infos)
        _check_size(total, archive.stat().st_size, limits)
        return ArchiveSummary(len(infos), sum(1 for i in infos if not i.is_dir()), total)


def _inspect_tar(archive: Path, limits: Limits) -> ArchiveSummary:
    compressed = archive.stat().st_size
    members = files = total = 0
    # Stream mode reads headers in order; the running totals stop a bomb long before its end.
    with tarfile.open(archive, "r|*") as tf:
        for member in tf:
            if _skip(member.name):
                continue
            members += 1
            _check_count(members, limits)
            _check_tar_member(member)
            if member.isfile():
                files += 1
                total += member.size
                _check_size(total, compressed, limits)
    return ArchiveSummary(members, files, total)


def inspect_archive(archive: Path, kind: str, limits: Limits) -> ArchiveSummary:
    """Check every member and the totals from the headers; writes nothing."""
    try:
        summary = _inspect_zip(archive, limits) if kind == "zip" else _inspect_tar(archive, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise _corrupt(exc) from exc
    if summary.files == 0:
        raise BadRequest("the archive has no files")
    return summary


def _copy_bounded(src: IO[bytes], dest: Path, budget: list[int]) -> None:
    """Copy a member stream, counting real bytes (headers can lie about sizes)."""
    with dest.open("wb") as out:
        while chunk := src.read(1024 * 1024):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise PayloadTooLarge("archive unpacks to more bytes than its headers declare or the limit")
            out.write(chunk)


def extract_zip(archive: Path, dest: Path, limits: Limits) -> None:
    _inspect_zip(archive, limits)
    with zipfile.ZipFile(archive) as zf:
        budget = [limits.max_bytes]
        for info in zf.infolist():
            if _skip(info.filename):
                continue
            target = dest / _safe_name(info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src:
                _copy_bounded(src, target, budget)


def extract_tar(archive: Path, dest: Path, limits: Limits) -> None:
    compressed = archive.stat().st_size
    budget = [limits.max_bytes]
    members = total = 0
    with tarfile.open(archive, "r|*") as tf:
        for member in tf:
            if _skip(member.name):
                continue
            members += 1
            _check_count(members, limits)
            _check_tar_member(member)
            target = dest / _safe_name(member.name)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            total += member.size
            _check_size(total, compressed, limits)
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
    except (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise _corrupt(exc) from exc
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def collapse_single_root(root: Path) -> Path:
    """Archives often wrap everything in one top folder (``mydata/cats/...``): descend into it."""
    current = root
    while True:
        entries = [p for p in current.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].name.lower() in SPLIT_FOLDER_NAMES:
            return current
        sub = entries[0]
        inside = list(sub.iterdir())
        # A folder holding images is a class; one holding only folders (and maybe a README) is a wrapper.
        if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in inside) or not any(
            p.is_dir() for p in inside
        ):
            return current
        current = sub
