"""Errors raised by the canvas with text fit to show the user as is.

Every error the user can cause (a bad file, a locked layer, a cancelled save)
is a :class:`DocumentError`; its ``str()`` is one sentence saying what is wrong
and what to do.  Programming errors (wrong array shapes from the backend)
remain ``ValueError``/``TypeError``.
"""
from __future__ import annotations


class DocumentError(Exception):
    """A problem with the document the user can understand and act on."""


class FileFormatError(DocumentError):
    """A file could not be read: damaged, not of the expected kind, or unsafe."""


class LayerLockedError(DocumentError):
    """An edit was attempted on an edit-locked layer."""


class OperationCancelled(DocumentError):
    """A slow operation (save, load) was cancelled by the user."""


def file_error(path, problem: str, advice: str = "the file may be damaged; try another copy or an autosave") -> FileFormatError:
    """Build a FileFormatError naming the file, the problem and what to do."""
    from os import fspath
    from os.path import basename

    name = basename(fspath(path)) if path is not None else "the file"
    return FileFormatError(f"Cannot open “{name}”: {problem}; {advice}.")
