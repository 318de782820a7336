"""`main.py serve` as a painter's administrator runs it: it answers, and SIGTERM stops it with every
process of the local Ray cluster it started (loopback only; one server, stopped by the test)."""
import http.client
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remote.protocol import PROTOCOL, PROTOCOL_HEADER

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                       reason="the cluster extra (Ray Serve) is not installed: run `make setup-cluster`"),
]

ROOT = Path(__file__).resolve().parents[2]


def session_processes(sid: int) -> list[str]:
    """The names of the live processes of session ``sid`` (Linux /proc)."""
    names = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
            names.append(name)
    return names


def hello(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/hello", headers={PROTOCOL_HEADER: str(PROTOCOL)})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
def test_serve_answers_and_sigterm_leaves_no_process_behind(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "main.py", "serve", "--port", str(port), "--threads", "1"],
                                  cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()[-2000:]
            try:
                if hello(port) == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("serve did not answer in 180 s:\n" + log.read_text()[-2000:])
        running = session_processes(server.pid)
        assert {"raylet", "gcs_server"} <= set(running), running  # the local cluster is the server's own
        deadline = time.monotonic() + 60  # the gateway may answer a moment before `serve` says so
        while f"Serving Latent Studio on http://127.0.0.1:{port}" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0, log.read_text()[-2000:]
        deadline = time.monotonic() + 30
        while session_processes(server.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert session_processes(server.pid) == [], log.read_text()[-2000:]
        with pytest.raises(OSError):
            hello(port)
    finally:
        if server.poll() is None or session_processes(server.pid):
            os.killpg(server.pid, signal.SIGKILL)
