"""Settings ▸ Engine: this computer or a server; a server that cannot be used is one sentence and the
engine in use stays; the choice persists."""
import socket

from studio import settings as settings_mod
from studio.engine_settings import EngineDialog, check_connection
from studio.settings import EngineSettings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_dialog_offers_this_computer_or_a_server(qtbot):
    dialog = EngineDialog(EngineSettings())
    qtbot.addWidget(dialog)
    assert dialog.local.isChecked() and not dialog.url.isEnabled() and not dialog.test.isEnabled()
    dialog.server.setChecked(True)
    dialog.url.setText(" http://gpu-box:7860 ")
    dialog.token.setText("secret\n")
    assert dialog.url.isEnabled() and dialog.token.echoMode() == dialog.token.EchoMode.Password
    assert dialog.chosen() == EngineSettings("server", "http://gpu-box:7860", "secret")


def test_test_connection_says_what_is_wrong_in_one_sentence(qtbot):
    port = closed_port()
    dialog = EngineDialog(EngineSettings("server", f"http://127.0.0.1:{port}", "t"))
    qtbot.addWidget(dialog)
    dialog.run_test()  # on a thread: the window stays responsive while it waits
    qtbot.waitUntil(lambda: dialog.result.text() != "Connecting…", timeout=15000)
    text = dialog.result.text()
    assert text.startswith(f"Cannot reach the server at http://127.0.0.1:{port}") and text.endswith("runs there.")
    assert check_connection("", "") == "Give the server's address, like http://gpu-box:7860."


def test_an_unreachable_server_keeps_the_engine_in_use(window, fake_engine):
    engine = window.bridge.engine
    assert window.status_engine.text() == "Engine: this computer"
    url = f"http://127.0.0.1:{closed_port()}"
    assert not window.use_engine(EngineSettings("server", url, "t"))
    assert window.bridge.engine is engine and window.settings.engine.kind == "local"
    assert window.messages.isVisible() and window.messages.label.text().startswith("Cannot reach the server")


def test_the_status_bar_says_when_a_servers_connection_dropped_and_when_it_is_back(window, qtbot):
    engine = window.bridge.engine
    engine.connection = lambda: (False, "Connection refused")  # as RemoteEngine says while it reconnects
    qtbot.waitUntil(lambda: window.status_engine.text() == "Engine: this computer — reconnecting (Connection refused)",
                    timeout=5000)  # the window looks every second
    assert "tries again by itself" in window.status_engine.toolTip()
    engine.connection = lambda: (True, "")
    qtbot.waitUntil(lambda: window.status_engine.text() == "Engine: this computer", timeout=5000)
    assert window.status_engine.toolTip() == ""


def test_the_engine_choice_persists(tmp_path):
    settings = settings_mod.Settings()
    settings.engine = EngineSettings("server", "http://gpu-box:7860", "tok")
    path = tmp_path / "settings.json"
    settings_mod.save(settings, path)
    assert (path.stat().st_mode & 0o777) == 0o600  # it holds a token
    assert settings_mod.load(path).engine == EngineSettings("server", "http://gpu-box:7860", "tok")
    path.write_text('{"engine": {"kind": "cloud", "url": 3}}')
    assert settings_mod.load(path).engine == EngineSettings()


def test_the_fast_path_checkbox_reaches_the_engine_and_persists(qtbot, tmp_path):
    from studio.engine_settings import engine_factory_for

    dialog = EngineDialog(EngineSettings())
    qtbot.addWidget(dialog)
    assert dialog.fast_path.isChecked() and dialog.fast_path.isEnabled()
    dialog.fast_path.setChecked(False)
    chosen = dialog.chosen()
    assert chosen == EngineSettings("local", "", "", False)
    engine = engine_factory_for(chosen)(lambda event: None)
    try:
        assert engine._fast_path is False  # the models it loads skip backend.fastpath
    finally:
        engine.shutdown()
    engine = engine_factory_for(EngineSettings())(lambda event: None)
    try:
        assert engine._fast_path is None  # on, unless $LATENT_STUDIO_FAST_PATH says off
    finally:
        engine.shutdown()
    dialog.server.setChecked(True)
    assert not dialog.fast_path.isEnabled()
    settings = settings_mod.Settings()
    settings.engine = chosen
    path = tmp_path / "settings.json"
    settings_mod.save(settings, path)
    assert settings_mod.load(path).engine.fast_path is False
