"""Streaming a multipart upload straight to one temporary file: hashed and size-limited as it arrives.

The request body is parsed as it streams in (``python_multipart``'s push parser), so the file
part is written once, to its final temporary place, and never held in memory. Starlette's own
form parsing is not used: it would first copy the whole file into a spooled temporary file.
Small form fields are kept in memory up to ``MAX_FIELD_BYTES`` each.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

HEAD_BYTES = 512
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32
# Room for the multipart framing and the small form fields around the file itself.
BODY_SLACK_BYTES = MAX_FIELDS * MAX_FIELD_BYTES


@dataclass
class SpooledUpload:
    path: Path
    sha256: str
    size: int
    filename: str
    head: bytes

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class MultipartForm:
    fields: dict[str, str]
    file: SpooledUpload | None


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"upload exceeds the limit of {max_bytes} bytes (TL_MAX_UPLOAD_BYTES)", extra={"limit": max_bytes}
    )


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    header_name: bytes = b""
    header_value: bytes = b""
    disposition: bytes = b""
    data: bytearray = field(default_factory=bytearray)


class _Receiver:
    """Push-parser callbacks: the file part goes to disk (hashed), other parts to small buffers."""

    def __init__(self, tmp_dir: Path, max_bytes: int, file_field: str) -> None:
        self.tmp_dir = tmp_dir
        self.max_bytes = max_bytes
        self.file_field = file_field
        self.fields: dict[str, str] = {}
        self.part = _Part()
        self.out: BinaryIO | None = None
        self.out_path: Path | None = None
        self.digest = hashlib.sha256()
        self.size = 0
        self.head = b""
        self.filename = ""
        self.files_seen = 0

    # --- headers
    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.part.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.part.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.part.header_name.lower() == b"content-disposition":
            self.part.disposition = self.part.header_value
        self.part.header_name = self.part.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.disposition)
        name = options.get(b"name")
        if name is None:
            raise BadRequest("a multipart part has no name in its Content-Disposition header")
        self.part.name = name.decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        self.part.filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
        if self.part.name == self.file_field:
            self.files_seen += 1
            if self.files_seen > 1:
                raise BadRequest(f"send exactly one '{self.file_field}' part")
            fd, name_ = tempfile.mkstemp(dir=self.tmp_dir, suffix=".upload")
            self.out = os.fdopen(fd, "wb")
            self.out_path = Path(name_)
            self.filename = self.part.filename or ""
        elif len(self.fields) >= MAX_FIELDS:
            raise BadRequest(f"too many form fields (at most {MAX_FIELDS})")

    # --- data
    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.name == self.file_field:
            chunk = data[start:end]
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise _too_large(self.max_bytes)
            if len(self.head) < HEAD_BYTES:
                self.head += chunk[: HEAD_BYTES - len(self.head)]
            self.digest.update(chunk)
            assert self.out is not None
            self.out.write(chunk)
            return
        self.part.data += data[start:end]
        if len(self.part.data) > MAX_FIELD_BYTES:
            raise BadRequest(f"form field {self.part.name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self.part.name == self.file_field:
            return
        try:
            self.fields[self.part.name] = self.part.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"form field {self.part.name!r} is not valid UTF-8") from exc

    def finish(self) -> SpooledUpload | None:
        if self.out is None or self.out_path is None:
            return None
        out = self.out
        self.out = None
        out.flush()
        os.fsync(out.fileno())
        out.close()
        return SpooledUpload(self.out_path, self.digest.hexdigest(), self.size, self.filename, self.head)

    def abort(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
        if self.out_path is not None:
            self.out_path.unlink(missing_ok=True)


async def receive_multipart(request: Request, tmp_dir: Path, max_bytes: int, file_field: str = "file") -> MultipartForm:
    """Parse a ``multipart/form-data`` body as it streams in; the file part lands in ``tmp_dir``."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise UnsupportedMediaType(
            "send the upload as multipart/form-data with a 'file' part",
            extra={"accepted": ["multipart/form-data"]},
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + BODY_SLACK_BYTES:
        raise _too_large(max_bytes)  # refused before a byte is read
    tmp_dir.mkdir(parents=True, exist_ok=True)
    receiver = _Receiver(tmp_dir, max_bytes, file_field)
    parser = MultipartParser(
        params[b"boundary"],
        {  # type: ignore[arg-type]
            "on_part_begin": receiver.on_part_begin,
            "on_part_data": receiver.on_part_data,
            "on_part_end": receiver.on_part_end,
            "on_header_field": receiver.on_header_field,
            "on_header_value": receiver.on_header_value,
            "on_header_end": receiver.on_header_end,
            "on_headers_finished": receiver.on_headers_finished,
        },
    )
    body_bytes = 0
    try:
        async for chunk in request.stream():
            body_bytes += len(chunk)
            if body_bytes > max_bytes + BODY_SLACK_BYTES:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
        return MultipartForm(receiver.fields, receiver.finish())
    except MultipartParseError as exc:
        receiver.abort()
        raise BadRequest(f"the multipart body is malformed: {exc}") from exc
    except BaseException:
        receiver.abort()
        raise
