"""The artifact store: the local directory and the S3 implementation (against moto's in-process server),
one behaviour for both, and a dataset uploaded, validated and previewed with S3 as the store."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import image_zip, validate_now


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3_settings(settings, s3_endpoint, tmp_path):  # type: ignore[no-untyped-def]
    import boto3

    bucket = f"tl-{uuid.uuid4().hex[:12]}"
    overrides = {
        "artifact_store": "s3",
        "s3_bucket": bucket,
        "s3_endpoint_url": s3_endpoint,
        "s3_region": "us-east-1",
        "s3_access_key_id": "testing",
        "s3_secret_access_key": "testing",
        "s3_prefix": "tl",
        # A queue no live worker of this run consumes: the test validates in-process, on these settings.
        "io_queue": f"{settings.default_queue}.s3-{bucket}",
    }
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    return settings.model_copy(update=overrides)


def _tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "one.txt").write_bytes(b"1")
    (root / "a" / "b" / "two.txt").write_bytes(b"22")
    return root


def _exercise(store: Any, tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(b"payload")
    store.put_file("x/f.bin", source)
    assert source.exists() and store.exists("x/f.bin") and store.read_bytes("x/f.bin") == b"payload"
    with store.open("x/f.bin") as f:
        assert f.read() == b"payload"
    assert store.local_path("x/f.bin").read_bytes() == b"payload"
    moved = tmp_path / "m.bin"
    moved.write_bytes(b"moved")
    store.put_file("x/m.bin", moved, move=True)
    assert not moved.exists() and store.read_bytes("x/m.bin") == b"moved"

    store.put_tree("t/tree", _tree(tmp_path / "tree"))
    assert store.exists("t/tree")
    assert store.list_keys("t/tree") == ["t/tree/a/b/two.txt", "t/tree/a/one.txt"]
    local = store.local_path("t/tree")
    assert (local / "a" / "b" / "two.txt").read_bytes() == b"22"
    store.put_tree("t/tree", _tree(tmp_path / "tree2"))  # replacing a tree is fine
    store.delete("t/tree")
    assert not store.exists("t/tree") and store.list_keys("t/tree") == []
    store.delete("x/f.bin")
    assert not store.exists("x/f.bin") and store.exists("x/m.bin")
    with pytest.raises(ValueError):
        store.put_file("../escape", source)
    try:  # the local store names where it would be; the S3 one cannot fetch it
        assert not store.local_path("nothing/here").exists()
    except FileNotFoundError:
        pass


def test_local_store(tmp_path):
    from app.storage import LocalArtifactStore

    _exercise(LocalArtifactStore(tmp_path / "store"), tmp_path)


def test_s3_store(s3_settings, tmp_path):
    from app.storage import S3ArtifactStore, get_store

    store = get_store(s3_settings.model_copy(update={"data_dir": tmp_path / "data"}))
    assert isinstance(store, S3ArtifactStore)
    _exercise(store, tmp_path)
    # Everything sits under the configured prefix.
    keys = [o["Key"] for o in store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])]
    assert keys and all(k.startswith("tl/") for k in keys)


def test_s3_tree_without_its_marker_is_absent(s3_settings, tmp_path):
    """A tree whose upload was interrupted (no completion marker) is not visible to readers."""
    from app.storage import get_store

    store = get_store(s3_settings.model_copy(update={"data_dir": tmp_path / "data"}))
    store.client.put_object(Bucket=store.bucket, Key="tl/half/a.txt", Body=b"x")
    assert not store.exists("half")
    with pytest.raises(FileNotFoundError):
        store.local_path("half")


def test_dataset_lifecycle_on_s3(s3_settings, admin_headers, tmp_path):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.storage import get_store
    from worker.dataset_validation import validate_dataset_by_id

    with TestClient(create_app(s3_settings)) as client:
        up = client.post(
            "/v1/datasets",
            headers=admin_headers,
            files={"file": ("c.zip", image_zip(per_class=3))},
            data={"name": "s3"},
        )
        assert up.status_code == 201, up.text
        store = get_store(s3_settings)
        dataset_id = up.json()["id"]
        assert store.exists(f"uploads/{dataset_id}/upload.zip")
        assert not (s3_settings.resolved_artifact_dir / "uploads" / dataset_id).exists()  # not on local disk
        assert validate_dataset_by_id(dataset_id, s3_settings) == "ready"
        ds = validate_now(client, dataset_id, admin_headers)
        assert ds["report"]["class_counts"] == {"blue": 3, "red": 3}
        assert not store.exists(f"uploads/{dataset_id}/upload.zip")
        assert len(store.list_keys(f"datasets/{dataset_id}/files")) == 6
        samples = client.get(f"/v1/datasets/{dataset_id}/samples?label=red&limit=2", headers=admin_headers)
        assert samples.status_code == 200 and len(samples.json()["items"]) == 2
        # The training side gets a local copy of the tree.
        root = store.local_path(f"datasets/{dataset_id}/files")
        assert sorted(p.name for p in root.iterdir()) == ["blue", "red"]
        assert client.delete(f"/v1/datasets/{dataset_id}", headers=admin_headers).status_code == 204
        assert store.list_keys(f"datasets/{dataset_id}") == []
