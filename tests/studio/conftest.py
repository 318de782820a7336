from dataclasses import replace
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _make_window(qtbot, tmp_path, monkeypatch, engine_factory):
    monkeypatch.setenv("LATENT_STUDIO_CONFIG", str(tmp_path / "settings.json"))
    monkeypatch.setenv("LATENT_STUDIO_CACHE", str(tmp_path / "cache"))
    from studio.settings import Settings
    from studio.window import MainWindow

    settings = Settings()
    settings.generation.common = replace(settings.generation.common, count=2, steps=3)
    settings.generation.random_seed = False
    w = MainWindow(settings, engine_factory=engine_factory, autosave_dir=tmp_path / "autosave")
    # Not qtbot.addWidget: pytest-qt would close the window before this fixture's teardown, and
    # closing a modified document asks "Save changes?" in a modal dialog.
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    return w


def _close(w):
    w.session.forget_changes()  # no "save changes?" question at teardown
    w.close()
    w.bridge.engine.shutdown(wait=True)


@pytest.fixture
def fake_engine():
    """The engine the `window` fixture runs on (set when the window is made)."""
    return {}


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, fake_engine):
    """The real main window on the scriptable fake engine (fast: no torch)."""
    from backend.fake import FakeEngine

    def make(on_event):
        fake_engine["engine"] = FakeEngine(on_event)
        return fake_engine["engine"]

    w = _make_window(qtbot, tmp_path, monkeypatch, make)
    yield w
    _close(w)


@pytest.fixture
def real_window(qtbot, tmp_path, monkeypatch):
    """The real main window on the real engine (tiny models are chosen per test)."""
    from backend.engine import engine_factory

    w = _make_window(qtbot, tmp_path, monkeypatch, engine_factory(preview_interval=0.0, threads=2))
    yield w
    _close(w)


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    print(f"\ntest artifacts (screenshots) are written to {ARTIFACTS}")
    return ARTIFACTS
