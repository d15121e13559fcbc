"""The job spec, shared with the training engine.

``worker/training/spec.py`` is the one definition (the engine trains from it; the API validates
with it). It and ``worker/training/catalog.py`` are pure pydantic / data modules with no
TensorFlow, Celery or database imports, so this is the one sanctioned import from ``app`` into
``worker``: a second copy of the spec would drift. A test guards that importing ``app.main``
still imports neither TensorFlow nor Celery's worker.
"""

from __future__ import annotations

from worker.training.spec import BaseSpec, JobSpec

__all__ = ["BaseSpec", "JobSpec"]
