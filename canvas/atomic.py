"""Atomic file writes: a temporary file in the same folder, fsync, rename.

An interrupted save (crash, full disk, cancel) leaves the previous file intact.
The temporary file is ``.<name>.<8 random characters>.part`` next to the target
(``tempfile.mkstemp``).  A save killed with the process leaves it behind;
:func:`remove_stray_parts` deletes such files — ours only, by that exact
pattern, and only when nobody writes them: not one this process is writing, and
not one modified in the last :data:`STRAY_AGE_S` seconds (a save of a big
document can spend a minute encoding between two writes, and another instance
of the app may be saving).
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import DocumentError

_UMASK = os.umask(0o022)
os.umask(_UMASK)
STRAY_AGE_S = 600.0
_PART = re.compile(r"^\..+\.(?i:ora|png|json)\.[a-z0-9_]{8,}\.part$")
_writing: set[str] = set()  # temporary files this process is writing now
_lock = threading.Lock()


@contextmanager
def atomic_write(path) -> Iterator[BinaryIO]:
    """Yield a binary file; on success it replaces `path` atomically, on error nothing changes."""
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise save_error(path, exc) from exc
    with _lock:
        _writing.add(tmp)
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
    finally:
        with _lock:
            _writing.discard(tmp)


def is_stray_part(name: str) -> bool:
    """Whether a file name is one of our temporary files (``.cat.ora.k3j_x9a1.part``)."""
    return bool(_PART.match(name))


def remove_stray_parts(folder, older_than_s: float = STRAY_AGE_S) -> list[Path]:
    """Delete the temporary files that killed saves left in `folder`; return them.

    Only regular files named like ours (:func:`is_stray_part`) that this process is not
    writing and that nothing modified for `older_than_s` seconds.  Never raises: a
    folder that cannot be listed, or a file that cannot be deleted, is left as it is."""
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not is_stray_part(entry.name):
            continue
        path = os.path.abspath(entry.path)
        try:
            st = entry.stat(follow_symlinks=False)
            with _lock:
                busy = path in _writing
            if busy or not stat.S_ISREG(st.st_mode) or now - st.st_mtime < older_than_s:
                continue
            os.unlink(path)
            removed.append(Path(path))
        except OSError:
            continue
    return removed


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
