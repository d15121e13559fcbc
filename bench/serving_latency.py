"""Serving benchmark, side by side in one run, on a MobileNetV2 (weights=None) at 96x96 built here.

1. the bare compiled model: single-image p50 and batch-32 throughput (same process, ``tf.function``);
2. a real API server (uvicorn subprocess, embedded SQLite): RSS before the first prediction,
   single-image p50 over HTTP, and throughput with 16 concurrent clients, against the same model
   registered twice — dynamic batching on, and off (``max_batch_size: 1``, an unbatched server).

    python bench/serving_latency.py [--seconds 10] [--size 96]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_model(size: int):  # type: ignore[no-untyped-def]
    import keras

    inputs = keras.Input((size, size, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None, include_top=False, pooling="avg")
    outputs = keras.layers.Dense(10, activation="softmax")(base(x, training=False))
    return keras.Model(inputs, outputs)


def bare(model, size: int, rounds: int = 60) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    import numpy as np
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8)])
    def serve(x):  # type: ignore[no-untyped-def]
        return model(x, training=False)

    one = tf.constant(np.zeros((1, size, size, 3), np.uint8))
    many = tf.constant(np.zeros((32, size, size, 3), np.uint8))
    serve(one), serve(many)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        serve(one).numpy()
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    n = 10
    for _ in range(n):
        serve(many).numpy()
    return statistics.median(times) * 1000, 32 * n / (time.perf_counter() - t)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="tl-bench-"))
    os.environ.update({"TL_DATA_DIR": str(data), "TF_CPP_MIN_LOG_LEVEL": "3", "TL_LOG_LEVEL": "WARNING"})
    os.environ.pop("TL_DATABASE_URL", None)
    os.environ.pop("TL_BROKER_URL", None)

    import httpx
    import numpy as np
    from PIL import Image

    from app.auth import create_key
    from app.config import get_settings
    from app.db import session_scope
    from app.migrate import upgrade
    from tests.model_factory import register

    settings = get_settings()
    settings.ensure_dirs()
    upgrade(settings.resolved_database_url)
    model = build_model(args.size)
    bare_p50, bare_tput = bare(model, args.size)
    labels = [f"c{i}" for i in range(10)]
    sig = {"type": "image", "height": args.size, "width": args.size, "channels": 3, "dtype": "uint8"}
    register(model, project="bench", name="batched", labels=labels, signature=sig, task="image_classification")
    register(
        model,
        project="bench",
        name="unbatched",
        labels=labels,
        signature=sig,
        task="image_classification",
        serving_config={"max_batch_size": 1},
    )
    with session_scope() as session:
        _, key = create_key(session, "bench", "read")
    headers = {"Authorization": f"Bearer {key}"}

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "app.main:app_factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        httpx.get(f"{base}/v1/models/batched", headers=headers)
        rss = rss_mb(server.pid)

        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (args.size, args.size, 3), np.uint8)).save(buf, "PNG")
        body = {"images": [base64.b64encode(buf.getvalue()).decode()]}

        def call(client: httpx.Client, name: str) -> None:
            r = client.post(f"{base}/v1/models/{name}/predict", json=body, headers=headers)
            r.raise_for_status()

        with httpx.Client(timeout=60) as client:
            for name in ("batched", "unbatched"):
                for _ in range(5):
                    call(client, name)  # load + warm up
            times = []
            for _ in range(60):
                t = time.perf_counter()
                call(client, "batched")
                times.append(time.perf_counter() - t)
        http_p50 = statistics.median(times) * 1000

        def throughput(name: str) -> float:
            done = [0] * 16
            stop = time.monotonic() + args.seconds

            def worker(i: int) -> None:
                with httpx.Client(timeout=60) as c:
                    while time.monotonic() < stop:
                        call(c, name)
                        done[i] += 1

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            return sum(done) / (time.perf_counter() - t)

        unbatched = throughput("unbatched")
        batched = throughput("batched")
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(f"MobileNetV2(weights=None) {args.size}x{args.size}, {os.cpu_count()} CPUs")
    print(f"API RSS before first prediction: {rss:.0f} MB (target < 200)")
    print(
        f"bare compiled model, batch 1 p50: {bare_p50:.1f} ms; HTTP single-image p50: {http_p50:.1f} ms; "
        f"overhead {http_p50 - bare_p50:+.1f} ms (target <= +5)"
    )
    print(f"bare compiled model, batch 32: {bare_tput:.1f} img/s")
    print(f"16 clients: batched {batched:.1f} img/s, unbatched {unbatched:.1f} img/s")
    print(
        f"ratios: batched/unbatched = {batched / unbatched:.2f} (target >= 3); "
        f"batched/bare batch-32 = {batched / bare_tput:.2f} (target >= 0.8)"
    )


if __name__ == "__main__":
    main()
