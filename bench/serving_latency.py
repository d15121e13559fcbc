"""Serving benchmark, side by side in one run, on a MobileNetV2 (weights=None) at 96x96 built here.

1. the bare compiled model (this process, ``tf.function``): single-image p50, throughput at batch 1, 16, 32;
2. a real API server (uvicorn subprocess, embedded SQLite): RSS before the first prediction,
   single-image p50 over HTTP, and throughput with 16 concurrent clients against the same model
   registered twice in that one server — dynamic batching on, and off (``max_batch_size: 1``).

The load comes from a third process (this script with ``--load``): one asyncio loop keeping
``--clients`` HTTP/1.1 keep-alive connections busy with a pre-encoded request, so the client costs little of
the machine's CPU and does not share a GIL with either side. ``--protocol native``: the native predict route
with a 96x96 PNG, base64 in JSON (the server decodes it); ``--protocol v2-binary``: KServe V2 infer with the
binary tensor extension, a raw UINT8 tensor, as the bare model gets it.
The mean batch size the server ran (``tl_inference_batch_size`` on /metrics) is printed per phase.

Every figure is measured in each of ``--rounds`` interleaved rounds (the machine may be shared) and the
medians are printed; the ratios are medians of the per-round ratios.

    python bench/serving_latency.py [--protocol native|v2-binary] [--seconds 8] [--rounds 3] [--size 96] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from proc_stats import cpu_s  # noqa: E402


def build_model(size: int):  # type: ignore[no-untyped-def]
    import keras

    inputs = keras.Input((size, size, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None, include_top=False, pooling="avg")
    outputs = keras.layers.Dense(10, activation="softmax")(base(x, training=False))
    return keras.Model(inputs, outputs)


def compiled(model, size: int):  # type: ignore[no-untyped-def]
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8)])
    def serve(x):  # type: ignore[no-untyped-def]
        return model(x, training=False)

    return serve


def bare(serve, size: int, seconds: float) -> tuple[float, dict[str, float]]:  # type: ignore[no-untyped-def]
    """Single-image p50 (ms); throughput (img/s) and CPU per image (core-ms) at batch 1, 16 and 32."""
    import numpy as np
    import tensorflow as tf

    times = []
    rates = {}
    for batch in (1, 16, 32):
        x = np.zeros((batch, size, size, 3), np.uint8)
        np.asarray(serve(tf.constant(x)))
        n, started, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - started < seconds:
            t = time.perf_counter()
            np.asarray(serve(tf.constant(x)))
            n += 1
            if batch == 1:
                times.append(time.perf_counter() - t)
        rates[f"bare{batch}"] = batch * n / (time.perf_counter() - started)
        rates[f"bare{batch}_cpu_ms"] = (time.process_time() - cpu) * 1000 / (batch * n)
    return statistics.median(times) * 1000, rates


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the load generator (runs in its own process) ---------------------------------------------------


async def _client(port: int, request: bytes, stop: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop:
            started = time.perf_counter()
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def _load(port: int, request: bytes, clients: int, seconds: float) -> dict[str, float]:
    warm: list[float] = []  # one second of the same load first: loads the model, fills the pools
    await asyncio.gather(*(_client(port, request, time.monotonic() + 1.0, warm) for _ in range(clients)))
    latencies: list[float] = []
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(_client(port, request, time.monotonic() + seconds, latencies) for _ in range(clients)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "rate": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "n": len(latencies),
        "client_cpu_ms": cpu * 1000 / len(latencies),
    }


def load_main(args: argparse.Namespace) -> None:
    body = Path(args.body).read_bytes()
    extra = "".join(f"{h}\r\n" for h in args.header or [])
    head = (
        f"POST {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\nAuthorization: Bearer {args.key}\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    result = asyncio.run(_load(args.port, head.encode() + body, args.clients, args.seconds))
    print(json.dumps(result))


# --- the benchmark -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """How the load client asks for one image: the path (``{name}``: the model), body file and headers."""

    path: str
    body: Path
    headers: list[str]


def native_request(folder: Path, png: bytes) -> Protocol:
    """``POST /v1/models/{name}/predict`` with the PNG base64-encoded in JSON (the server decodes the PNG)."""
    body = folder / "native.json"
    body.write_text(json.dumps({"images": [base64.b64encode(png).decode()]}))
    return Protocol("/v1/models/{name}/predict", body, ["Content-Type: application/json"])


def v2_binary_request(folder: Path, pixels: bytes, size: int) -> Protocol:
    """KServe V2 infer with the binary tensor extension: a UINT8 [1, size, size, 3] tensor as raw bytes (what a
    Triton client sends for ``set_data_from_numpy(..., binary_data=True)``), binary output requested."""
    header = {
        "inputs": [
            {
                "name": "images",
                "datatype": "UINT8",
                "shape": [1, size, size, 3],
                "parameters": {"binary_data_size": len(pixels)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    encoded = json.dumps(header).encode()
    body = folder / "v2.bin"
    body.write_bytes(encoded + pixels)
    headers = ["Content-Type: application/octet-stream", f"Inference-Header-Content-Length: {len(encoded)}"]
    return Protocol("/v2/models/{name}/infer", body, headers)


def run_load(port: int, key: str, name: str, protocol: Protocol, clients: int, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--load",
            "--port",
            str(port),
            "--key",
            key,
            "--path",
            protocol.path.format(name=name),
            "--body",
            str(protocol.body),
            "--clients",
            str(clients),
            "--seconds",
            str(seconds),
            *[arg for h in protocol.headers for arg in ("--header", h)],
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def batch_stats(base: str) -> dict[str, tuple[float, float]]:
    """Per model: (model calls, items) so far, from the ``tl_inference_batch_size`` histogram."""
    import httpx

    text = httpx.get(f"{base}/metrics", timeout=10).text
    stats: dict[str, list[float]] = {}
    for m in re.finditer(r"^tl_inference_batch_size_(count|sum)\{([^}]*)\} ([0-9.e+]+)$", text, re.M):
        model = re.search(r'model="([^"]*)"', m.group(2)).group(1)  # type: ignore[union-attr]
        entry = stats.setdefault(model, [0.0, 0.0])
        entry[0 if m.group(1) == "count" else 1] += float(m.group(3))
    return {k: (v[0], v[1]) for k, v in stats.items()}


def mean_batch(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], name: str) -> float:
    calls = after[name][0] - before.get(name, (0.0, 0.0))[0]
    items = after[name][1] - before.get(name, (0.0, 0.0))[1]
    return items / calls if calls else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    parser.add_argument("--header", action="append", help=argparse.SUPPRESS)
    parser.add_argument(
        "--protocol",
        choices=("native", "v2-binary"),
        default="native",
        help="native: PNG, base64 in JSON (the server decodes it); v2-binary: KServe V2 raw UINT8 tensor",
    )
    args = parser.parse_args()
    if args.load:
        load_main(args)
        return
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
    serve = compiled(model, args.size)
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
    image = np.random.default_rng(0).integers(0, 255, (args.size, args.size, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    if args.protocol == "native":
        protocol = native_request(data, buf.getvalue())
    else:
        protocol = v2_binary_request(data, image.tobytes(), args.size)

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
    rounds: list[dict[str, float]] = []
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        httpx.get(f"{base}/v1/models/batched", headers={"Authorization": f"Bearer {key}"})
        rss = rss_mb(server.pid)
        for r in range(args.rounds):  # interleaved, so that other load on the machine hits every figure alike
            p50, rates = bare(serve, args.size, max(1.5, args.seconds / 4))
            row: dict[str, float] = {"bare_p50": p50, **rates}
            row["http_p50"] = run_load(port, key, "batched", protocol, 1, max(2.0, args.seconds / 3))["p50_ms"]
            for name in ("unbatched", "batched"):
                before, cpu = batch_stats(base), cpu_s(server.pid)
                result = run_load(port, key, name, protocol, args.clients, args.seconds)
                cpu = cpu_s(server.pid) - cpu  # includes the 1 s warm-up of the load
                row[name], row[f"{name}_p50"] = result["rate"], result["p50_ms"]
                row[f"{name}_batch"] = mean_batch(before, batch_stats(base), name)
                row[f"{name}_server_cpu_ms"] = cpu * 1000 / (result["rate"] * (args.seconds + 1))
                row[f"{name}_client_cpu_ms"] = result["client_cpu_ms"]
            rounds.append(row)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)

    def med(key: str) -> float:
        return statistics.median(row[key] for row in rounds)

    def med_ratio(a: str, b: str) -> float:
        return statistics.median(row[a] / row[b] for row in rounds)

    print(
        f"\nMobileNetV2(weights=None) {args.size}x{args.size}, {os.cpu_count()} CPUs, {args.clients} clients, "
        f"protocol {args.protocol}, medians of {args.rounds} interleaved rounds"
    )
    print(f"API RSS before first prediction: {rss:.0f} MB (target < 200)")
    print(
        f"single image p50: bare compiled model {med('bare_p50'):.1f} ms, over HTTP {med('http_p50'):.1f} ms; "
        f"overhead {statistics.median(r['http_p50'] - r['bare_p50'] for r in rounds):+.1f} ms (target <= +5)"
    )
    print(
        f"bare compiled model: batch 1 {med('bare1'):.1f}, batch 16 {med('bare16'):.1f}, "
        f"batch 32 {med('bare32'):.1f} img/s; CPU per image {med('bare1_cpu_ms'):.1f} / {med('bare16_cpu_ms'):.1f} / "
        f"{med('bare32_cpu_ms'):.1f} core-ms"
    )
    for name in ("batched", "unbatched"):
        print(
            f"server, {name}: {med(name):.1f} img/s, p50 {med(name + '_p50'):.0f} ms, "
            f"mean model batch {med(name + '_batch'):.1f}; CPU per image: server {med(name + '_server_cpu_ms'):.1f} "
            f"core-ms (model included), load client {med(name + '_client_cpu_ms'):.2f} core-ms"
        )
    print(
        f"ratios: batched/unbatched = {med_ratio('batched', 'unbatched'):.2f} (target >= 3); "
        f"batched/bare batch-32 = {med_ratio('batched', 'bare32'):.2f} (target >= 0.8)"
    )
    print(
        f"the model's own ceilings: bare batch-16/batch-1 = {med_ratio('bare16', 'bare1'):.2f}, "
        f"bare batch-16/batch-32 = {med_ratio('bare16', 'bare32'):.2f} "
        f"({args.clients} clients with one request each in flight never make a batch over {args.clients})"
    )


if __name__ == "__main__":
    main()
