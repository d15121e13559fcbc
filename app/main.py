"""The FastAPI application. Importing this module must not import TensorFlow (a test guards it)."""

from __future__ import annotations

from fastapi import FastAPI

from app.auth import KeyUsage, PrincipalCache
from app.config import Settings, get_settings
from app.db import get_engine, get_sessionmaker
from app.errors import ServiceUnavailable, install_error_handlers
from app.job_submitter import JobSubmitter
from app.logging_setup import configure_logging
from app.migrate import is_at_head, upgrade
from app.routes import bases, batch_predictions, datasets, health, jobs, kserve, metrics, models, tfserving
from app.routes import webhooks as webhook_routes
from app.serving.predictor import Predictor
from app.storage import get_store


def prepare_database(settings: Settings) -> None:
    """Apply migrations (``TL_AUTO_MIGRATE``, the default) or refuse to start when behind."""
    url = settings.resolved_database_url
    if settings.auto_migrate:
        upgrade(url)
    elif not is_at_head(get_engine(url)):
        raise ServiceUnavailable("the database schema is behind the code: run 'transferlab db upgrade' first")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.ensure_dirs()
    (settings.data_dir / "tmp").mkdir(parents=True, exist_ok=True)
    configure_logging(settings.log_level)
    app = FastAPI(
        title="TransferLab",
        version="0.1.0",
        description="Upload a small labelled dataset, fine-tune a pretrained model, serve it.",
    )
    app.state.settings = settings
    app.state.engine = get_engine(settings.resolved_database_url)
    app.state.sessionmaker = get_sessionmaker(settings.resolved_database_url)
    app.state.predictor = Predictor(settings, get_store(settings))
    app.state.key_usage = KeyUsage(settings.api_key_touch_interval_s)
    app.state.auth_cache = PrincipalCache(settings.auth_cache_ttl_s)
    app.state.job_submitter = JobSubmitter(app.state.sessionmaker, settings, app.state.key_usage)
    install_error_handlers(app)
    for module in (health, metrics, datasets, jobs, tfserving, models, kserve, batch_predictions, bases):
        app.include_router(module.router)
    app.include_router(webhook_routes.router)
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory app.main:app_factory``."""
    settings = get_settings()
    prepare_database(settings)
    return create_app(settings)
