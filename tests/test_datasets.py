"""Datasets: bad uploads refused with nothing stored, the validation report's figures, dedupe, list,
samples, delete, the sweep, and validation by a live worker on the io queue."""

from __future__ import annotations

import base64
import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from tests.helpers import (
    COLORS,
    TINY_IMAGE_SPEC,
    image_bytes,
    image_zip,
    upload_dataset,
    validate_now,
    wait_for_dataset,
)

# --------------------------------------------------------------------------- builders


def zip_of(members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, target)
    return buf.getvalue()


def tar_of(members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None, mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for label in ("red", "blue"):
            payload = image_bytes(COLORS[label])
            info = tarfile.TarInfo(f"{label}/0.png")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
        for info in members:
            payload = (data or {}).get(info.name, b"")
            if info.isfile():
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if info.isfile() else None)
    return buf.getvalue()


def tar_member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def png(size: tuple[int, int] = (16, 16), mode: str = "RGB", color: Any = (200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


GOOD = {"red/0.png": image_bytes(COLORS["red"]), "blue/0.png": image_bytes(COLORS["blue"])}


def post(client: Any, headers: dict[str, str], content: bytes, filename: str = "d.zip", **form: str) -> Any:
    data = {"name": "d", **form}
    return client.post("/v1/datasets", headers=headers, files={"file": (filename, content)}, data=data)


def stored_nothing(settings: Any) -> None:
    from app.db import session_scope
    from app.tables import Dataset

    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Dataset)) == 0
    artifacts = settings.resolved_artifact_dir
    leftovers = [p for sub in ("uploads", "datasets") for p in (artifacts / sub).rglob("*") if p.is_file()]
    assert leftovers == [], leftovers
    assert list((settings.data_dir / "tmp").glob("*.upload")) == []


