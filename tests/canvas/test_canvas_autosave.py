"""Autosave every few minutes and after generations; recovery after a crash."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from canvas.autosave import (Autosaver, RecoveryInfo, default_directory, discard_recovery, find_recoverable,
                             recover)
from canvas.background import BackgroundSaver
from canvas.ora import load_ora


ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_autosaves_when_changed_and_due(small_doc, tmp_path):
    clock = Clock()
    saver = Autosaver(small_doc, tmp_path, interval_s=180, clock=clock)
    clock.t = 500
    assert not saver.maybe_save()  # nothing changed yet
    small_doc.add_layer("x")
    clock.t = 600
    assert saver.maybe_save() and saver.path.exists()
    small_doc.add_layer("y")
    clock.t = 700
    assert not saver.maybe_save()  # not due yet
    saver.after_generation()  # always saves
    assert not saver.dirty
    assert find_recoverable(tmp_path) == []  # our own process is alive: nothing to recover
    saver.discard()
    assert not saver.path.exists() and not saver.meta_path.exists()


def test_recover_after_a_crash(small_doc, tmp_path):
    saver = Autosaver(small_doc, tmp_path, document_path="/home/me/cat.ora")
    saver.save_now()
    meta = json.loads(saver.meta_path.read_text())
    # a process id that is not running stands for the crashed session
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    meta["pid"] = int(dead.stdout)
    saver.meta_path.write_text(json.dumps(meta))
    found = find_recoverable(tmp_path)
    assert len(found) == 1 and found[0].title == "cat.ora" and found[0].document_path == "/home/me/cat.ora"
    doc = recover(found[0])
    assert np.array_equal(doc.flatten(), small_doc.flatten())
    assert doc.metadata["document_path"] == "/home/me/cat.ora"
    discard_recovery(found[0])
    assert find_recoverable(tmp_path) == []


def test_background_autosave(small_doc, tmp_path):
    saver = Autosaver(small_doc, tmp_path)
    small_doc.add_layer()
    worker = BackgroundSaver()
    worker.autosave(saver).result(timeout=60)
    worker.shutdown()
    assert saver.path.exists() and not saver.dirty


def test_default_directory_is_the_user_data_dir():
    assert "latent-studio" in str(default_directory())


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _crash_after(tmp_path, then: str) -> int:
    """In another process: recover the newest autosave as the app does, run `then`, and die
    without any cleanup.  Returns that process's id."""
    code = textwrap.dedent(f"""
        import os
        from canvas.autosave import Autosaver, find_recoverable, recover
        (info,) = find_recoverable({str(tmp_path)!r})
        doc = recover(info)
        saver = Autosaver(doc, {str(tmp_path)!r}, document_path=info.document_path, recovered=info)
        {then}
        print(os.getpid(), flush=True)
        os._exit(3)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 3, done.stderr
    return int(done.stdout)


def test_a_second_crash_right_after_recovery_still_offers_the_work(small_doc, tmp_path):
    """The recovered autosave was deleted as soon as it was offered: a second crash 5 s later lost it."""
    saver = Autosaver(small_doc, tmp_path, document_path="/home/me/cat.ora")
    saver.save_now()
    meta = json.loads(saver.meta_path.read_text())
    meta["pid"] = _dead_pid()
    saver.meta_path.write_text(json.dumps(meta))
    pid = _crash_after(tmp_path, "pass")  # recovered, then crashed before any new autosave
    (again,) = find_recoverable(tmp_path)
    assert again.path == saver.path and again.document_path == "/home/me/cat.ora" and again.title == "cat.ora"
    assert again.pid == pid  # it was claimed by the process that recovered it
    assert np.array_equal(load_ora(again.path).flatten(), small_doc.flatten())  # (recover() would claim it)
    # recovered, painted on, autosaved, crashed: the newer autosave replaces the recovered one
    _crash_after(tmp_path, "doc.add_layer('more'); saver.save_now()")
    (newer,) = find_recoverable(tmp_path)
    assert newer.path != saver.path and not saver.path.exists() and not saver.meta_path.exists()
    assert newer.document_path == "/home/me/cat.ora"
    assert [l.name for l in load_ora(newer.path).layers][-1] == "more"


def test_a_clean_end_discards_the_recovered_autosave_too(small_doc, tmp_path):
    first = Autosaver(small_doc, tmp_path)
    first.save_now()
    info = RecoveryInfo(first.path, 0.0, None, "Untitled", 0)
    second = Autosaver(recover(info), tmp_path, recovered=info)
    second.discard()
    assert list(tmp_path.iterdir()) == []
