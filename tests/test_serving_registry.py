"""Registry: version documents, aliases (moves recorded, rollback), delete rules, artifact downloads."""

from __future__ import annotations

from tests.model_factory import register_image_model


def test_version_documents_carry_lineage_artifacts_and_tf_serving_status(client, admin_headers):
    register_image_model()
    register_image_model()
    doc = client.get("/v1/models/colors", headers=admin_headers).json()
    assert doc["latest_version"] == 2
    assert [s["version"] for s in doc["model_version_status"]] == ["2", "1"]
    assert doc["model_version_status"][0]["state"] == "AVAILABLE"
    v1 = client.get("/v1/models/colors/versions/1", headers=admin_headers).json()
    assert v1["labels"] == ["blue", "green", "red"]
    assert v1["input_signature"]["height"] == 8
    assert v1["artifacts"]["keras"]["size_bytes"] > 0
    assert v1["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    assert client.get("/v1/models/colors/versions/9", headers=admin_headers).status_code == 404


def test_alias_moves_are_recorded_and_rolled_back(client, auth_headers):
    for _ in range(3):
        register_image_model()
    writer = auth_headers("acme", "write")
    put = client.put("/v1/models/colors/aliases/production", headers=writer, json={"version": 1})
    assert put.status_code == 200, put.text
    client.put("/v1/models/colors/aliases/production", headers=writer, json={"version": 2})
    moved = client.put("/v1/models/colors/aliases/production", headers=writer, json={"version": 3}).json()
    assert moved["version"] == 3
    assert [(e["from_version"], e["to_version"]) for e in moved["history"]] == [(2, 3), (1, 2), (None, 1)]
    assert all(e["actor"] and e["created_at"] for e in moved["history"])

    back = client.post("/v1/models/colors/aliases/production/rollback", headers=writer).json()
    assert back["version"] == 2
    assert back["history"][0]["action"] == "rollback"
    assert client.post("/v1/models/colors/aliases/production/rollback", headers=writer).json()["version"] == 1
    nothing = client.post("/v1/models/colors/aliases/production/rollback", headers=writer)
    assert nothing.status_code == 409

    doc = client.get("/v1/models/colors", headers=writer).json()
    assert doc["aliases"] == {"production": 1}
    assert client.get("/v1/models/colors/aliases", headers=writer).json()["items"][0]["version"] == 1

    reader = auth_headers("acme", "read")
    assert client.put("/v1/models/colors/aliases/staging", headers=reader, json={"version": 1}).status_code == 403
    bad = client.put("/v1/models/colors/aliases/Bad Name", headers=writer, json={"version": 1})
    assert bad.status_code == 400 and "alias" in bad.json()["detail"]
    assert client.put("/v1/models/colors/aliases/staging", headers=writer, json={"version": 7}).status_code == 404


def test_aliased_version_cannot_be_deleted(client, admin_headers, settings):
    register_image_model()
    second = register_image_model()
    client.put("/v1/models/colors/aliases/staging", headers=admin_headers, json={"version": 2})
    refused = client.delete("/v1/models/colors/versions/2", headers=admin_headers)
    assert refused.status_code == 409
    assert "staging" in refused.json()["detail"]

    assert client.delete("/v1/models/colors/aliases/staging", headers=admin_headers).status_code == 204
    history = client.get("/v1/models/colors/aliases/staging", headers=admin_headers)
    assert history.status_code == 404
    assert client.delete("/v1/models/colors/versions/2", headers=admin_headers).status_code == 204
    assert client.get("/v1/models/colors/versions/2", headers=admin_headers).status_code == 404
    from app.storage import get_store

    assert not get_store(settings).exists(second["artifacts"]["keras"]["key"])
    assert client.get("/v1/models/colors", headers=admin_headers).json()["latest_version"] == 1


def test_artifacts_download_by_format(client, admin_headers):
    info = register_image_model(formats=("keras", "tflite_float32"))
    got = client.get("/v1/models/colors/versions/1/artifacts/tflite_float32", headers=admin_headers)
    assert got.status_code == 200
    assert len(got.content) == info["artifacts"]["tflite_float32"]["size_bytes"]
    assert client.get("/v1/models/colors/versions/1/artifacts/keras", headers=admin_headers).content[:2] == b"PK"
    missing = client.get("/v1/models/colors/versions/1/artifacts/tflite_int8", headers=admin_headers)
    assert missing.status_code == 404 and "keras" in missing.json()["detail"]


def test_models_are_per_project(client, auth_headers):
    register_image_model(project="other")
    assert client.get("/v1/models/colors", headers=auth_headers("acme", "read")).status_code == 404
