"""The text path end to end: CSV upload → zero-shot job on the real offline MiniLM → predict raw strings."""

from __future__ import annotations

import pytest

from tests.helpers import upload_dataset, wait_for_job

ROWS = [
    ("the team won the football match", "sports"),
    ("a great goal in the final minute", "sports"),
    ("basketball season starts today", "sports"),
    ("this pasta recipe is delicious", "food"),
    ("bake the bread for an hour", "food"),
    ("chocolate cake for dessert", "food"),
    ("heavy rain expected tomorrow", "weather"),
    ("snow storm in the mountains", "weather"),
    ("strong winds and thunder tonight", "weather"),
]


@pytest.mark.slow
def test_zero_shot_text_job_then_predict(client, admin_headers, live_worker):
    csv_bytes = ("sentence,topic\n" + "".join(f"{t},{label}\n" for t, label in ROWS)).encode()
    dataset = upload_dataset(
        client,
        admin_headers,
        csv_bytes,
        "topics.csv",
        name="topics",
        task="text_classification",
        text_column="sentence",
        label_column="topic",
    )
    assert dataset["state"] == "ready", dataset
    spec = {
        "task": "text_classification",
        "strategy": "zero_shot",
        "class_descriptions": {
            "sports": "sports, games, teams and athletes",
            "food": "food, cooking and recipes",
            "weather": "weather, rain, sun, wind and snow",
        },
        "hyperparameters": {"max_seq_length": 32},
    }
    submitted = client.post(
        "/v1/jobs", headers=admin_headers, json={"dataset_id": dataset["id"], "model_name": "topics", "spec": spec}
    )
    assert submitted.status_code == 201, submitted.text
    job = wait_for_job(client, submitted.json()["id"], admin_headers)
    assert job["state"] == "succeeded", (job, live_worker.log_tail())

    version = client.get("/v1/models/topics/versions/1", headers=admin_headers).json()
    assert version["input_signature"]["type"] == "text"
    assert sorted(version["labels"]) == ["food", "sports", "weather"]

    texts = ["a thrilling match for the home team", "roast the vegetables in the oven"]
    predicted = client.post("/v1/models/topics/predict", headers=admin_headers, json={"texts": texts})
    assert predicted.status_code == 200, predicted.text
    labels = [p["label"] for p in predicted.json()["predictions"]]
    assert labels == ["sports", "food"]

    wrong = client.post(
        "/v1/models/topics/predict", headers=admin_headers, files={"files": ("x.png", b"abc", "image/png")}
    )
    assert wrong.status_code == 415