@pytest.fixture()
def make_client(settings):  # type: ignore[no-untyped-def]
    """A client whose settings differ from the run's: make_client(max_upload_bytes=...)."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    clients: list[TestClient] = []

    def factory(**overrides: Any) -> TestClient:
        c = TestClient(create_app(settings.model_copy(update=overrides)))
        c.__enter__()
        clients.append(c)
        return c

    yield factory
    for c in clients:
        c.__exit__(None, None, None)


# --------------------------------------------------------------------------- bad inputs: 4xx, nothing stored

BAD_UPLOADS = {
    "absolute path": (zip_of({**GOOD, "/etc/evil.png": b"x"}), 400, "absolute path"),
    "dot-dot": (zip_of({**GOOD, "red/../../evil.png": b"x"}), 400, "'..'"),
    "zip symlink": (zip_of(GOOD, symlinks={"red/link.png": "/etc/passwd"}), 400, "symlink"),
    "tar symlink": (tar_of([tar_member("red/l.png", tarfile.SYMTYPE, "/etc/passwd")]), 400, "link"),
    "tar hard link": (tar_of([tar_member("red/h.png", tarfile.LNKTYPE, "red/0.png")]), 400, "link"),
    "tar device": (tar_of([tar_member("red/dev", tarfile.CHRTYPE)]), 400, "device"),
    "tar fifo": (tar_of([tar_member("red/fifo", tarfile.FIFOTYPE)]), 400, "device or special"),
    "tar dot-dot": (tar_of([tar_member("../x.png", tarfile.REGTYPE)], {"../x.png": b"x"}), 400, "'..'"),
    "zip bomb ratio": (zip_of({**GOOD, "red/zeros.png": bytes(24 * 1024 * 1024)}), 413, "compression ratio"),
    "corrupt zip": (zip_of(GOOD)[:-30], 400, "corrupt"),
    "empty archive": (zip_of({}), 400, "no files"),
    "empty file": (b"", 400, "empty"),
    "not an archive": (png(), 415, "zip, tar or tar.gz"),
    "csv for images": (b"text,label\nhi,a\n", 415, "zip, tar or tar.gz"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_is_refused_and_nothing_is_stored(client, admin_headers, settings, case):
    content, status, words = BAD_UPLOADS[case]
    filename = "d.csv" if case == "csv for images" else "d.zip"
    response = post(client, admin_headers, content, filename)
    assert response.status_code == status, response.text
    body = response.json()
    assert words in body["detail"], body
    if status == 415:
        assert body["accepted"] == ["zip", "tar", "tar.gz"]
    stored_nothing(settings)


@pytest.mark.parametrize(
    ("overrides", "content", "words"),
    [
        ({"max_upload_bytes": 2000}, image_zip(per_class=12), "TL_MAX_UPLOAD_BYTES"),
        ({"max_archive_members": 5}, image_zip(per_class=12), "TL_MAX_ARCHIVE_MEMBERS"),
        ({"max_uncompressed_bytes": 1000}, image_zip(per_class=12), "TL_MAX_UNCOMPRESSED_BYTES"),
    ],
)
def test_limits_give_413_and_store_nothing(make_client, admin_headers, settings, overrides, content, words):
    response = post(make_client(**overrides), admin_headers, content)
    assert response.status_code == 413, response.text
    assert words in response.json()["detail"]
    stored_nothing(settings)


def test_text_upload_errors(client, admin_headers, settings):
    wrong_column = post(client, admin_headers, b"body,label\nhi,a\n", "t.csv", task="text_classification")
    assert wrong_column.status_code == 400
    assert "text_column 'text'" in wrong_column.json()["detail"] and "'body'" in wrong_column.json()["detail"]
    not_json = post(client, admin_headers, b"{nope\n", "t.jsonl", task="text_classification")
    assert not_json.status_code == 400 and "line 1" in not_json.json()["detail"]
    zip_for_text = post(client, admin_headers, image_zip(), "t.zip", task="text_classification")
    assert zip_for_text.status_code == 415 and zip_for_text.json()["accepted"] == ["csv", "jsonl"]
    no_name = client.post("/v1/datasets", headers=admin_headers, files={"file": ("d.zip", image_zip())})
    assert no_name.status_code == 422 and "name" in no_name.json()["detail"]
    not_multipart = client.post("/v1/datasets", headers=admin_headers, content=b"{}")
    assert not_multipart.status_code == 415
    stored_nothing(settings)


def test_a_rolled_back_upload_leaves_no_file(client, admin_headers, settings):
    """If the request's transaction does not commit, the stored upload is removed again."""
    import hashlib

    from app.auth import Principal
    from app.db import get_sessionmaker
    from app.services.datasets import create_from_upload
    from app.storage import get_store
    from app.uploads import MultipartForm, SpooledUpload

    content = image_zip()
    path = settings.data_dir / "tmp" / "x.upload"
    path.write_bytes(content)
    upload = SpooledUpload(path, hashlib.sha256(content).hexdigest(), len(content), "d.zip", content[:512])
    session = get_sessionmaker()()
    from app.tables import Project

    session.add(Project(id="p" * 32, name="rollback"))
    session.flush()
    principal = Principal(project_id="p" * 32, project_name="rollback", key_id="k", scope="admin")
    form = MultipartForm({"name": "x"}, upload)
    dataset, _ = create_from_upload(session, settings, get_store(settings), principal, form)
    assert (settings.resolved_artifact_dir / dataset.upload_key).exists()
    session.rollback()
    session.close()
    stored_nothing(settings)


# --------------------------------------------------------------------------- the report


