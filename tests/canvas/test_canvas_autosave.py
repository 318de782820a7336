"""Autosave every few minutes and after generations; recovery after a crash."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from canvas.autosave import Autosaver, default_directory, discard_recovery, find_recoverable, recover
from canvas.background import BackgroundSaver


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
