"""Embedded mode as a newcomer runs it: ``transferlab dev`` with SQLite and the filesystem broker."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import REPO_ROOT
from tests.helpers import COLORS, TINY_IMAGE_SPEC, image_bytes, image_zip, wait_for_dataset, wait_for_job


def _processes_with_env(marker: str) -> list[int]:
    """PIDs whose environment contains ``marker`` (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker.encode() in f.read():
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_dev_command_runs_the_thin_path_embedded(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TL_")}
    env.update(TL_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    port = _free_port()
    log_path = tmp_path / "dev.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "dev", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        key = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            match = re.search(r"^\s+(tl_\S+)$", text, re.M)
            if match and " ready." in text:
                key = match.group(1)
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            assert proc.poll() is None, text[-3000:]
            time.sleep(0.5)
        assert key, log_path.read_text()[-3000:]
        assert (tmp_path / "data" / "transferlab.db").exists()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, timeout=60) as client:
            ready = client.get("/readyz").json()
            assert ready["checks"]["broker"] == "ok"
            up = client.post(
                "/v1/datasets",
                headers=headers,
                files={"file": ("c.zip", image_zip(per_class=10), "application/zip")},
                data={"name": "c"},
            )
            assert up.status_code == 201, up.text
            assert wait_for_dataset(client, up.json()["id"], headers)["state"] == "ready"
            job = client.post(
                "/v1/jobs",
                headers=headers,
                json={"dataset_id": up.json()["id"], "model_name": "embedded", "spec": TINY_IMAGE_SPEC},
            ).json()
            done = wait_for_job(client, job["id"], headers)
            assert done["state"] == "succeeded", (done, log_path.read_text()[-4000:])
            pred = client.post(
                "/v1/models/embedded/predict",
                headers=headers,
                files={"files": ("x.png", image_bytes(COLORS["red"]), "image/png")},
            )
            assert pred.status_code == 200, pred.text
            assert pred.json()["predictions"][0]["label"] in ("red", "blue")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    marker = f"TL_DATA_DIR={tmp_path / 'data'}"
    deadline = time.monotonic() + 30
    while _processes_with_env(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _processes_with_env(marker), "the dev command left its worker running"
    # A second start must not print a new admin key.
    with (tmp_path / "dev2.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "dev", "--port", str(_free_port())],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(6)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "admin API key" not in (tmp_path / "dev2.log").read_text()
    deadline = time.monotonic() + 30
    while _processes_with_env(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _processes_with_env(marker), "the dev command left its worker running"
