"""Dataset validation: pure functions from unpacked files to a report (no database, no Celery).

The worker calls ``validate_dataset_files``; the API uses the cheap header checks in ``text``
and ``app.archives`` on the request path so that malformed uploads are refused before storing.
"""

from __future__ import annotations

from app.validation.report import Outcome
from app.validation.run import validate_dataset_files

__all__ = ["Outcome", "validate_dataset_files"]
