"""Atomic file writes: a temporary file in the same folder, fsync, rename.

An interrupted save (crash, full disk, cancel) leaves the previous file intact.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import BinaryIO, Iterator

from .errors import DocumentError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_write(path) -> Iterator[BinaryIO]:
    """Yield a binary file; on success it replaces `path` atomically, on error nothing changes."""
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise save_error(path, exc) from exc
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mode = 0o666 & ~_UMASK
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise save_error(path, exc) from exc
        raise


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # not possible on every platform (Windows)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_error(path, exc: OSError) -> DocumentError:
    reason = exc.strerror or str(exc)
    return DocumentError(f"Cannot save “{os.path.basename(os.fspath(path))}”: {reason.rstrip('.').lower()}; "
                         "choose another folder or free some disk space and save again.")
