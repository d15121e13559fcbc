"""Streaming an upload to a temporary file: hashed and size-limited as it arrives, never whole in memory."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fastapi import UploadFile

from app.errors import PayloadTooLarge

CHUNK = 1024 * 1024


@dataclass
class SpooledUpload:
    path: Path
    sha256: str
    size: int
    filename: str
    head: bytes

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


async def spool_upload(upload: UploadFile, tmp_dir: Path, max_bytes: int) -> SpooledUpload:
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, suffix=".upload")
    digest = hashlib.sha256()
    size = 0
    head = b""
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"upload exceeds the limit of {max_bytes} bytes (TL_MAX_UPLOAD_BYTES)")
                if len(head) < 512:
                    head += chunk[: 512 - len(head)]
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return SpooledUpload(Path(name), digest.hexdigest(), size, upload.filename or "", head)
