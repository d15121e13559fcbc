"""Native and TF Serving inference, TFLite backend, batching correctness, cache eviction, metrics."""

from __future__ import annotations

import asyncio
import base64

import numpy as np

from tests.helpers import COLORS, image_bytes, image_zip, upload_dataset
from tests.model_factory import register_image_model, register_text_model


def _b64(color: str, seed: int = 0) -> str:
    return base64.b64encode(image_bytes(COLORS[color], 8, seed=seed)).decode()


def test_native_predict_by_version_alias_and_path(client, admin_headers):
    register_image_model()
    register_image_model(scale=1.0)
    files = [
        ("files", ("r.png", image_bytes(COLORS["red"], 12, seed=1), "image/png")),
        ("files", ("b.png", image_bytes(COLORS["blue"], 8, seed=2), "image/png")),
    ]
    latest = client.post("/v1/models/colors/predict?top_k=2", headers=admin_headers, files=files)
    assert latest.status_code == 200, latest.text
    body = latest.json()
    assert body["version"] == 2 and body["alias"] is None and body["latency_ms"] > 0
    assert [p["label"] for p in body["predictions"]] == ["red", "blue"]
    assert len(body["predictions"][0]["top"]) == 2

    client.put("/v1/models/colors/aliases/production", headers=admin_headers, json={"version": 1})
    default = client.post("/v1/models/colors/predict", headers=admin_headers, json={"images": [_b64("green")]}).json()
    assert (default["version"], default["alias"]) == (1, "production")
    assert default["predictions"][0]["label"] == "green"
    assert default["predictions"][0]["probability"] > 0.5
    v2 = client.post("/v1/models/colors/versions/2/predict", headers=admin_headers, json={"images": [_b64("red")]})
    assert v2.json()["version"] == 2
    by_alias = client.post(
        "/v1/models/colors/aliases/production/predict", headers=admin_headers, json={"images": [_b64("red")]}
    )
    assert by_alias.json()["version"] == 1
    q = client.post("/v1/models/colors/predict?alias=production", headers=admin_headers, json={"images": [_b64("red")]})
    assert q.json()["alias"] == "production"
    both = client.post(
        "/v1/models/colors/predict?alias=production&version=1", headers=admin_headers, json={"images": [_b64("red")]}
    )
    assert both.status_code == 400


def test_bad_inputs_name_the_item(client, admin_headers):
    register_image_model()
    register_text_model()
    bad = client.post("/v1/models/colors/predict", headers=admin_headers, json={"images": [_b64("red"), "!!"]})
    assert bad.status_code == 400 and "images[1]" in bad.json()["detail"]
    junk = base64.b64encode(b"not an image").decode()
    bad = client.post("/v1/models/colors/predict", headers=admin_headers, json={"images": [junk]})
    assert bad.status_code == 400 and "images[0]" in bad.json()["detail"]
    wrong = client.post("/v1/models/colors/predict", headers=admin_headers, json={"texts": ["hello"]})
    assert wrong.status_code == 400 and "image model" in wrong.json()["detail"]
    wrong = client.post("/v1/models/sentiment/predict", headers=admin_headers, json={"texts": ["good", 3]})
    assert wrong.status_code == 400 and "texts[1]" in wrong.json()["detail"]
    backend = client.post(
        "/v1/models/colors/predict?backend=tflite_int8", headers=admin_headers, json={"images": [_b64("red")]}
    )
    assert backend.status_code == 400 and "keras" in backend.json()["detail"]


def test_text_model_predicts(client, admin_headers):
    register_text_model()
    out = client.post(
        "/v1/models/sentiment/predict", headers=admin_headers, json={"texts": ["a great day", "an awful day"]}
    )
    assert out.status_code == 200, out.text
    assert [p["label"] for p in out.json()["predictions"]] == ["positive", "negative"]


def test_tflite_backend_matches_keras(client, admin_headers):
    register_image_model(formats=("keras", "tflite_float32", "tflite_float16"))
    images = {"images": [_b64(c, seed=i) for i, c in enumerate(("red", "green", "blue"))]}
    keras_out = client.post("/v1/models/colors/predict", headers=admin_headers, json=images).json()
    for backend in ("tflite_float32", "tflite_float16"):
        out = client.post(f"/v1/models/colors/predict?backend={backend}", headers=admin_headers, json=images)
        assert out.status_code == 200, out.text
        assert out.json()["backend"] == backend
        for a, b in zip(out.json()["predictions"], keras_out["predictions"], strict=True):
            assert a["label"] == b["label"]
            assert abs(a["probability"] - b["probability"]) < 1e-2


def test_tf_serving_rest_format(client, admin_headers):
    register_image_model()
    register_image_model()
    client.put("/v1/models/colors/aliases/stable", headers=admin_headers, json={"version": 1})
    rows = client.post(
        "/v1/models/colors:predict",
        headers=admin_headers,
        json={"instances": [{"b64": _b64("red")}, {"image": {"b64": _b64("blue")}}]},
    )
    assert rows.status_code == 200, rows.text
    preds = np.array(rows.json()["predictions"])
    assert preds.shape == (2, 3) and list(preds.argmax(1)) == [2, 0]
    pixels = np.full((8, 8, 3), (10, 200, 10), dtype=np.uint8).tolist()
    cols = client.post("/v1/models/colors/versions/1:predict", headers=admin_headers, json={"inputs": [pixels]})
    assert np.array(cols.json()["outputs"]).argmax(1).tolist() == [1]
    label = client.post(
        "/v1/models/colors/labels/stable:predict", headers=admin_headers, json={"instances": [{"b64": _b64("green")}]}
    )
    assert label.status_code == 200
    meta = client.get("/v1/models/colors/labels/stable/metadata", headers=admin_headers).json()
    assert meta["model_spec"]["version"] == "1"
    assert "serving_default" in meta["metadata"]["signature_def"]["signature_def"]
    status = client.get("/v1/models/colors/labels/stable", headers=admin_headers).json()
    assert status["model_version_status"][0]["version"] == "1"
    bad = client.post("/v1/models/colors:predict", headers=admin_headers, json={"instances": ["abc"]})
    assert bad.status_code == 400 and "instances[0]" in bad.json()["error"]
    bad = client.post("/v1/models/colors:predict", headers=admin_headers, json={"instances": [{"b64": "%%"}]})
    assert bad.status_code == 400
    assert client.post("/v1/models/colors:predict", json={"instances": []}).status_code == 401


