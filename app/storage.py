"""Artifact store: where dataset files and model artifacts live.

One interface, two implementations: a local directory (the default) and S3-compatible object
storage (``TL_ARTIFACT_STORE=s3``; AWS, MinIO, ... via ``TL_S3_ENDPOINT_URL``). Keys are relative
POSIX paths such as ``datasets/<id>/files/...`` or ``models/<project>/<name>/<version>/model.keras``.

Writes are all-or-nothing for readers: the local store renames a finished file or tree into place;
the S3 store uploads a tree's objects first and its completion marker last, and treats a tree
without the marker as absent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

from app.config import Settings

TREE_MARKER = ".tl-complete"


class ArtifactStore(Protocol):
    def put_file(self, key: str, source: Path, *, move: bool = False) -> None: ...
    def put_tree(self, key: str, source: Path) -> None: ...
    def local_path(self, key: str) -> Path: ...
    def open(self, key: str) -> IO[bytes]: ...
    def read_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def list_keys(self, prefix: str) -> list[str]: ...


def check_key(key: str) -> str:
    path = PurePosixPath(key)
    if not key or key.startswith("/") or any(part in ("..", "") for part in key.split("/")):
        raise ValueError(f"artifact key must be a relative path without '..': {key!r}")
    return str(path)


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise ValueError(f"artifact key escapes the store: {key!r}")
        return path

    def put_file(self, key: str, source: Path, *, move: bool = False) -> None:
        """Place a file at ``key`` atomically; ``move`` renames it instead of copying where it can."""
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if move:
            try:
                os.replace(source, dest)
                return
            except OSError:  # another filesystem: copy, then drop the source
                pass
        tmp = dest.with_name(dest.name + ".partial")
        shutil.copyfile(source, tmp)
        tmp.replace(dest)
        if move:
            source.unlink(missing_ok=True)

    def put_tree(self, key: str, source: Path) -> None:
        """Move a directory into the store atomically (same filesystem) or copy then rename."""
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            source.rename(tmp)
        except OSError:
            shutil.copytree(source, tmp)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def open(self, key: str) -> IO[bytes]:
        return self._path(key).open("rb")

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
        for parent in path.parents:  # drop folders the key leaves empty
            if parent == self.root:
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (or already gone)
                break

    def list_keys(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if base.is_file():
            return [check_key(prefix)]
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root).as_posix()) for p in base.rglob("*") if p.is_file())


class S3ArtifactStore:
    """S3-compatible object storage. ``local_path`` materialises a key (file or tree) in a local cache."""

    def __init__(self, client: Any, bucket: str, cache_dir: Path, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache_dir = cache_dir.resolve()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ArtifactStore:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
        )
        return cls(client, settings.s3_bucket, settings.data_dir / "s3-cache", settings.s3_prefix)

    def _key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _strip(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _iter_objects(self, key: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(key) + "/"):
            for obj in page.get("Contents", []):
                yield self._strip(obj["Key"])

    def _is_file(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def put_file(self, key: str, source: Path, *, move: bool = False) -> None:
        self.client.upload_file(str(source), self.bucket, self._key(key))  # one PUT (or multipart): atomic
        if move:
            source.unlink(missing_ok=True)

    def put_tree(self, key: str, source: Path) -> None:
        self.delete(key)
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            rel = path.relative_to(source).as_posix()
            self.client.upload_file(str(path), self.bucket, self._key(f"{key}/{rel}"))
        self.client.put_object(Bucket=self.bucket, Key=self._key(f"{key}/{TREE_MARKER}"), Body=b"")
        shutil.rmtree(source, ignore_errors=True)

    def _tree_complete(self, key: str) -> bool:
        return self._is_file(f"{key}/{TREE_MARKER}")

    def local_path(self, key: str) -> Path:
        dest = self.cache_dir / check_key(key)
        with self._lock:
            if dest.exists():
                return dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            if self._is_file(key):
                fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".partial")
                os.close(fd)
                self.client.download_file(self.bucket, self._key(key), tmp)
                os.replace(tmp, dest)
                return dest
            tmp_dir = Path(tempfile.mkdtemp(dir=dest.parent, suffix=".partial"))
            found = False
            for rel_key in self._iter_objects(key):
                rel = rel_key[len(key) + 1 :]
                if rel == TREE_MARKER:
                    found = True
                    continue
                target = tmp_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.bucket, self._key(rel_key), str(target))
            if not found:
                shutil.rmtree(tmp_dir, ignore_errors=True)
                raise FileNotFoundError(f"artifact {key!r} is not in the store")
            tmp_dir.rename(dest)
            return dest

    def open(self, key: str) -> IO[bytes]:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]  # type: ignore[no-any-return]

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as body:
            return body.read()

    def exists(self, key: str) -> bool:
        return self._is_file(key) or self._tree_complete(key)

    def delete(self, key: str) -> None:
        if self._is_file(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        marker = f"{key}/{TREE_MARKER}"
        if self._is_file(marker):  # readers see the tree vanish at once
            self.client.delete_object(Bucket=self.bucket, Key=self._key(marker))
        batch: list[dict[str, str]] = []
        for rel_key in self._iter_objects(key):
            batch.append({"Key": self._key(rel_key)})
            if len(batch) == 1000:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})
                batch = []
        if batch:
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})
        shutil.rmtree(self.cache_dir / check_key(key), ignore_errors=True)

    def list_keys(self, prefix: str) -> list[str]:
        if self._is_file(prefix):
            return [check_key(prefix)]
        return sorted(k for k in self._iter_objects(prefix) if not k.endswith("/" + TREE_MARKER))


def get_store(settings: Settings) -> ArtifactStore:
    if settings.artifact_store == "s3":
        return S3ArtifactStore.from_settings(settings)
    return LocalArtifactStore(settings.resolved_artifact_dir)
