"""The Celery application the workers run (``celery -A worker.celery_app worker``).

Configuration is shared with the API's client (``app.broker.celery_config``): late acks,
prefetch 1, reject on worker lost, one job at a time, a fresh process per job. TensorFlow is
imported only inside the task, in the child process that trains.
"""

from __future__ import annotations

from app.broker import make_celery
from app.config import get_settings

celery_app = make_celery(get_settings(), name="transferlab-worker")
celery_app.conf.include = ["worker.tasks"]
