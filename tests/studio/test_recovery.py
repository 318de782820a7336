"""Crash recovery keeps the work, under its own file's name; killed saves leave no litter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from PySide6.QtWidgets import QMessageBox

from canvas.autosave import Autosaver
from canvas.document import Document

OLD = time.time() - 3600


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def crashed_session(folder, document_path):
    """An autosave left by a session that died while editing `document_path`."""
    doc = Document(64, 48)
    doc.add_image_layer(np.full((48, 64, 4), (10, 200, 30, 255), np.uint8), 0, 0, "painted")
    saver = Autosaver(doc, folder, document_path=str(document_path))
    saver.save_now()
    meta = json.loads(saver.meta_path.read_text())
    meta["pid"] = _dead_pid()
    saver.meta_path.write_text(json.dumps(meta))
    return saver, doc


def test_recovered_work_keeps_its_path_and_its_autosave(window, qtbot, tmp_path, monkeypatch):
    """The recovered autosave was deleted as soon as it was offered, and the document came back as Untitled."""
    folder = tmp_path / "autosave"
    target = tmp_path / "cat.ora"
    old, doc = crashed_session(folder, target)
    stray = folder / ".autosave-1-ab.ora.k3j_x9a1.part"  # a killed autosave's temporary file
    stray.write_bytes(b"half")
    os.utime(stray, (OLD, OLD))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    window.offer_recovery()
    assert not stray.exists()
    assert window.session.path == target and window.modified
    assert np.array_equal(window.doc.flatten(), doc.flatten())
    assert window.windowTitle().startswith("cat.ora (recovered) *")
    assert "Recovered" in window.statusBar().currentMessage()
    # a second crash now would still find the work: the recovered autosave is kept ...
    assert old.path.exists() and json.loads(old.meta_path.read_text())["document_path"] == str(target)
    # ... until a newer autosave of the recovered document exists
    window.doc.add_layer("more")
    window.autosave.saver.interval_s = 0
    window.autosave.tick()
    qtbot.waitUntil(lambda: window.autosave.writes == 1, timeout=10_000)
    assert not old.path.exists() and not old.meta_path.exists()
    new_meta = json.loads(window.autosave.saver.meta_path.read_text())
    assert new_meta["document_path"] == str(target) and new_meta["title"] == "cat.ora"


def test_saving_recovered_work_writes_its_file(window, qtbot, tmp_path, monkeypatch):
    folder = tmp_path / "autosave"
    target = tmp_path / "cat.ora"
    crashed_session(folder, target)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Yes)
    window.offer_recovery()
    window.files.save()
    qtbot.waitUntil(lambda: target.exists() and not window.modified, timeout=30_000)
    assert window.windowTitle().startswith("cat.ora —")  # no longer "(recovered)"


def test_opening_and_saving_remove_what_killed_saves_left(window, qtbot, tmp_path):
    from canvas.ora import save_ora

    doc = Document(32, 32)
    doc.add_layer()
    save_ora(doc, tmp_path / "pic.ora")
    stray = tmp_path / ".pic.ora.abcd1234.part"
    fresh = tmp_path / ".pic.ora.wxyz9876.part"  # could be a save in progress
    foreign = tmp_path / "notes.part"
    for p in (stray, fresh, foreign):
        p.write_bytes(b"x")
    for p in (stray, foreign):
        os.utime(p, (OLD, OLD))
    window.files.open_path(tmp_path / "pic.ora")
    qtbot.waitUntil(lambda: window.path == tmp_path / "pic.ora", timeout=30_000)
    qtbot.waitUntil(lambda: not stray.exists(), timeout=10_000)
    assert fresh.exists() and foreign.exists()
    os.utime(fresh, (OLD, OLD))
    window.doc.add_layer()
    window.files.save()
    qtbot.waitUntil(lambda: not fresh.exists(), timeout=30_000)
    assert foreign.exists()
