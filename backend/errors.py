"""Errors whose text is shown to the painter as is.

Raised anywhere in ``backend/``; caught only by the engine (which turns them
into a ``Failed`` event), the CLI and the studio. Each message is one sentence
saying what is wrong and what to do about it.
"""
from __future__ import annotations


class BackendError(Exception):
    """Base class: ``str(error)`` is fit for the user."""


class InvalidRequest(BackendError, ValueError):
    """A request field has a value the engine cannot use."""


class ModelError(BackendError):
    """A model could not be found, recognised or loaded."""


class JobCancelled(BackendError):
    """Raised inside a running job to stop it; never shown as an error."""

    def __init__(self) -> None:
        super().__init__("The job was cancelled.")


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is running out of memory (Python's MemoryError, or torch's on a GPU), which the
    engine reports in its own words rather than as a file that could not be loaded."""
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()
