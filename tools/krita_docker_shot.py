"""Runs Krita's GUI under Xvfb with the plugin installed in a throw-away Krita profile, and drives the real
docker: opens the self-test photo, selects its middle, picks Inpaint (4 steps, 2 variations), presses
Generate, screenshots the window while the job's preview shows and after the result (variations strip),
applies the second variation, and writes what it saw to OUT_DIR/shot.json.

    python tools/krita_docker_shot.py OUT_DIR          # ~1-2 min on 2 cores

A second, tiny plugin (written into the throw-away profile) does the driving from inside Krita. The user's
own Krita settings and pykrita folder are not touched.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.threads import OPENMP_DEFAULTS  # noqa: E402

DRIVER = r'''
import json, os, time
from krita import Extension, Krita, Selection
from PyQt5 import QtCore, QtWidgets

OUT = os.environ["SHOT_OUT"]
IMAGE = os.environ["SHOT_IMAGE"]
log = {"events": []}

def note(text):
    log["events"].append(f"{time.monotonic():.1f} {text}")
    with open(os.path.join(OUT, "shot.json"), "w") as f:
        json.dump(log, f, indent=2)

def grab(name):
    window = Krita.instance().activeWindow().qwindow()
    window.grab().save(os.path.join(OUT, name))
    note("grabbed " + name)

class Driver(Extension):
    def setup(self):
        QtCore.QTimer.singleShot(3000, self.start)
    def createActions(self, window):
        pass
    def start(self):
        app = Krita.instance()
        doc = app.openDocument(IMAGE)
        app.activeWindow().addView(doc)
        doc.waitForDone()
        sel = Selection(); sel.select(doc.width() // 3, doc.height() // 3, doc.width() // 3, doc.height() // 3, 255)
        doc.setSelection(sel)
        window = app.activeWindow().qwindow()
        window.resize(1400, 900)
        dock = next((d for d in window.findChildren(QtWidgets.QDockWidget) if d.objectName() == "latent_studio"), None)
        if dock is None:
            note("no docker found: " + ", ".join(d.objectName() for d in window.findChildren(QtWidgets.QDockWidget)))
            QtCore.QTimer.singleShot(500, app.activeWindow().qwindow().close)
            return
        dock.show(); dock.raise_()
        self.dock, self.doc, self.previewed = dock, doc, False
        note("engine label: " + dock.engine_label.text())
        dock.common.widgets["steps"].setValue(int(os.environ.get("SHOT_STEPS", "4")))
        dock.common.widgets["count"].setValue(2)
        dock.generate()
        note("status after generate: " + dock.status.text())
        self.timer = QtCore.QTimer(); self.timer.timeout.connect(self.poll); self.timer.start(200)
    def poll(self):
        names = [n.name() for n in self.doc.topLevelNodes()]
        c = self.dock.controller
        if not self.previewed and any(n.startswith("Latent Studio preview") for n in names) and c.busy:
            self.previewed = True
            note("layers while running: " + ", ".join(names) + "; active: " + self.doc.activeNode().name())
            QtCore.QTimer.singleShot(1500, lambda: grab("running.png"))  # the canvas redraws after the event
        if c is not None and not c.busy:
            self.timer.stop()
            note("status: " + self.dock.status.text())
            note("layers with the result: " + ", ".join(names))
            note(f"strip: {self.dock.strip.count()} items; queue: {self.dock.queue.count()}")
            self.dock.strip.setCurrentRow(1)
            grab("result.png")
            self.dock.apply()
            names = [n.name() for n in self.doc.topLevelNodes()]
            note("layers after apply: " + ", ".join(names))
            note("status after apply: " + self.dock.status.text())
            grab("applied.png")
            undo = Krita.instance().action("edit_undo")
            for i in (1, 2):
                undo.trigger()
                self.doc.waitForDone()
                note(f"after undo {i}: " + ", ".join(n.name() for n in self.doc.topLevelNodes()))
            self.doc.setModified(False)
            QtCore.QTimer.singleShot(500, Krita.instance().activeWindow().qwindow().close)

Krita.instance().addExtension(Driver(Krita.instance()))
'''


def main(out_dir: str) -> int:
    from krita_plugin.commands import SELFTEST_IMAGE, install

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="krita-shot-"))
    data, config = profile / "data", profile / "config"
    pykrita = data / "krita" / "pykrita"
    install(pykrita)
    (pykrita / "shot_driver").mkdir()
    (pykrita / "shot_driver" / "__init__.py").write_text(DRIVER)
    (pykrita / "shot_driver.desktop").write_text(
        "[Desktop Entry]\nType=Service\nServiceTypes=Krita/PythonPlugin\nX-KDE-Library=shot_driver\n"
        "X-Python-2-Compatible=false\nName=shot driver\nComment=drives the docker\n")
    config.mkdir(parents=True)
    (config / "kritarc").write_text("[python]\nenable_latent_studio_krita=true\nenable_shot_driver=true\n\n"
                                    "[General]\nshowSplashScreen=false\n")
    env = dict(os.environ, XDG_DATA_HOME=str(data), XDG_CONFIG_HOME=str(config), SHOT_OUT=str(out),
               SHOT_IMAGE=str(SELFTEST_IMAGE), HF_HUB_OFFLINE="1", **OPENMP_DEFAULTS)
    command = ["xvfb-run", "-a", "-s", "-screen 0 1400x900x24", "krita", "--nosplash"]
    with open(out / "krita.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(400)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 15)
            process.wait(10)
    shutil.rmtree(profile, ignore_errors=True)
    print((out / "shot.json").read_text() if (out / "shot.json").exists() else "no shot.json; see krita.log")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
