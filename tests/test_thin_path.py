"""The thin path end to end on Postgres + Redis with a live Celery worker: upload → job → predict."""

from __future__ import annotations

import pytest

from tests.helpers import COLORS, TINY_IMAGE_SPEC, image_bytes, image_zip, wait_for_dataset, wait_for_job


@pytest.mark.slow
def test_upload_train_predict(client, admin_headers, live_worker):
    upload = client.post(
        "/v1/datasets",
        headers=admin_headers,
        files={"file": ("colors.zip", image_zip(per_class=12), "application/zip")},
        data={"name": "colors"},
    )
    assert upload.status_code == 201, upload.text
    assert upload.json()["state"] == "validating"
    dataset = wait_for_dataset(client, upload.json()["id"], admin_headers)  # the live worker validates it
    assert dataset["state"] == "ready", (dataset, live_worker.log_tail())
    assert dataset["labels"] == ["blue", "red"]

    submitted = client.post(
        "/v1/jobs",
        headers=admin_headers,
        json={"dataset_id": dataset["id"], "model_name": "colors", "spec": TINY_IMAGE_SPEC},
    )
    assert submitted.status_code == 201, submitted.text
    assert submitted.json()["state"] == "queued"

    job = wait_for_job(client, submitted.json()["id"], admin_headers)
    assert job["state"] == "succeeded", (job, live_worker.log_tail())
    assert 0.0 <= job["metrics"]["accuracy"] <= 1.0
    assert job["model_version"] == 1
    assert job["attempts"] == 1

    model = client.get("/v1/models/colors", headers=admin_headers).json()
    assert model["latest_version"] == 1
    assert model["versions"][0]["labels"] == ["blue", "red"]

    files = [
        ("files", ("r.png", image_bytes(COLORS["red"], 16, seed=99), "image/png")),
        ("files", ("b.png", image_bytes(COLORS["blue"], 16, seed=98), "image/png")),
    ]
    predicted = client.post("/v1/models/colors/predict", headers=admin_headers, files=files)
    assert predicted.status_code == 200, predicted.text
    body = predicted.json()
    assert body["version"] == 1
    assert len(body["predictions"]) == 2
    for p in body["predictions"]:
        assert p["label"] in ("red", "blue")
        assert abs(sum(t["probability"] for t in p["top"]) - 1.0) < 1e-3

    bad = client.post(
        "/v1/models/colors/predict",
        headers=admin_headers,
        files=[("files", ("oops.png", b"not an image", "image/png"))],
    )
    assert bad.status_code == 400
    assert "oops.png" in bad.json()["detail"]
