"""Small data builders for tests: tiny image archives and text files that a model can learn."""

from __future__ import annotations

import io
import time
import zipfile
from typing import Any

import numpy as np
from PIL import Image

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def image_bytes(color: tuple[int, int, int], size: int = 16, seed: int = 0, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    base = np.array(color, dtype=np.int16)
    pixels = np.clip(base + rng.integers(-25, 25, size=(size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def image_zip(
    classes: dict[str, tuple[int, int, int]] | None = None, per_class: int = 12, size: int = 16, root: str = ""
) -> bytes:
    classes = classes or {k: COLORS[k] for k in ("red", "blue")}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for ci, (label, color) in enumerate(classes.items()):
            for i in range(per_class):
                zf.writestr(f"{root}{label}/{i}.png", image_bytes(color, size, seed=ci * 1000 + i))
    return buf.getvalue()


TINY_IMAGE_SPEC: dict[str, Any] = {
    "task": "image_classification",
    "base": {"kind": "catalog", "name": "MobileNetV2", "weights": "none", "alpha": 0.35},
    "strategy": "feature_extraction",
    "hyperparameters": {"epochs": 2, "batch_size": 8, "image_size": 32, "learning_rate": 0.01},
    "seed": 1,
}


def wait_for_job(client: Any, job_id: str, headers: dict[str, str], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s; last state {job['state']}")


def wait_for_dataset(client: Any, dataset_id: str, headers: dict[str, str], timeout: float = 60) -> dict[str, Any]:
    """Poll until a dataset's validation is done (ready or invalid); needs a worker on the io queue."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v1/datasets/{dataset_id}", headers=headers).json()
        if body.get("state") in ("ready", "invalid"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"dataset {dataset_id} not validated in {timeout}s; last: {body.get('state')}")


def validate_now(client: Any, dataset_id: str, headers: dict[str, str]) -> dict[str, Any]:
    """Run the worker's validation in this process (for tests without a live worker), then wait for it.

    Safe next to a live worker: a dataset is claimed atomically, so whichever comes first validates it.
    """
    from worker.dataset_validation import validate_dataset_by_id

    validate_dataset_by_id(dataset_id)
    return wait_for_dataset(client, dataset_id, headers)


def upload_dataset(
    client: Any,
    headers: dict[str, str],
    content: bytes | None = None,
    filename: str = "d.zip",
    *,
    name: str = "d",
    inline: bool = True,
    **form: str,
) -> dict[str, Any]:
    """Upload and return the validated dataset (validated in-process when ``inline``)."""
    content = image_zip() if content is None else content
    response = client.post(
        "/v1/datasets", headers=headers, files={"file": (filename, content)}, data={"name": name, **form}
    )
    assert response.status_code in (200, 201), response.text
    dataset_id = response.json()["id"]
    return validate_now(client, dataset_id, headers) if inline else wait_for_dataset(client, dataset_id, headers)
