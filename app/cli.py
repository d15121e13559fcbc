"""The ``transferlab`` command: serve, worker, beat, sweep, dev, keys, db."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from app.config import Settings, get_settings

ADMIN_PROJECT = "default"


def _db_upgrade(settings: Settings) -> None:
    from app.migrate import upgrade

    settings.ensure_dirs()
    upgrade(settings.resolved_database_url)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = get_settings()
    _db_upgrade(settings)
    print(f"database at head: {settings.resolved_database_url.split('@')[-1]}")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from app.auth import create_key
    from app.db import session_scope

    settings = get_settings()
    _db_upgrade(settings)
    with session_scope(settings.resolved_database_url) as session:
        row, key = create_key(session, args.project, args.scope, name=args.name)
        key_id = row.id
    print(key)
    print(
        f"# key {key_id} for project '{args.project}' with scope '{args.scope}'. It is shown only once.",
        file=sys.stderr,
    )
    return 0


def ensure_first_admin_key(settings: Settings) -> str | None:
    """Embedded mode's first start: create one admin key and return it (None when keys exist)."""
    from app.auth import any_keys, create_key
    from app.db import session_scope

    with session_scope(settings.resolved_database_url) as session:
        if any_keys(session):
            return None
        _, key = create_key(session, ADMIN_PROJECT, "admin", name="first admin key")
        return key


def _uvicorn(settings: Settings, host: str, port: int, workers: int = 1) -> int:
    import uvicorn

    uvicorn.run(
        "app.main:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = get_settings()
    if settings.auto_migrate:
        _db_upgrade(settings)
    return _uvicorn(settings, args.host, args.port, args.workers)


def default_worker_queues(settings: Settings, device: str = "cpu") -> str:
    """The job queue of ``device`` and the I/O queue (dataset validation, batch prediction, webhooks, sweeps)."""
    return f"{settings.queue_for_device(device)},{settings.io_queue}"


def worker_argv(
    queues: str | None, concurrency: int, loglevel: str, beat: bool = False, device: str = "cpu"
) -> list[str]:
    settings = get_settings()
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--max-tasks-per-child",
        "1",
        "--prefetch-multiplier",
        "1",
        "--loglevel",
        loglevel,
        "-Q",
        queues or default_worker_queues(settings, device),
    ]
    if beat:
        argv += ["--beat", "--schedule", str((settings.data_dir / "celerybeat-schedule").resolve())]
    return argv


def beat_argv(loglevel: str) -> list[str]:
    settings = get_settings()
    schedule = str((settings.data_dir / "celerybeat-schedule").resolve())
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "beat",
        "--loglevel",
        loglevel,
        "--schedule",
        schedule,
    ]


def cmd_worker(args: argparse.Namespace) -> int:
    get_settings().ensure_dirs()
    argv = worker_argv(args.queues, args.concurrency, args.loglevel, beat=args.beat, device=args.device)
    os.execv(argv[0], argv)
    return 0  # pragma: no cover


def cmd_beat(args: argparse.Namespace) -> int:
    get_settings().ensure_dirs()
    argv = beat_argv(args.loglevel)
    os.execv(argv[0], argv)
    return 0  # pragma: no cover


def cmd_sweep(args: argparse.Namespace) -> int:
    import json

    from app.db import session_scope
    from app.services.sweep import run_sweep

    settings = get_settings()
    _db_upgrade(settings)
    with session_scope(settings.resolved_database_url) as session:
        report = run_sweep(session, settings)
    print(json.dumps(report.to_dict()))
    return 0


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, even by SIGKILL (Linux prctl)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def cmd_dev(args: argparse.Namespace) -> int:
    settings = get_settings()
    _db_upgrade(settings)
    key = ensure_first_admin_key(settings)
    if key:
        print("=" * 72)
        print("First start: created an admin API key (shown only once, keep it):")
        print(f"    {key}")
        print(f"Use it as:  curl -H 'Authorization: Bearer <key>' http://{args.host}:{args.port}/v1/datasets")
        print("=" * 72, flush=True)
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so the
    # worker below is always stopped with the API.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    worker = subprocess.Popen(worker_argv(None, 1, "INFO", beat=True), preexec_fn=_die_with_parent)
    try:
        return _uvicorn(settings, args.host, args.port)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transferlab", description="TransferLab model-adaptation service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(fn=cmd_serve)

    worker = sub.add_parser("worker", help="run a Celery training worker")
    worker.add_argument(
        "--queues", default=None, help="comma-separated queues (default: the device's job queue and TL_IO_QUEUE)"
    )
    worker.add_argument("--concurrency", type=int, default=1, help="processes; one per GPU")
    worker.add_argument("--loglevel", default="INFO")
    worker.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="which job queue to consume")
    worker.add_argument("--beat", action="store_true", help="also run the periodic sweep (one per deployment)")
    worker.set_defaults(fn=cmd_worker)

    beat = sub.add_parser("beat", help="run the scheduler of the periodic sweep (one per deployment)")
    beat.add_argument("--loglevel", default="INFO")
    beat.set_defaults(fn=cmd_beat)

    sweep = sub.add_parser("sweep", help="requeue stalled jobs and resend lost messages, once")
    sweep.set_defaults(fn=cmd_sweep)

    dev = sub.add_parser("dev", help="API + one worker on the embedded default (SQLite, local broker)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.set_defaults(fn=cmd_dev)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create an API key (printed once)")
    create.add_argument("--project", required=True)
    create.add_argument("--scope", choices=["read", "write", "admin"], required=True)
    create.add_argument("--name", default="")
    create.set_defaults(fn=cmd_keys_create)

    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    up = db.add_parser("upgrade", help="apply Alembic migrations up to head")
    up.set_defaults(fn=cmd_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
