"""Bases a job can start from beyond the catalog: an uploaded .keras file, an earlier model version."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.helpers import TINY_IMAGE_SPEC, image_zip, upload_dataset, wait_for_job


def _keras_file_bytes(tmp_path) -> bytes:  # type: ignore[no-untyped-def]
    from tests.model_factory import build_image_model

    path = tmp_path / "base.keras"
    build_image_model(["blue", "red"], size=16).save(path)
    return path.read_bytes()


def test_upload_a_keras_base_and_reference_it(client, admin_headers, auth_headers, tmp_path):
    bad = client.post("/v1/bases/uploads", headers=admin_headers, files={"file": ("x.keras", b"not a zip")})
    assert bad.status_code == 415 and ".keras" in bad.json()["detail"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hi")
    not_model = client.post("/v1/bases/uploads", headers=admin_headers, files={"file": ("x.keras", buf.getvalue())})
    assert not_model.status_code == 400 and "config.json" in not_model.json()["detail"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("config.json", "{not json")
    unreadable = client.post("/v1/bases/uploads", headers=admin_headers, files={"file": ("x.keras", buf.getvalue())})
    assert unreadable.status_code == 400 and "not valid JSON" in unreadable.json()["detail"]

    up = client.post(
        "/v1/bases/uploads", headers=admin_headers, files={"file": ("base.keras", _keras_file_bytes(tmp_path))}
    )
    assert up.status_code == 201, up.text
    upload_id = up.json()["upload_id"]

    dataset = upload_dataset(client, admin_headers, image_zip(per_class=3))
    spec = {**TINY_IMAGE_SPEC, "base": {"kind": "keras_file", "upload_id": upload_id}}
    ok = client.post(
        "/v1/jobs", headers=admin_headers, json={"dataset_id": dataset["id"], "model_name": "m", "spec": spec}
    )
    assert ok.status_code == 201, ok.text

    # Its layer names were recorded at upload: unfreeze_from_layer is checked before anything is queued.
    assert up.json()["layers"] >= 3
    layers = client.get(f"/v1/bases/uploads/{upload_id}/layers", headers=admin_headers).json()
    assert layers["total"] == len(layers["layers"]) == up.json()["layers"] and layers["layers"][0] == "image"
    assert client.get("/v1/bases/uploads/feedface/layers", headers=admin_headers).status_code == 404
    partial = {**spec, "strategy": "fine_tune"}
    for layer, expected in ((layers["layers"][-1], 201), ("no_such_layer", 422)):
        hyper = {**TINY_IMAGE_SPEC["hyperparameters"], "unfreeze_from_layer": layer}
        r = client.post(
            "/v1/jobs",
            headers=admin_headers,
            json={"dataset_id": dataset["id"], "model_name": "m", "spec": {**partial, "hyperparameters": hyper}},
        )
        assert r.status_code == expected, r.text
    assert f"is not a layer of uploaded base {upload_id}" in r.json()["detail"]
    assert f"/v1/bases/uploads/{upload_id}/layers" in r.json()["detail"]

    unknown = {**spec, "base": {"kind": "keras_file", "upload_id": "feedface"}}
    r = client.post(
        "/v1/jobs", headers=admin_headers, json={"dataset_id": dataset["id"], "model_name": "m", "spec": unknown}
    )
    assert r.status_code == 422 and "feedface" in r.json()["detail"]

    by_path = {**spec, "base": {"kind": "keras_file", "path": "/etc/passwd"}}
    r = client.post(
        "/v1/jobs", headers=admin_headers, json={"dataset_id": dataset["id"], "model_name": "m", "spec": by_path}
    )
    assert r.status_code == 422 and "upload_id" in r.json()["detail"]

    # Another project cannot use this upload.
    other = auth_headers("other", "write")
    theirs = upload_dataset(client, other, image_zip(per_class=3, size=12))
    r = client.post("/v1/jobs", headers=other, json={"dataset_id": theirs["id"], "model_name": "m", "spec": spec})
    assert r.status_code == 422 and upload_id in r.json()["detail"]


@pytest.mark.slow
def test_domain_adaptation_from_an_earlier_model_version(client, admin_headers, live_worker):
    source = upload_dataset(client, admin_headers, image_zip(per_class=10, size=16), name="source")
    first = client.post(
        "/v1/jobs",
        headers=admin_headers,
        json={"dataset_id": source["id"], "model_name": "colors", "spec": TINY_IMAGE_SPEC},
    )
    assert first.status_code == 201, first.text
    done = wait_for_job(client, first.json()["id"], admin_headers)
    assert done["state"] == "succeeded", (done, live_worker.log_tail())
    version = client.get("/v1/models/colors/versions/1", headers=admin_headers).json()

    target = upload_dataset(client, admin_headers, image_zip(per_class=10, size=20), "t.zip", name="target")
    spec = {
        **TINY_IMAGE_SPEC,
        "base": {"kind": "model_version", "model_version_id": version["id"]},
        "strategy": "fine_tune",
        "hyperparameters": {"epochs": 1, "batch_size": 8, "learning_rate": 0.001},
    }
    # The version's backbone layer names were recorded at registration: a wrong one is refused at submit.
    hyper = {**spec["hyperparameters"], "unfreeze_from_layer": "block_99_project"}
    refused = client.post(
        "/v1/jobs",
        headers=admin_headers,
        json={"dataset_id": target["id"], "model_name": "colors", "spec": {**spec, "hyperparameters": hyper}},
    )
    assert refused.status_code == 422, refused.text
    assert f"not a layer of model version {version['id']}" in refused.json()["detail"]
    assert "out_relu" in refused.json()["detail"]
    second = client.post(
        "/v1/jobs", headers=admin_headers, json={"dataset_id": target["id"], "model_name": "colors", "spec": spec}
    )
    assert second.status_code == 201, second.text
    adapted = wait_for_job(client, second.json()["id"], admin_headers)
    assert adapted["state"] == "succeeded", (adapted, live_worker.log_tail())
    assert 0.0 <= adapted["metrics"]["source_accuracy_before"] <= 1.0
    assert 0.0 <= adapted["metrics"]["target_accuracy_after"] <= 1.0
    v2 = client.get("/v1/models/colors/versions/2", headers=admin_headers).json()
    assert v2["parent_version_id"] == version["id"]


def test_layer_names_are_recorded_for_image_models_only(tmp_path):
    """A text model's backbone (KerasHub) lists its layers only once loaded: nothing is recorded for it, and the
    engine checks ``unfreeze_from_layer`` when the job runs."""
    from app.keras_layers import base_layer_names
    from tests.model_factory import build_image_model, build_text_model

    image, text = tmp_path / "image.keras", tmp_path / "text.keras"
    build_image_model(["a", "b"], size=8).save(image)
    build_text_model(["a", "b"], [["x"], ["y"]]).save(text)
    names = base_layer_names(image)
    assert names is not None and names[0] == "image" and len(names) == 4
    assert base_layer_names(text) is None
