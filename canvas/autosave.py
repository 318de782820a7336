"""Autosave and crash recovery.

An :class:`Autosaver` writes the document to ``<user data dir>/autosave/``
(an .ora plus a small .json describing it) every few minutes when it changed,
and right after each generation.  A clean exit calls :meth:`Autosaver.discard`;
autosaves left behind by a process that is no longer running are what
:func:`find_recoverable` offers on the next start.

The folder is injectable (tests pass ``tmp_path``).  Saves are atomic, so a
crash during an autosave leaves the previous autosave intact;
:func:`remove_stray_files` deletes the temporary files a killed autosave left.

Recovery keeps the work until it is safe elsewhere: :func:`recover` opens an
autosave and claims it for the running process (its record now names this
process, so it is not offered again while we live, and is offered again if we
crash too); the :class:`Autosaver` of the recovered document (``recovered=``)
deletes it once a newer autosave of that document exists, or when the session
ends cleanly (:meth:`Autosaver.discard`).
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .atomic import atomic_write, remove_stray_parts
from .document import Document
from .errors import DocumentError
from .ora import load_ora, save_ora
from .progress import Progress

DEFAULT_INTERVAL_S = 180.0


def default_directory() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("latent-studio")) / "autosave"


@dataclass(frozen=True)
class RecoveryInfo:
    path: Path               # the autosaved .ora
    saved_at: float          # time.time() of the autosave
    document_path: str | None  # the file the user was editing, if it had one
    title: str
    pid: int


class Autosaver:
    def __init__(self, doc: Document, directory=None, interval_s: float = DEFAULT_INTERVAL_S,
                 document_path: str | None = None, clock: Callable[[], float] = time.monotonic,
                 recovered: "RecoveryInfo | None" = None) -> None:
        """`recovered`: the autosave `doc` was recovered from, kept until this one has written
        a newer autosave (or :meth:`discard`)."""
        self.doc = doc
        self.recovered = recovered
        self.directory = Path(directory) if directory is not None else default_directory()
        self.interval_s = interval_s
        self.document_path = document_path
        self.clock = clock
        session = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = self.directory / f"autosave-{session}.ora"
        self.meta_path = self.path.with_suffix(".json")
        self._saved_revision = doc.history.revision
        self._last = clock()

    @property
    def dirty(self) -> bool:
        return self.doc.history.revision != self._saved_revision

    def due(self) -> bool:
        return self.dirty and self.clock() - self._last >= self.interval_s

    def maybe_save(self, progress: Progress | None = None) -> bool:
        """Call from a timer: autosave if the document changed and the interval passed."""
        if not self.due():
            return False
        self.save_now(progress)
        return True

    def after_generation(self, progress: Progress | None = None) -> None:
        self.save_now(progress)

    def snapshot(self) -> tuple[Document, int]:
        """(document copy, revision) taken on the GUI thread, for :meth:`write`."""
        return self.doc.copy(), self.doc.history.revision

    def save_now(self, progress: Progress | None = None) -> None:
        self.write(*self.snapshot(), progress=progress)

    def write(self, snapshot: Document, revision: int, progress: Progress | None = None) -> None:
        """Write a snapshot (may run on a worker thread)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        save_ora(snapshot, self.path, progress)
        meta = {"pid": os.getpid(), "saved_at": time.time(), "document_path": self.document_path,
                "title": os.path.basename(self.document_path) if self.document_path else "Untitled"}
        _write_meta(self.meta_path, meta)
        self._saved_revision = revision
        self._last = self.clock()
        if self.recovered is not None:  # a newer autosave of the recovered work exists now
            discard_recovery(self.recovered)
            self.recovered = None

    def discard(self) -> None:
        """Remove this session's autosave, and the one it was recovered from (a clean exit, or
        the painter dropped the document)."""
        for p in (self.path, self.meta_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        if self.recovered is not None:
            discard_recovery(self.recovered)
            self.recovered = None


def _write_meta(path: Path, meta: dict) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(meta).encode("utf-8"))


def remove_stray_files(directory=None) -> list[Path]:
    """Delete what killed autosaves left in the autosave folder: our temporary ``.part`` files
    (see :func:`canvas.atomic.remove_stray_parts`) and, from older versions, ``autosave-*.json.part``."""
    directory = Path(directory) if directory is not None else default_directory()
    removed = remove_stray_parts(directory)
    for old in directory.glob("autosave-*.json.part"):
        try:
            if time.time() - old.stat().st_mtime > 60:
                old.unlink()
                removed.append(old)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def find_recoverable(directory=None) -> list[RecoveryInfo]:
    """Autosaves left by sessions that are no longer running, newest first."""
    directory = Path(directory) if directory is not None else default_directory()
    found = []
    for ora in directory.glob("autosave-*.ora"):
        meta: dict = {}
        try:
            meta = json.loads(ora.with_suffix(".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # the .ora alone is still worth offering
        if not isinstance(meta, dict):
            meta = {}
        try:
            pid = int(meta.get("pid", 0) or ora.stem.split("-")[1])
        except (ValueError, IndexError):
            pid = 0
        if pid and _alive(pid):
            continue
        saved_at = meta.get("saved_at")
        if not isinstance(saved_at, (int, float)):
            saved_at = ora.stat().st_mtime
        doc_path = meta.get("document_path") if isinstance(meta.get("document_path"), str) else None
        title = meta.get("title") if isinstance(meta.get("title"), str) else "Untitled"
        found.append(RecoveryInfo(ora, float(saved_at), doc_path, title, pid))
    found.sort(key=lambda r: r.saved_at, reverse=True)
    return found


def recover(info: RecoveryInfo, progress: Progress | None = None) -> Document:
    """Open an autosave and claim it for this process (see the module's text).  It stays on
    disk: give it to the recovered document's :class:`Autosaver` (``recovered=info``), which
    deletes it once a newer autosave exists."""
    try:
        doc = load_ora(info.path, progress)
    except DocumentError as exc:
        raise DocumentError(f"The autosave from {time.ctime(info.saved_at)} cannot be recovered: {exc}") from exc
    if info.document_path:
        doc.metadata["document_path"] = info.document_path
    claim(info)
    return doc


def claim(info: RecoveryInfo) -> None:
    """Record the running process as the autosave's owner (best effort: a read-only folder
    only means another instance could offer it too)."""
    meta = {"pid": os.getpid(), "saved_at": info.saved_at, "document_path": info.document_path,
            "title": info.title}
    try:
        _write_meta(info.path.with_suffix(".json"), meta)
    except DocumentError:
        pass


def discard_recovery(info: RecoveryInfo) -> None:
    for p in (info.path, info.path.with_suffix(".json")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