def test_image_report_figures_on_a_dataset_with_known_defects(client, admin_headers, settings):
    red = [image_bytes(COLORS["red"], seed=i) for i in range(4)]
    blue = [image_bytes(COLORS["blue"], seed=10 + i) for i in range(2)]
    good_png = image_bytes(COLORS["green"], seed=20)
    members = {
        "data/train/red/0.png": red[0],
        "data/train/red/1.png": red[1],
        "data/train/red/2.png": red[2],
        "data/train/red/3.png": red[3],
        "data/train/red/1-copy.png": red[1],  # duplicate within train
        "data/train/red/huge.png": png((60, 60)),  # 3600 px > the 1000 px limit below
        "data/train/blue/0.png": blue[0],
        "data/train/blue/1.jpg": _jpeg(),
        "data/train/blue/gray.png": png((8, 8), "L", 128),
        "data/train/blue/broken.png": b"this is not an image",
        "data/train/blue/cut.png": good_png[: len(good_png) // 2],
        "data/train/blue/notes.txt": b"hello",
        "data/train/green/0.png": good_png,  # a class with one example
        "data/val/red/0.png": red[0],  # the same image in train and val: leakage
        "data/val/blue/0.png": blue[1],
        "data/README.md": b"# about",
    }
    up = post(client, admin_headers, zip_of(members))
    assert up.status_code == 201, up.text
    assert up.json()["state"] == "validating" and up.json()["report"] == {}
    from worker.dataset_validation import validate_dataset_by_id

    assert validate_dataset_by_id(up.json()["id"], settings.model_copy(update={"max_image_pixels": 1000})) == "ready"
    ds = client.get(f"/v1/datasets/{up.json()['id']}", headers=admin_headers).json()
    report = ds["report"]

    assert ds["state"] == "ready" and ds["labels"] == ["blue", "green", "red"]
    assert report["layout"] == "splits" and report["splits_source"] == "upload"
    assert report["split_counts"] == {"train": {"blue": 3, "green": 1, "red": 5}, "val": {"blue": 1, "red": 1}}
    assert report["class_counts"] == {"blue": 4, "green": 1, "red": 6}
    assert ds["num_examples"] == report["total_images"] == 11
    assert [i["path"] for i in report["undecodable"]["items"]] == ["train/blue/broken.png"]
    assert [i["path"] for i in report["truncated"]["items"]] == ["train/blue/cut.png"]
    assert report["too_large"]["items"][0]["path"] == "train/red/huge.png"
    assert report["too_large"]["items"][0]["pixels"] == 3600
    assert sorted(report["skipped_files"]["items"]) == ["README.md", "train/blue/notes.txt"]
    within = report["duplicates"]["within_split"]["items"]
    assert [sorted(g["paths"]) for g in within] == [["train/red/1-copy.png", "train/red/1.png"]]
    across = report["duplicates"]["across_splits"]["items"]
    assert [sorted(g["paths"]) for g in across] == [["train/red/0.png", "val/red/0.png"]]
    assert report["duplicates"]["conflicting_labels"]["count"] == 0
    assert report["small_classes"] == {"green": 1}
    assert report["imbalance_ratio"] == 5.0
    stats = report["image_stats"]
    assert stats["modes"] == {"RGB": 10, "L": 1}
    assert stats["formats"] == {"PNG": 10, "JPEG": 1}
    assert stats["width"]["min"] == 8 and stats["width"]["max"] == 16
    assert any("leakage" in w for w in report["warnings"])
    assert any("fewer than 2" in w for w in report["warnings"])

    # The stored tree keeps the upload's own splits at its root (the engine reads train/ val/ test/
    # itself) and only usable images.
    root = _dataset_root(settings, ds["id"])
    assert sorted(p.name for p in root.iterdir()) == ["train", "val"]
    kept = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert "train/blue/broken.png" not in kept and "train/blue/notes.txt" not in kept and len(kept) == 11
    assert not (settings.resolved_artifact_dir / "uploads" / ds["id"]).exists()


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 10), (10, 10, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def _dataset_root(settings: Any, dataset_id: str) -> Path:
    return settings.resolved_artifact_dir / "datasets" / dataset_id / "files"


def test_text_report_figures(client, admin_headers, settings):
    csv_bytes = (
        b"\xef\xbb\xbftext,label\n"
        b"good movie,pos\n"
        b"great fun,pos\n"
        b"awful,neg\n"
        b",neg\n"  # empty text
        b"no label,\n"  # empty label
        b"bad \xff byte,neg\n"  # undecodable
        b"great fun,neg\n"  # duplicate text with a different label
        b"meh,neutral\n"
    )
    ds = upload_dataset(client, admin_headers, csv_bytes, "t.csv", task="text_classification")
    report = ds["report"]
    assert ds["state"] == "ready" and ds["labels"] == ["neg", "neutral", "pos"]
    assert report["utf8_bom"] is True
    assert report["rows"] == 8 and report["usable_rows"] == ds["num_examples"] == 5
    assert report["empty_rows"]["items"] == [5, 6]
    assert report["undecodable_rows"]["items"] == [7]
    assert report["label_counts"] == {"neg": 2, "neutral": 1, "pos": 2}
    assert report["small_classes"] == {"neutral": 1} and report["imbalance_ratio"] == 2.0
    assert report["length_chars"]["min"] == 3 and report["length_chars"]["max"] == 10
    assert report["duplicates"]["conflicting_labels"]["items"] == [[3, 8]]
    stored = (_dataset_root(settings, ds["id"]) / "data.csv").read_bytes()
    assert not stored.startswith(b"\xef\xbb\xbf") and b"\xff" not in stored and stored.count(b"\n") == 6

    jsonl = b'{"body": "x y", "y": 1}\n{"body": "z", "y": 2}\nnot json\n\n{"body": "w", "y": 2}\n'
    ds = upload_dataset(
        client, admin_headers, jsonl, "t.jsonl", task="text_classification", text_column="body", label_column="y"
    )
    assert ds["state"] == "ready" and ds["labels"] == ["1", "2"]
    assert ds["report"]["malformed_rows"]["items"] == [3]
    assert ds["report"]["length_words"]["max"] == 2


def test_invalid_only_when_training_cannot_work(client, admin_headers):
    one_class = upload_dataset(client, admin_headers, zip_of({"red/0.png": png(), "red/1.png": png(color=(1, 2, 3))}))
    assert one_class["state"] == "invalid"
    assert "at least 2 classes" in one_class["error"]
    assert one_class["report"]["class_counts"] == {"red": 2}
    broken = upload_dataset(client, admin_headers, zip_of({"red/0.png": b"x", "blue/0.png": b"y"}))
    assert broken["state"] == "invalid" and broken["report"]["undecodable"]["count"] == 2
    no_train = upload_dataset(client, admin_headers, zip_of({"val/red/0.png": png(), "val/blue/0.png": png()}))
    assert no_train["state"] == "invalid" and "no train/" in no_train["error"]
    one_label = upload_dataset(client, admin_headers, b"text,label\na,x\nb,x\n", "t.csv", task="text_classification")
    assert one_label["state"] == "invalid"
    # A job cannot use an invalid dataset.
    job = client.post(
        "/v1/jobs",
        headers=admin_headers,
        json={"dataset_id": one_class["id"], "model_name": "m", "spec": TINY_IMAGE_SPEC},
    )
    assert job.status_code == 422 and "invalid" in job.json()["detail"]


def test_tar_gz_with_a_wrapping_folder_is_ready(client, admin_headers):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for label in ("red", "blue"):
            for i in range(3):
                payload = image_bytes(COLORS[label], seed=i)
                info = tarfile.TarInfo(f"colors/{label}/{i}.png")
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
    ds = upload_dataset(client, admin_headers, buf.getvalue(), "c.tar.gz")
    assert ds["format"] == "tar" and ds["state"] == "ready"
    assert ds["report"]["layout"] == "class_folders" and ds["report"]["class_counts"] == {"blue": 3, "red": 3}


# --------------------------------------------------------------------------- dedupe, list, samples, delete


def test_same_content_returns_the_existing_dataset(client, auth_headers):
    alice, bob = auth_headers("alice", "write"), auth_headers("bob", "write")
    content = image_zip()
    first = post(client, alice, content)
    again = post(client, alice, content, name="other name")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["duplicate"] is True
    assert first.json()["id"] in again.json()["message"] and first.json()["duplicate"] is False
    other_project = post(client, bob, content)
    assert other_project.status_code == 201 and other_project.json()["id"] != first.json()["id"]


def test_list_paginates_and_filters(client, admin_headers):
    upload_dataset(client, admin_headers, image_zip(per_class=3), name="a")
    upload_dataset(client, admin_headers, zip_of({"red/0.png": png()}), name="b")
    upload_dataset(client, admin_headers, b"text,label\na,x\nb,y\n", "t.csv", name="c", task="text_classification")
    page = client.get("/v1/datasets?limit=2", headers=admin_headers).json()
    assert page["total"] == 3 and len(page["items"]) == 2 and "report" not in page["items"][0]
    rest = client.get("/v1/datasets?limit=2&offset=2", headers=admin_headers).json()
    assert len(rest["items"]) == 1
    assert {d["name"] for d in page["items"] + rest["items"]} == {"a", "b", "c"}
    text = client.get("/v1/datasets?task=text_classification", headers=admin_headers).json()
    assert [d["name"] for d in text["items"]] == ["c"]
    invalid = client.get("/v1/datasets?state=invalid", headers=admin_headers).json()
    assert [d["name"] for d in invalid["items"]] == ["b"]
    assert client.get("/v1/datasets?state=bogus", headers=admin_headers).status_code == 422


def test_samples(client, admin_headers):
    up = post(client, admin_headers, image_zip(per_class=5, size=128))
    assert client.get(f"/v1/datasets/{up.json()['id']}/samples", headers=admin_headers).status_code == 409
    ds = validate_now(client, up.json()["id"], admin_headers)
    spread = client.get(f"/v1/datasets/{ds['id']}/samples?limit=4", headers=admin_headers).json()
    assert [i["label"] for i in spread["items"]] == ["blue", "red", "blue", "red"]
    reds = client.get(f"/v1/datasets/{ds['id']}/samples?label=red&limit=3", headers=admin_headers).json()
    assert len(reds["items"]) == 3 and {i["label"] for i in reds["items"]} == {"red"}
    thumb = Image.open(io.BytesIO(base64.b64decode(reds["items"][0]["thumbnail_png_base64"])))
    assert thumb.format == "PNG" and max(thumb.size) <= 96 and reds["items"][0]["width"] == 128
    missing = client.get(f"/v1/datasets/{ds['id']}/samples?label=purple", headers=admin_headers)
    assert missing.status_code == 404 and "red" in missing.json()["detail"]

    text = upload_dataset(
        client, admin_headers, b"text,label\nhello,a\nbye,b\nhi,a\n", "t.csv", task="text_classification"
    )
    rows = client.get(f"/v1/datasets/{text['id']}/samples?label=a", headers=admin_headers).json()["items"]
    assert rows == [{"text": "hello", "label": "a"}, {"text": "hi", "label": "a"}]


def test_delete(client, admin_headers, settings):
    from app.db import session_scope
    from app.services.job_states import transition
    from app.tables import Job

    ds = upload_dataset(client, admin_headers, image_zip(per_class=3))
    job = client.post(
        "/v1/jobs", headers=admin_headers, json={"dataset_id": ds["id"], "model_name": "m", "spec": TINY_IMAGE_SPEC}
    )
    assert job.status_code == 201, job.text
    busy = client.delete(f"/v1/datasets/{ds['id']}", headers=admin_headers)
    assert busy.status_code == 409 and job.json()["id"] in busy.json()["detail"]
    with session_scope() as session:  # the job is cancelled before any worker took it
        transition(session.get(Job, job.json()["id"]), "cancelled")

    assert client.delete(f"/v1/datasets/{ds['id']}", headers=admin_headers).status_code == 204
    gone = client.get(f"/v1/datasets/{ds['id']}", headers=admin_headers)
    assert gone.status_code == 404 and "deleted" in gone.json()["detail"]
    assert not (settings.resolved_artifact_dir / "datasets" / ds["id"]).exists()
    assert client.get("/v1/datasets", headers=admin_headers).json()["total"] == 0
    # Lineage: the job still names the dataset it trained on.
    assert client.get(f"/v1/jobs/{job.json()['id']}", headers=admin_headers).json()["dataset_id"] == ds["id"]
    # The same content can be uploaded again, as a new dataset.
    again = post(client, admin_headers, image_zip(per_class=3))
    assert again.status_code == 201 and again.json()["id"] != ds["id"]
    assert client.delete("/v1/datasets/nope", headers=admin_headers).status_code == 404


# --------------------------------------------------------------------------- claims and the sweep


def test_a_validation_runs_once_and_the_sweep_resends_lost_ones(client, admin_headers, settings):
    from datetime import timedelta

    from app.db import session_scope
    from app.services.datasets import requeue_stale_validations
    from app.tables import Dataset, utcnow
    from worker.dataset_validation import validate_dataset_by_id

    up = post(client, admin_headers, image_zip(per_class=2)).json()
    with session_scope() as session:
        assert requeue_stale_validations(session, settings) == []  # just sent: not stale
        row = session.get(Dataset, up["id"])
        row.validation_requested_at = utcnow() - timedelta(hours=1)
    with session_scope() as session:
        assert requeue_stale_validations(session, settings) == [up["id"]]
    assert validate_dataset_by_id(up["id"]) == "ready"
    assert validate_dataset_by_id(up["id"]) == "skipped"  # a duplicate message does nothing

    stuck = post(client, admin_headers, image_zip(per_class=3)).json()
    with session_scope() as session:
        row = session.get(Dataset, stuck["id"])
        row.validation_started_at = utcnow() - timedelta(hours=2)
        row.validation_attempts = settings.validation_max_attempts
    with session_scope() as session:
        assert requeue_stale_validations(session, settings) == []
    gave_up = client.get(f"/v1/datasets/{stuck['id']}", headers=admin_headers).json()
    assert gave_up["state"] == "invalid" and "did not complete" in gave_up["error"]


def test_the_live_worker_validates_on_the_io_queue(client, admin_headers, live_worker):
    from app.cli import worker_argv

    argv = worker_argv(None, 1, "INFO")
    assert argv[argv.index("-Q") + 1].split(",")[1].endswith(".io")
    up = post(client, admin_headers, image_zip(per_class=4))
    assert up.status_code == 201 and up.json()["state"] == "validating"
    ds = wait_for_dataset(client, up.json()["id"], admin_headers)
    assert ds["state"] == "ready", live_worker.log_tail()
    assert ds["report"]["class_counts"] == {"blue": 4, "red": 4}


def test_checksum_matches_a_slow_streamed_upload(client, admin_headers):
    """The multipart body arrives in many small pieces; the hash and bytes must still be exact."""
    import hashlib

    content = image_zip(per_class=20)
    boundary = "xyzBOUNDARYxyz"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nslow\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.zip"\r\n'
            "Content-Type: application/zip\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def pieces():  # type: ignore[no-untyped-def]
        for i in range(0, len(body), 997):
            yield body[i : i + 997]

    headers = {**admin_headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = client.post("/v1/datasets", headers=headers, content=pieces())
    assert response.status_code == 201, response.text
    assert response.json()["content_hash"] == hashlib.sha256(content).hexdigest()
    assert response.json()["size_bytes"] == len(content)


def _split_zip(train: str = "train", val: str = "val") -> bytes:
    members = {}
    for ci, label in enumerate(("red", "blue")):
        for i in range(6):
            members[f"{train}/{label}/{i}.png"] = image_bytes(COLORS[label], seed=ci * 100 + i)
        for i in range(2):
            members[f"{val}/{label}/{i}.png"] = image_bytes(COLORS[label], seed=ci * 100 + 50 + i)
    return zip_of(members)


def test_split_folder_aliases_are_stored_under_canonical_names(client, admin_headers, settings):
    ds = upload_dataset(client, admin_headers, _split_zip("Training", "validation"))
    assert ds["state"] == "ready" and ds["report"]["layout"] == "splits"
    assert ds["report"]["split_counts"] == {"train": {"blue": 6, "red": 6}, "val": {"blue": 2, "red": 2}}
    assert sorted(p.name for p in _dataset_root(settings, ds["id"]).iterdir()) == ["train", "val"]


@pytest.mark.slow
def test_a_job_trains_on_the_uploads_own_splits(client, admin_headers, live_worker):
    from tests.helpers import wait_for_job

    up = post(client, admin_headers, _split_zip())
    ds = wait_for_dataset(client, up.json()["id"], admin_headers)
    assert ds["state"] == "ready", live_worker.log_tail()
    job = client.post(
        "/v1/jobs",
        headers=admin_headers,
        json={"dataset_id": ds["id"], "model_name": "own-splits", "spec": TINY_IMAGE_SPEC},
    )
    assert job.status_code == 201, job.text
    done = wait_for_job(client, job.json()["id"], admin_headers)
    assert done["state"] == "succeeded", (done, live_worker.log_tail())
    from app.db import session_scope
    from app.tables import Job

    with session_scope() as session:  # the job records the split it used
        splits = session.get(Job, done["id"]).splits
    assert sorted(splits["val"]) == sorted(f"val/{c}/{i}.png" for c in ("red", "blue") for i in range(2))
    assert all(item.startswith("train/") for item in splits["train"])


def test_delete_waits_for_a_concurrent_job_submission(client, admin_headers):
    """A submit holds the dataset FOR SHARE until it commits; a delete racing it then sees the job (409)."""
    import threading

    from app.auth import authenticate
    from app.db import get_sessionmaker
    from app.errors import Conflict
    from app.services.datasets import delete_dataset, get_dataset
    from app.storage import get_store
    from app.tables import Job

    ds = upload_dataset(client, admin_headers, image_zip(per_class=3))
    key = admin_headers["Authorization"].split()[1]
    make = get_sessionmaker()
    submitter, deleter = make(), make()
    principal = authenticate(submitter, key)
    submitter.commit()
    get_dataset(submitter, principal, ds["id"], share_lock=True)  # the submit path, mid-transaction

    outcome: list[BaseException | None] = []

    def delete() -> None:
        try:
            from app.config import get_settings

            delete_dataset(deleter, get_store(get_settings()), principal, ds["id"])
            deleter.commit()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001
            deleter.rollback()
            outcome.append(exc)

    thread = threading.Thread(target=delete)
    thread.start()
    thread.join(timeout=1.0)
    assert thread.is_alive(), "the delete must wait for the submitting transaction"
    submitter.add(Job(project_id=principal.project_id, dataset_id=ds["id"], model_name="m", spec={}, state="queued"))
    submitter.commit()
    thread.join(timeout=10)
    submitter.close()
    deleter.close()
    assert isinstance(outcome[0], Conflict), outcome
