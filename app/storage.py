"""Artifact store: where dataset files and model artifacts live.

One interface; the local-directory implementation is the default. Keys are relative POSIX paths
such as ``datasets/<id>/...`` or ``models/<project>/<name>/<version>/model.keras``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from app.config import Settings


class ArtifactStore(Protocol):
    def put_file(self, key: str, source: Path) -> None: ...
    def put_tree(self, key: str, source: Path) -> None: ...
    def local_path(self, key: str) -> Path: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents and path != self.root:
            raise ValueError(f"artifact key escapes the store: {key!r}")
        return path

    def put_file(self, key: str, source: Path) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        shutil.copyfile(source, tmp)
        tmp.replace(dest)

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

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()


def get_store(settings: Settings) -> ArtifactStore:
    return LocalArtifactStore(settings.resolved_artifact_dir)