def test_batched_answers_equal_unbatched_ones(settings):
    """Concurrent requests go through one batched model call; each answer equals its own call."""
    from app.serving.predictor import Predictor
    from app.serving.runtime import ModelRef
    from app.storage import get_store

    info = register_image_model(serving_config={"max_batch_size": 64, "max_wait_ms": 50})
    ref = ModelRef(
        info["id"],
        "acme",
        "colors",
        1,
        "image_classification",
        ("blue", "green", "red"),
        {"type": "image", "height": 8, "width": 8},
        info["artifacts"],
        {"max_batch_size": 64, "max_wait_ms": 50},
    )
    predictor = Predictor(settings, get_store(settings))
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8) for n in (1, 3, 2, 1, 5, 1)]
    loaded = predictor.model(ref, "keras")
    unbatched = [loaded.run(b) for b in batches]
    calls: list[int] = []
    original = loaded.batcher.on_batch
    loaded.batcher.on_batch = lambda n: (calls.append(n), original(n))

    async def go():  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(predictor.predict(ref, "keras", b, "test") for b in batches))

    results = asyncio.run(go())
    for (probs, _), expected in zip(results, unbatched, strict=True):
        np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    assert len(calls) < len(batches) and sum(calls) == 13
    predictor.close()


def test_cache_evicts_least_recently_used_within_budget(settings):
    from app.serving.predictor import Predictor
    from app.serving.runtime import ModelRef, estimate_footprint
    from app.storage import get_store

    infos = [register_image_model(name=f"m{i}") for i in range(3)]
    refs = [
        ModelRef(
            i["id"],
            "acme",
            f"m{n}",
            1,
            "image_classification",
            ("blue", "green", "red"),
            {"type": "image", "height": 8, "width": 8},
            i["artifacts"],
        )
        for n, i in enumerate(infos)
    ]
    one = estimate_footprint(infos[0]["artifacts"]["keras"]["size_bytes"], 12)
    budget = int(one * 2.5)  # room for two models
    predictor = Predictor(settings.model_copy(update={"model_cache_bytes": budget}), get_store(settings))
    x = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    for ref in refs[:2]:
        asyncio.run(predictor.predict(ref, "keras", x, "test"))
    asyncio.run(predictor.predict(refs[0], "keras", x, "test"))  # m0 is now the most recently used
    asyncio.run(predictor.predict(refs[2], "keras", x, "test"))
    keys = predictor.cache.keys()
    assert keys == [refs[0].cache_key("keras"), refs[2].cache_key("keras")]
    assert predictor.cache.used_bytes <= budget
    predictor.close()


def test_metrics_count_requests_per_model(client, admin_headers):
    register_image_model(name="metered")
    for _ in range(2):
        client.post("/v1/models/metered/predict", headers=admin_headers, json={"images": [_b64("red")]})
    text = client.get("/metrics").text
    assert (
        'tl_inference_requests_total{backend="keras",model="metered",outcome="ok",project="acme",protocol="native"'
        ',version="1"} 2.0' in text
    )
    counts = [ln for ln in text.splitlines() if ln.startswith("tl_inference_latency_seconds_count{")]
    assert any('model="metered"' in ln and ln.endswith(" 2.0") for ln in counts)
    assert "tl_model_cache_bytes" in text


def test_batch_prediction_over_a_dataset(client, admin_headers, live_worker):
    import csv
    import io
    import json
    import time

    register_image_model()
    dataset = upload_dataset(
        client,
        admin_headers,
        image_zip({k: COLORS[k] for k in ("red", "blue")}, per_class=3, size=8),
        "c.zip",
        name="colors",
    )
    assert dataset["state"] == "ready", dataset
    created = client.post(
        "/v1/models/colors/batch-predictions",
        headers=admin_headers,
        json={"dataset_id": dataset["id"], "top_k": 2},
    )
    assert created.status_code == 202, created.text
    batch_id = created.json()["id"]
    deadline = time.monotonic() + 120
    while (state := client.get(f"/v1/batch-predictions/{batch_id}", headers=admin_headers).json())["state"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, live_worker.log_tail()
        time.sleep(0.3)
    assert state["state"] == "succeeded", (state, live_worker.log_tail())
    assert state["num_items"] == 6
    rows = [json.loads(line) for line in client.get(state["results"]["jsonl"], headers=admin_headers).text.splitlines()]
    assert all(r["label"] == r["true_label"] for r in rows) and len(rows[0]["top"]) == 2
    table = list(csv.DictReader(io.StringIO(client.get(state["results"]["csv"], headers=admin_headers).text)))
    assert len(table) == 6 and {"item", "true_label", "predicted_label", "p_red"} <= set(table[0])
