"""Starting the app: the window first, torch and the model afterwards on the engine's thread."""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path

log = logging.getLogger("latent_studio")


def log_file() -> Path:
    import platformdirs

    folder = Path(platformdirs.user_log_dir("latent-studio"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "latent-studio.log"


def install_exception_hook(window) -> None:
    """Anything unexpected becomes a log entry and a message; the app and the document live on."""

    def report(exc_type, exc, tb) -> None:
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("unexpected error\n%s", details)
        message = (f"Something unexpected went wrong ({exc_type.__name__}: {exc}). "
                   "Your document is safe; details are in the log.")
        from PySide6.QtCore import QMetaObject, Qt

        if threading.current_thread() is threading.main_thread():
            window.show_message(message, details)
        else:  # hand it to the GUI thread
            window._pending_error = (message, details)
            QMetaObject.invokeMethod(window, "_show_pending_error", Qt.QueuedConnection)

    sys.excepthook = report
    threading.excepthook = lambda args: report(args.exc_type, args.exc_value, args.exc_traceback)


def run_app(path: str | None = None) -> int:
    t0 = time.perf_counter()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Latent Studio")
    app.setOrganizationName("latent-studio")
    try:
        logging.basicConfig(filename=log_file(), level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    except OSError:
        logging.basicConfig(level=logging.INFO)
    from . import settings as settings_mod
    from .window import MainWindow

    window = MainWindow(settings_mod.load())
    install_exception_hook(window)
    window.show()
    log.info("window shown after %.2f s", time.perf_counter() - t0)
    from PySide6.QtCore import QTimer

    QTimer.singleShot(0, window.offer_recovery)
    QTimer.singleShot(0, window.list_models)
    QTimer.singleShot(0, lambda: window.bridge.preload(window.generation.model_ref()))
    if path:
        QTimer.singleShot(0, lambda: window.files.open_path(path))
    if os.environ.get("LATENT_STUDIO_EXIT_WHEN_READY"):  # bench/bench_studio.py: time to a usable window
        QTimer.singleShot(0, lambda: (print("READY", flush=True), window.close(), app.quit()))
    return app.exec()
