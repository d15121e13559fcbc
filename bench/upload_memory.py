"""Uploading a 200 MB zip: the API's memory stays flat and the upload keeps up with the disk.

Runs the API with uvicorn in a subprocess (embedded mode, its own temporary data dir), uploads a
generated zip over HTTP, samples the server's RSS from /proc while it streams, and compares the
upload's throughput with the disk's write speed measured in the same run (same folder, same
fsync at the end). Targets: RSS growth < 50 MB, throughput >= 50% of the disk write speed.

    python bench/upload_memory.py [--mb 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


def make_zip(path: Path, total_mb: int) -> None:
    """Incompressible members in two class folders (stored, like JPEGs in a typical upload)."""
    member = 512 * 1024
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(total_mb * MB // member):
            zf.writestr(f"data/{'ab'[i % 2]}/{i}.jpg", os.urandom(member))


def disk_write_mb_s(folder: Path, total_mb: int) -> float:
    block = os.urandom(MB)
    target = folder / "disk-speed.bin"
    start = time.perf_counter()
    with target.open("wb") as f:
        for _ in range(total_mb):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - start
    target.unlink()
    return total_mb / elapsed


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tl-bench-upload-"))
    server: subprocess.Popen[bytes] | None = None
    try:
        data_dir = work / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TL_")}
        env.update(
            TL_DATA_DIR=str(data_dir), TL_SWEEP_INTERVAL_S="0", TL_LOG_LEVEL="WARNING", PYTHONPATH=str(REPO_ROOT)
        )
        key = subprocess.run(
            [sys.executable, "-m", "app.cli", "keys", "create", "--project", "bench", "--scope", "write"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app_factory",
                "--factory",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=REPO_ROOT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)

        zip_path = work / "upload.zip"
        make_zip(zip_path, args.mb)
        size_mb = zip_path.stat().st_size / MB
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, timeout=600, headers=headers) as client:
            # Warm up (imports, first database use) with a small upload, then measure the big one.
            small = work / "small.zip"
            make_zip(small, 1)
            with small.open("rb") as f:
                client.post("/v1/datasets", files={"file": ("small.zip", f)}, data={"name": "warm"}).raise_for_status()

            disk = disk_write_mb_s(data_dir, args.mb)
            before = rss_kb(server.pid)
            peak = [before]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_kb(server.pid))
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            start = time.perf_counter()
            with zip_path.open("rb") as f:
                response = client.post("/v1/datasets", files={"file": ("upload.zip", f)}, data={"name": "big"})
            elapsed = time.perf_counter() - start
            done.set()
            sampler.join()
            response.raise_for_status()

        growth_mb = (peak[0] - before) / 1024
        upload_mb_s = size_mb / elapsed
        ratio = upload_mb_s / disk
        print(f"upload size          : {size_mb:.1f} MB")
        print(f"disk write (fsync)   : {disk:.0f} MB/s")
        print(f"upload (HTTP -> disk): {upload_mb_s:.0f} MB/s in {elapsed:.2f} s")
        print(f"upload / disk        : {ratio:.2f}  (target >= 0.50)")
        print(f"API RSS before/peak  : {before / 1024:.1f} / {peak[0] / 1024:.1f} MB")
        print(f"API RSS growth       : {growth_mb:.1f} MB  (target < 50 MB)")
        ok = growth_mb < 50 and ratio >= 0.5
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
