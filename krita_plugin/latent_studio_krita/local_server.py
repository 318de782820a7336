"""The engine as a local server process, for a Krita whose Python cannot load Latent Studio's packages:
Latent Studio's own Python runs ``main.py serve`` on 127.0.0.1, a free port and a random token (in a file
only this user can read); the plugin waits for it to answer and talks to it with the remote client.
``stop()`` ends the process (and the local Ray cluster it started)."""
from __future__ import annotations

import http.client
import os
import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .environment import EnvironmentProblem

PROTOCOL_HEADER = "X-Latent-Studio-Protocol"  # remote.protocol's; read here without importing it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(record: dict, port: int, token_file: Path) -> list[str]:
    return [record["python"], str(Path(record["root"]) / "main.py"), "serve", "--host", "127.0.0.1",
            "--port", str(port), "--token-file", str(token_file)]


class LocalServer:
    def __init__(self, record: dict, *, timeout: float = 180.0, protocol: int = 1):
        self.port = free_port()
        self.token = secrets.token_urlsafe(32)
        self._dir = Path(tempfile.mkdtemp(prefix="latent-studio-krita-"))
        token_file = self._dir / "token"
        token_file.touch(0o600)
        token_file.write_text(self.token)
        self.log = self._dir / "server.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(server_command(record, self.port, token_file), cwd=record["root"],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait(timeout, protocol)

    def _wait(self, timeout: float, protocol: int) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EnvironmentProblem(f"Latent Studio's server process stopped at start ({self._last_line()}): "
                                         f"the details are in {self.log}.")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/hello", headers={PROTOCOL_HEADER: str(protocol),
                                                       "Authorization": f"Bearer {self.token}"})
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise EnvironmentProblem(f"Latent Studio's server process did not answer within {timeout:.0f} s: see "
                                 f"{self.log}.")

    def _last_line(self) -> str:
        try:
            lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        return (lines[-1].strip() if lines else f"exit code {self.process.returncode}")[:200]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        try:
            os.unlink(self._dir / "token")
        except OSError:
            pass
