"""Where the plugin's engine runs: in Krita's process when the Python minor versions match, else a local
server process on loopback with a random token, or the server the painter names; each problem is one
sentence."""
import os
import sys
import textwrap
from pathlib import Path

import pytest

from krita_plugin.latent_studio_krita import environment as env
from krita_plugin.latent_studio_krita.local_server import LocalServer, server_command

ROOT = Path(__file__).resolve().parents[2]


def record(tmp_path, version=(3, 11), root=ROOT, python=sys.executable):
    return env.write_record(tmp_path / "environment.json", root, python, version, [str(tmp_path / "site")])


def test_the_same_python_minor_runs_in_krita_and_says_so(tmp_path):
    placement = env.choose(record(tmp_path), running=(3, 11))
    assert placement.kind == env.IN_PROCESS and "in Krita's process" in placement.label and "3.11" in placement.label
    assert env.read_record(tmp_path / "environment.json")["python_version"] == "3.11"


def test_another_python_minor_starts_a_local_server_and_a_url_wins(tmp_path):
    rec = record(tmp_path)
    local = env.choose(rec, running=(3, 10))
    assert local.kind == env.LOCAL_SERVER and "Python 3.10" in local.label and "3.11" in local.label
    server = env.choose(rec, running=(3, 10), server_url=" http://gpu-box:7860 ")
    assert server.kind == env.SERVER and server.url == "http://gpu-box:7860" and "gpu-box" in server.label


@pytest.mark.parametrize("make, words", [
    (lambda tmp: None, "install-krita-plugin"),
    (lambda tmp: record(tmp, root=tmp / "gone"), "no longer at"),
    (lambda tmp: record(tmp, version=(3, 10), python=str(tmp / "gone" / "python")), "is gone"),
])
def test_a_missing_environment_is_one_sentence(tmp_path, make, words):
    with pytest.raises(env.EnvironmentProblem) as info:
        env.choose(make(tmp_path), running=(3, 11))
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_record_that_is_not_json_is_one_sentence(tmp_path):
    (tmp_path / "environment.json").write_text("{oops")
    with pytest.raises(env.EnvironmentProblem, match="install-krita-plugin"):
        env.read_record(tmp_path / "environment.json")
    assert env.read_record(tmp_path / "none.json") is None


def test_activate_puts_the_environment_first_on_the_path(tmp_path, monkeypatch):
    (tmp_path / "site").mkdir()
    installed = [p for p in sys.path if "site-packages" in p]
    monkeypatch.setattr(sys, "path", ["/krita/own"])
    rec = record(tmp_path)
    env.activate(rec, env.choose(rec, running=(3, 11)))
    assert sys.path == [str(ROOT), str(tmp_path / "site"), "/krita/own"]
    monkeypatch.setattr(sys, "path", ["/krita/own"] + installed)
    env.activate(rec, env.choose(rec, running=(3, 10)))
    assert sys.path[0] == str(ROOT) and str(tmp_path / "site") not in sys.path


FAKE_SERVE = textwrap.dedent('''
    import http.server, sys
    args = sys.argv[1:]
    port, token = int(args[args.index("--port") + 1]), open(args[args.index("--token-file") + 1]).read()
    assert args[:3] == ["serve", "--host", "127.0.0.1"]
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/hello" and self.headers["Authorization"] == "Bearer " + token
            self.send_response(200 if ok else 401)
            self.end_headers()
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", port), Hello).serve_forever()
''')


def test_the_local_server_runs_on_loopback_with_a_private_random_token_and_stops(tmp_path):
    (tmp_path / "main.py").write_text(FAKE_SERVE)
    rec = {"root": str(tmp_path), "python": sys.executable}
    server = LocalServer(rec, timeout=30)
    try:
        assert server.url == f"http://127.0.0.1:{server.port}" and len(server.token) >= 40
        command = server_command(rec, server.port, Path("/t"))
        assert command[1:] == [str(tmp_path / "main.py"), "serve", "--host", "127.0.0.1", "--port",
                               str(server.port), "--token-file", "/t"]
        token_file = Path(server.process.args[-1])
        assert token_file.read_text() == server.token and (token_file.stat().st_mode & 0o077) == 0
    finally:
        server.stop()
    assert server.process.poll() is not None and not token_file.exists()


def test_a_local_server_that_stops_at_start_says_why(tmp_path):
    (tmp_path / "main.py").write_text("import sys; print('ray is not installed: make setup-cluster'); sys.exit(3)")
    with pytest.raises(env.EnvironmentProblem, match="ray is not installed: make setup-cluster"):
        LocalServer({"root": str(tmp_path), "python": sys.executable}, timeout=30)
