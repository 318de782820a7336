from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    """The real main window on a real engine (tiny models are chosen per test)."""
    monkeypatch.setenv("LATENT_STUDIO_CONFIG", str(tmp_path / "settings.json"))
    monkeypatch.setenv("LATENT_STUDIO_CACHE", str(tmp_path / "cache"))
    from backend.engine import Engine
    from studio.settings import Settings
    from studio.window import MainWindow

    settings = Settings()
    settings.generation.count = 2
    settings.generation.steps = 3
    settings.generation.random_seed = False
    w = MainWindow(settings, engine_factory=lambda cb: Engine(cb, preview_interval=0.0, threads=2),
                   autosave_dir=tmp_path / "autosave")
    # Not qtbot.addWidget: pytest-qt would close the window before this fixture's teardown, and
    # closing a modified document asks "Save changes?" in a modal dialog.
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w._saved_revision = w.doc.history.revision  # no "save changes?" question at teardown
    w.close()
    w.bridge.engine.shutdown(wait=True)


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    print(f"\ntest artifacts (screenshots) are written to {ARTIFACTS}")
    return ARTIFACTS
