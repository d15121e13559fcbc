"""Foundation: health, auth and scopes, project isolation, error shapes, light imports, migrations."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import create_engine, inspect

from tests.conftest import REPO_ROOT
from tests.helpers import TINY_IMAGE_SPEC, image_zip


def test_healthz_needs_no_key(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_all_checks(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "migrations": "ok", "broker": "ok"}


def test_readyz_names_what_is_down(settings):
    from fastapi.testclient import TestClient

    from app.main import create_app

    broken = settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(broken)) as c:
        response = c.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "not_ready"
    assert "broker" in body["detail"]
    assert body["checks"]["database"] == "ok"


def test_an_unreachable_database_is_a_503_not_a_500(settings, admin_headers):
    from fastapi.testclient import TestClient

    from app.main import create_app

    gone = settings.model_copy(update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/none"})
    with TestClient(create_app(gone)) as c:
        listing = c.get("/v1/jobs", headers=admin_headers)
        submit = c.post(
            "/v1/jobs", headers=admin_headers, json={"dataset_id": "d", "model_name": "m", "spec": TINY_IMAGE_SPEC}
        )
    for response in (listing, submit):
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "database_unavailable" and response.headers["retry-after"] == "1"


def test_v1_requires_a_key(client):
    response = client.get("/v1/datasets")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert "Bearer" in response.json()["detail"]


def test_bad_and_revoked_keys_are_401(client, auth_headers):
    assert client.get("/v1/datasets", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    assert client.get("/v1/datasets", headers={"Authorization": "Bearer tl_abc_def"}).status_code == 401
    headers = auth_headers("acme", "read")
    assert client.get("/v1/datasets", headers=headers).status_code == 200

    from sqlalchemy import update

    from app.db import session_scope
    from app.tables import ApiKey, utcnow

    with session_scope() as session:
        session.execute(update(ApiKey).values(revoked_at=utcnow()))
    assert client.get("/v1/datasets", headers=headers).status_code == 401


def test_keys_are_stored_hashed(auth_headers):
    from sqlalchemy import select

    from app.db import session_scope
    from app.tables import ApiKey

    key = auth_headers("acme", "admin")["Authorization"].split()[1]
    with session_scope() as session:
        stored = session.scalars(select(ApiKey.key_hash)).all()
    assert key not in stored and all(len(h) == 64 for h in stored)


def test_read_scope_cannot_write(client, auth_headers):
    response = client.post(
        "/v1/datasets",
        headers=auth_headers("acme", "read"),
        files={"file": ("d.zip", image_zip(), "application/zip")},
        data={"name": "x"},
    )
    assert response.status_code == 403
    assert "write" in response.json()["detail"]


def test_projects_never_see_each_other(client, auth_headers):
    alice, bob = auth_headers("alice", "write"), auth_headers("bob", "write")
    created = client.post(
        "/v1/datasets", headers=alice, files={"file": ("d.zip", image_zip(), "application/zip")}, data={"name": "a"}
    )
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    assert client.get(f"/v1/datasets/{dataset_id}", headers=alice).status_code == 200
    other = client.get(f"/v1/datasets/{dataset_id}", headers=bob)
    assert other.status_code == 404
    assert client.get("/v1/datasets", headers=bob).json()["total"] == 0


def test_validation_errors_name_the_field(client, admin_headers):
    response = client.post("/v1/jobs", headers=admin_headers, json={"dataset_id": "x", "model_name": "m"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert "spec" in body["detail"]

    response = client.post(
        "/v1/jobs",
        headers=admin_headers,
        json={"dataset_id": "x", "model_name": "m", "spec": {"task": "image_classification", "strategy": "magic"}},
    )
    assert response.status_code == 422
    assert "spec.strategy" in response.json()["detail"]


def test_unknown_route_is_json_404(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_job_on_unknown_dataset_is_404(client, admin_headers):
    from tests.helpers import TINY_IMAGE_SPEC

    response = client.post(
        "/v1/jobs", headers=admin_headers, json={"dataset_id": "missing", "model_name": "m", "spec": TINY_IMAGE_SPEC}
    )
    assert response.status_code == 404
    assert "dataset missing" in response.json()["detail"]


def test_importing_the_api_does_not_import_tensorflow():
    code = (
        "import sys, app.main\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'keras_hub', 'worker.tasks') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_alembic_builds_the_schema_on_sqlite(tmp_path):
    from app.migrate import head_revision, upgrade

    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    assert {"projects", "api_keys", "datasets", "jobs", "job_events", "model_versions"} <= tables
    with engine.connect() as conn:
        from alembic.runtime.migration import MigrationContext

        assert MigrationContext.configure(conn).get_current_revision() == head_revision()


def test_cli_keys_create_prints_a_working_key(client):
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "create", "--project", "cli-proj", "--scope", "read"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("tl_")
    assert "shown only once" in result.stderr
    assert client.get("/v1/datasets", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_refuses_to_start_when_database_is_behind(tmp_path, settings):
    import pytest

    from app.errors import ServiceUnavailable
    from app.main import prepare_database

    behind = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'old.db'}", "auto_migrate": False})
    with pytest.raises(ServiceUnavailable, match="transferlab db upgrade"):
        prepare_database(behind)
    prepare_database(behind.model_copy(update={"auto_migrate": True}))  # migrates instead
    prepare_database(behind)  # now at head: starts
