"""KServe V2 / Open Inference Protocol with Triton's own HTTP client against a real uvicorn server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest

from tests.conftest import DATA_DIR, REPO_ROOT
from tests.helpers import COLORS, image_bytes
from tests.model_factory import register_image_model, register_text_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[str]:
    port = _free_port()
    log = (DATA_DIR / "uvicorn-v2.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "app.main:app_factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError((DATA_DIR / "uvicorn-v2.log").read_text()[-3000:])
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def test_triton_client_infers_with_bytes_and_pixel_tensors(server, admin_headers):
    # tritonclient writes its Inference-Header-Content-Length into the headers dict it is given: pass copies.
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    register_image_model()
    register_image_model()
    client = httpclient.InferenceServerClient(url=server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("colors", headers=dict(admin_headers))
    meta = client.get_model_metadata("colors", headers=dict(admin_headers))
    assert meta["versions"] == ["2", "1"]
    assert meta["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}

    encoded = np.array([image_bytes(COLORS[c], 8, seed=i) for i, c in enumerate(("red", "blue"))], dtype=np.object_)
    inp = httpclient.InferInput("image", [2], "BYTES")
    inp.set_data_from_numpy(encoded)  # binary tensor extension
    result = client.infer("colors", [inp], headers=dict(admin_headers))
    probs = result.as_numpy("probabilities")
    assert probs.shape == (2, 3) and probs.argmax(1).tolist() == [2, 0]
    assert [label.decode() for label in result.as_numpy("label")] == ["red", "blue"]
    assert result.get_response()["model_version"] == "2"

    pixels = np.stack([np.full((8, 8, 3), (20, 210, 20), dtype=np.uint8)] * 3)
    for dtype, data in (("UINT8", pixels), ("FP32", pixels.astype(np.float32))):
        for binary in (True, False):
            tensor = httpclient.InferInput("image", list(data.shape), dtype)
            tensor.set_data_from_numpy(data, binary_data=binary)
            outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
            res = client.infer("colors", [tensor], model_version="1", outputs=outputs, headers=dict(admin_headers))
            assert res.as_numpy("probabilities").argmax(1).tolist() == [1, 1, 1]
            assert res.get_response()["model_version"] == "1"

    import httpx

    httpx.put(f"http://{server}/v1/models/colors/aliases/production", headers=admin_headers, json={"version": 1})
    res = client.infer("colors", [inp], model_version="production", headers=dict(admin_headers))
    assert res.get_response()["model_version"] == "1"

    with pytest.raises(InferenceServerException) as no_key:
        client.infer("colors", [inp])
    assert no_key.value.status() == "401"
    bad = httpclient.InferInput("image", [1], "BYTES")
    bad.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException) as err:
        client.infer("colors", [bad], headers=dict(admin_headers))
    assert err.value.status() == "400" and "image[0]" in err.value.message()
    with pytest.raises(InferenceServerException) as missing:
        client.infer("nope", [inp], headers=dict(admin_headers))
    assert missing.value.status() == "404"


def test_triton_client_sends_texts(server, admin_headers):
    import tritonclient.http as httpclient

    register_text_model()
    client = httpclient.InferenceServerClient(url=server)
    texts = httpclient.InferInput("text", [2], "BYTES")
    texts.set_data_from_numpy(np.array([b"good good", b"awful"], dtype=np.object_), binary_data=False)
    res = client.infer("sentiment", [texts], headers=dict(admin_headers), request_compression_algorithm="gzip")
    assert [x.decode() for x in res.as_numpy("label")] == ["positive", "negative"]
