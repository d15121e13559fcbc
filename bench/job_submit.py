"""Job submission throughput and the service's overhead per job, on Postgres + Redis.

1. Submissions/s: one uvicorn worker, a bounded number of POST /v1/jobs to 127.0.0.1 from a separate
   load-generator process (``bench/http_load.py``; the jobs go to a queue no worker reads), in rounds
   alternating with GET /healthz on the same server for scale.
2. Overhead per job: submit → succeeded wall time minus the engine's own training time (``engine_seconds``
   reported by the worker), for tiny jobs on a warm worker (its idle pool child has the engine imported).

    python bench/job_submit.py [--submissions 1000] [--connections 16] [--rounds 2] [--jobs 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from proc_stats import cpu_s
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_ADMIN = os.environ.get("TL_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("TL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SPEC = {
    "task": "image_classification",
    "base": {"kind": "catalog", "name": "MobileNetV2", "weights": "none", "alpha": 0.35},
    "strategy": "feature_extraction",
    "hyperparameters": {"epochs": 2, "batch_size": 8, "image_size": 32},
    "seed": 1,
}


def _zip(per_class: int = 10) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for ci, (label, color) in enumerate({"red": (220, 30, 30), "blue": (30, 40, 220)}.items()):
            for i in range(per_class):
                rng = np.random.default_rng(ci * 100 + i)
                px = np.clip(np.array(color) + rng.integers(-25, 25, (16, 16, 3)), 0, 255).astype(np.uint8)
                out = io.BytesIO()
                Image.fromarray(px).save(out, format="PNG")
                zf.writestr(f"{label}/{i}.png", out.getvalue())
    return buf.getvalue()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _load(port: int, headers: dict[str, str], n: int, connections: int, path: str, body: str = "") -> dict[str, Any]:
    """``n`` requests from a separate load-generator process (``bench/http_load.py``), so the client's own
    CPU is not the server's interpreter's; fails on any non-2xx answer."""
    argv = [sys.executable, str(ROOT / "bench" / "http_load.py"), "--port", str(port), "--path", path]
    argv += ["--requests", str(n), "--connections", str(connections)]
    argv += [a for k, v in headers.items() for a in ("--header", f"{k}: {v}")]
    if body:
        argv += ["--method", "POST", "--body", body]
    result: dict[str, Any] = json.loads(subprocess.run(argv, check=True, capture_output=True).stdout)
    if result["error"]:
        raise SystemExit(f"{path}: {result['error']}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submissions", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=3, help="jobs run for the overhead figure; 0 skips it")
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    db = f"tl_bench_{run}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    data_dir = Path(tempfile.mkdtemp(prefix="tl-bench-"))
    env = dict(
        os.environ,
        TL_DATABASE_URL=PG_ADMIN.rsplit("/", 1)[0] + f"/{db}",
        TL_BROKER_URL=REDIS,
        TL_DATA_DIR=str(data_dir),
        TL_DEFAULT_QUEUE=f"tl-bench-{run}",
        TL_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    os.environ.update(env)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        key = (
            subprocess.run(
                [sys.executable, "-m", "app.cli", "keys", "create", "--project", "bench", "--scope", "admin"],
                env=env,
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            .stdout.decode()
            .strip()
        )
        headers = {"Authorization": f"Bearer {key}"}
        port = _port()
        base = f"http://127.0.0.1:{port}"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app.main:app_factory",
                    "--factory",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                env=env,
                cwd=ROOT,
            )
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            up = c.post("/v1/datasets", files={"file": ("c.zip", _zip(), "application/zip")}, data={"name": "c"})
            dataset = up.json()
            if dataset["state"] != "ready":  # no worker runs yet: validate it here, as the worker would
                from app.config import get_settings
                from worker.dataset_validation import validate_dataset_by_id

                validate_dataset_by_id(dataset["id"], get_settings())
                dataset = c.get(f"/v1/datasets/{dataset['id']}").json()
            assert dataset["state"] == "ready", dataset

        body = {"dataset_id": dataset["id"], "model_name": "bench", "spec": SPEC, "device": "gpu"}
        payload = json.dumps(body)
        _load(port, headers, 200, args.connections, "/v1/jobs", payload)  # warm-up
        healths: list[float] = []
        submits: list[float] = []
        for r in range(args.rounds):  # alternated, so load from elsewhere on the machine hits both alike
            health = _load(port, headers, args.submissions, args.connections, "/healthz")
            cpu = cpu_s(procs[0].pid)
            submit = _load(port, headers, args.submissions, args.connections, "/v1/jobs", payload)
            cpu_ms = (cpu_s(procs[0].pid) - cpu) * 1000 / args.submissions
            healths.append(health["rate"])
            submits.append(submit["rate"])
            print(
                f"  round {r + 1}: POST /v1/jobs {submit['rate']:.0f}/s (p50 {submit['p50_ms']} ms, "
                f"p99 {submit['p99_ms']} ms, server CPU {cpu_ms:.1f} ms per submission); "
                f"GET /healthz {health['rate']:.0f}/s (p50 {health['p50_ms']} ms)"
            )
        best, ref = max(submits), max(healths)
        print(
            f"submissions: best {best:.0f}/s ({args.submissions} POST /v1/jobs per round, {args.connections} "
            f"connections, one uvicorn worker); GET /healthz best {ref:.0f}/s; submit/healthz ratio "
            f"{best / ref:.2f}; target 200/s: {'met' if best >= 200 else 'MISSED'} ({best / 200:.2f}x)"
        )
        if not args.jobs:
            return 0

        log = (data_dir / "worker.log").open("wb")
        from app.cli import worker_argv

        procs.append(
            subprocess.Popen(worker_argv(None, 1, "WARNING"), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        )
        overheads: list[float] = []
        with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
            for i in range(args.jobs + 1):  # the first job warms the worker and is not counted
                time.sleep(8)  # the idle pool child imports the engine (prewarm) meanwhile
                started = time.perf_counter()
                job = c.post("/v1/jobs", json={**body, "device": "cpu"}).json()
                while job["state"] not in ("succeeded", "failed", "cancelled"):
                    time.sleep(0.05)
                    job = c.get(f"/v1/jobs/{job['id']}").json()
                wall = time.perf_counter() - started
                if job["state"] != "succeeded":
                    raise SystemExit(f"job {job['state']}: {job['error']}")
                engine = float(job["result"]["engine_seconds"])
                if i:
                    overheads.append(wall - engine)
                print(
                    f"  job {i}{' (warm-up)' if not i else ''}: wall {wall:.2f}s, engine {engine:.2f}s, "
                    f"overhead {wall - engine:.2f}s"
                )
        worst = max(overheads)
        print(
            f"overhead per job on a warm worker: median {float(np.median(overheads)):.2f}s, worst {worst:.2f}s; "
            f"target 2 s: {'met' if worst <= 2 else 'MISSED'} ({worst / 2:.2f}x of the budget)"
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        import redis

        client = redis.Redis.from_url(REDIS)
        queue = env["TL_DEFAULT_QUEUE"]
        client.delete(
            *[f"{q}{s}" for q in (queue, f"{queue}.gpu", f"{queue}.io") for s in ["", *[f":{k}" for k in range(1, 10)]]]
        )
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
