"""Undo history: commands with redo/undo and a merge hook (MyPaint's CommandStack).

A :class:`Command` stores only what it needs to go both ways: snapshots of the
tiles it touched (tiles are immutable, so a snapshot is a reference, not a
copy).  Consecutive commands of one gesture (the segments of a brush stroke,
the steps of an opacity slider drag) merge into one undo step through
:meth:`Command.merge`; the GUI calls :meth:`History.seal` when the gesture ends.

The history keeps the memory its commands hold below ``limit_bytes``
(1 GB by default) by dropping the oldest undo steps.
"""
from __future__ import annotations

from typing import Callable


class Command:
    """One undoable change.  Subclasses implement redo/undo on the document."""

    description = "Edit"

    def redo(self, doc) -> None:
        raise NotImplementedError

    def undo(self, doc) -> None:
        raise NotImplementedError

    def merge(self, other: "Command") -> bool:
        """Absorb `other` (already applied) into self and return True, or return False."""
        return False

    @property
    def nbytes(self) -> int:
        """Memory held by this command (the pixel snapshots it keeps alive)."""
        return 0


DEFAULT_LIMIT = 1 << 30


class History:
    def __init__(self, doc, limit_bytes: int = DEFAULT_LIMIT) -> None:
        self._doc = doc
        self.limit_bytes = int(limit_bytes)
        self._undo: list[Command] = []
        self._redo: list[Command] = []
        self._open = False  # may the top command absorb the next one?
        self.revision = 0  # bumped on every change; autosave and "modified" use it
        self.listeners: list[Callable[[], None]] = []

    # -- queries ---------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_description(self) -> str | None:
        return self._undo[-1].description if self._undo else None

    @property
    def redo_description(self) -> str | None:
        return self._redo[-1].description if self._redo else None

    @property
    def undo_descriptions(self) -> list[str]:
        """Descriptions of the undo steps, oldest first."""
        return [c.description for c in self._undo]

    @property
    def redo_descriptions(self) -> list[str]:
        """Descriptions of the redo steps, the next one to redo first."""
        return [c.description for c in reversed(self._redo)]

    def __len__(self) -> int:
        return len(self._undo)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._undo) + sum(c.nbytes for c in self._redo)

    # -- changes -----------------------------------------------------------------
    def do(self, cmd: Command) -> Command:
        """Apply `cmd` and record it (merged into the previous step when allowed)."""
        cmd.redo(self._doc)
        self._redo.clear()
        if not (self._open and self._undo and self._undo[-1].merge(cmd)):
            self._undo.append(cmd)
        self._open = True
        self._changed()
        self._enforce_limit()
        return self._undo[-1]

    def seal(self) -> None:
        """End the current gesture: the next command starts a new undo step."""
        self._open = False

    def undo(self) -> bool:
        if not self._undo:
            return False
        cmd = self._undo.pop()
        cmd.undo(self._doc)
        self._redo.append(cmd)
        self._open = False
        self._changed()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        cmd = self._redo.pop()
        cmd.redo(self._doc)
        self._undo.append(cmd)
        self._open = False
        self._changed()
        return True

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self._open = False
        self._changed()

    def _changed(self) -> None:
        self.revision += 1
        for fn in list(self.listeners):
            fn()

    def _enforce_limit(self) -> None:
        total = self.nbytes
        # Oldest redo steps go first (they are the least likely to be wanted), then oldest undo.
        while total > self.limit_bytes and self._redo:
            total -= self._redo.pop(0).nbytes
        while total > self.limit_bytes and len(self._undo) > 1:
            total -= self._undo.pop(0).nbytes
