"""A cheap HTTP/1.1 load generator, run as its own process so it does not share the server's interpreter.

Each of ``--connections`` keep-alive connections sends one pre-built request, waits for the whole response,
and sends the next, until ``--requests`` have been answered in all. Prints one JSON line: requests/s,
latency percentiles, and the first non-2xx response if any.

    python bench/http_load.py --port 8000 --path /healthz --requests 1000 --connections 16 \
        [--method POST --body '{"a":1}'] [--header 'Authorization: Bearer ...']
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


def build_request(method: str, path: str, headers: list[str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connection(port: int, request: bytes, counter: list[int], latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while counter[0] > 0:
            counter[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            status = int(status_line.split()[1])
            if status >= 300 and not errors:
                errors.append(f"{status} {body[:300]!r}")
    finally:
        writer.close()


async def run(port: int, request: bytes, requests: int, connections: int) -> dict[str, object]:
    counter, latencies, errors = [requests], [], []  # type: ignore[var-annotated]
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, request, counter, latencies, errors) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)

    return {
        "rate": round(len(latencies) / elapsed, 1),
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "error": errors[0] if errors else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default="")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    request = build_request(args.method, args.path, args.header, args.body.encode())
    print(json.dumps(asyncio.run(run(args.port, request, args.requests, args.connections))))


if __name__ == "__main__":
    main()
