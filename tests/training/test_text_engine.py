"""The text path with the real offline all-MiniLM-L6-v2 (short texts, 1 epoch)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.training.conftest import RecordingCallbacks
from worker.training.data import DataSource
from worker.training.engine import train
from worker.training.spec import JobSpec

TEXTS = {
    "sports": [
        "the team won the football match",
        "a great goal in the final minute",
        "the tennis player served",
        "basketball season starts today",
        "the runner finished the marathon",
        "the coach praised the team",
    ],
    "food": [
        "this pasta recipe is delicious",
        "bake the bread for an hour",
        "fresh salad with tomatoes",
        "the soup needs more salt",
        "chocolate cake for dessert",
        "grilled fish with lemon",
    ],
    "weather": [
        "heavy rain expected tomorrow",
        "a sunny and warm afternoon",
        "snow storm in the mountains",
        "strong winds and thunder tonight",
        "cloudy skies all week",
        "the forecast says frost",
    ],
}


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "data.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for label, texts in TEXTS.items():
            for t in texts:
                w.writerow([t, label])
    return path


def text_spec(**overrides: Any) -> JobSpec:
    hp = {"epochs": 1, "batch_size": 8, "max_seq_length": 16, **overrides.pop("hyperparameters", {})}
    return JobSpec.model_validate({"task": "text_classification", "hyperparameters": hp, **overrides})


@pytest.fixture(scope="module")
def fe_text(text_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    spec = text_spec(hyperparameters={"epochs": 3, "learning_rate": 1e-2, "early_stopping": None})
    return train(spec, DataSource("text_file", text_file), RecordingCallbacks(), tmp_path_factory.mktemp("fe"))


def test_minilm_feature_extraction_and_raw_string_model(fe_text: Any) -> None:
    from worker.training.inference import load_for_inference, make_predict_fn

    r = fe_text
    assert r.labels == ["food", "sports", "weather"]
    assert r.input_signature == {"type": "text", "dtype": "string"}
    assert r.trainable_params == 384 * 3 + 3
    assert r.total_params > 22_000_000
    assert r.base["name"] == "all-MiniLM-L6-v2"
    assert r.artifacts["keras"].parity == 1.0
    model = load_for_inference(r.artifacts["keras"].path)  # offline, safe mode, tokenizer inside
    probs = make_predict_fn(model)(["it will rain all day", "a goal in the match", "tomato soup recipe"])
    assert probs.shape == (3, 3)
    assert [r.labels[i] for i in probs.argmax(axis=1)] == ["weather", "sports", "food"]


def test_zero_shot_with_class_descriptions(text_file: Path, tmp_path: Path) -> None:
    spec = text_spec(
        strategy="zero_shot",
        class_descriptions={
            "sports": "sports, games, teams and athletes",
            "food": "food, cooking and recipes",
            "weather": "weather, rain, sun, wind and snow",
        },
    )
    r = train(spec, DataSource("text_file", text_file), None, tmp_path)
    assert r.trainable_params == 0 and r.epochs_completed == 0
    assert len(r.splits["test"]) == 18 and not r.splits["train"]
    assert r.metrics["accuracy"] >= 0.8


def test_lora_peft_on_text_backbone(text_file: Path, tmp_path: Path) -> None:
    spec = text_spec(strategy="peft", hyperparameters={"lora_rank": 2, "early_stopping": None})
    r = train(spec, DataSource("text_file", text_file), None, tmp_path)
    head = 384 * 3 + 3
    lora = r.trainable_params - head
    assert 0 < lora <= 0.05 * (r.total_params - head)
    assert r.epochs_completed == 1 and r.artifacts["keras"].parity == 1.0
    assert np.isfinite(r.history[0]["loss"])
