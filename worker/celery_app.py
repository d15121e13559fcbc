"""The Celery application the workers run (``celery -A worker.celery_app worker``).

Configuration is shared with the API's client (``app.broker.celery_config``): late acks,
prefetch 1, reject on worker lost, one job at a time, a fresh process per job. TensorFlow is
imported only inside the child process that trains: a fresh child imports the engine in the
background once it has been idle a moment (``TL_PREWARM_WORKER``), so the next job finds it loaded.
A child that only posts a webhook exits before that and never pays for it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_process_init

from app.broker import make_celery
from app.config import get_settings

PREWARM_AFTER_S = 2.0
log = logging.getLogger("transferlab.worker")

celery_app = make_celery(get_settings(), name="transferlab-worker")
celery_app.conf.include = ["worker.tasks"]


def _prewarm() -> None:
    try:
        import tensorflow  # noqa: F401

        import worker.training.engine  # noqa: F401
        import worker.training.trainer  # noqa: F401
    except Exception:  # noqa: BLE001 - the task imports it again and reports the real error
        log.debug("prewarm import failed", exc_info=True)


@worker_process_init.connect
def _start_prewarm(**_: Any) -> None:
    if get_settings().prewarm_worker:
        timer = threading.Timer(PREWARM_AFTER_S, _prewarm)
        timer.daemon = True
        timer.start()
