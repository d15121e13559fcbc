"""Exceptions raised by the training engine."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidSpecError(TrainingError):
    """The job cannot run as specified: a user-input problem (bad layer name, missing weights, ...)."""


class TrainingCancelled(TrainingError):
    """The caller asked to stop (``should_cancel()`` returned True); raised within one batch."""
