"""The client against a scripted server on loopback (no Ray): a job being submitted while the server
restarts ends once, and only as the server says. Each server call is bounded; the server stops itself."""
import http.server
import json
import threading
import time

import numpy as np
import pytest

from backend import Img2ImgRequest
from backend.events import TERMINAL, Failed, Result, ResultImage, Started
from remote import protocol
from remote.client import LOST, RemoteEngine
from remote.protocol import PROTOCOL, SESSION_HEADER


class Script(http.server.ThreadingHTTPServer):
    """A server that forgets every client on ``restart()``, and holds the first POST /jobs until ``release``."""

    daemon_threads = True

    def __init__(self, first_job_answer: str, port: int = 0):
        super().__init__(("127.0.0.1", port), Handler)
        self.first_job_answer = first_job_answer  # "job": it took the job (before the restart); "session": forgot
        self.sessions: dict[str, list] = {}  # session -> its events (sequence of encoded dicts)
        self.issued = 0
        self.jobs = 0
        self.cond = threading.Condition()
        self.restarted = threading.Event()
        self.post_held = threading.Event()
        self.release = threading.Event()

    def restart(self):
        with self.cond:
            self.sessions.clear()
            self.restarted.set()
            self.cond.notify_all()

    def push(self, session, event):
        with self.cond:
            self.sessions[session].append(protocol.encode(event))
            self.cond.notify_all()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def forgot(self):
        self.answer(404, {"error": "The server does not know this client: connect again.", "code": "session"})

    def do_POST(self):
        srv = self.server
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        session = self.headers.get(SESSION_HEADER, "")
        if self.path == "/session":
            with srv.cond:
                srv.issued += 1
                sid = f"s{srv.issued}"
                srv.sessions[sid] = []
            return self.answer(200, {"session": sid, "protocol": PROTOCOL, "limits": {}})
        if self.path == "/jobs":
            if session == "s1":  # the job submitted just before the restart
                srv.post_held.set()
                assert srv.release.wait(10)
                if srv.first_job_answer == "session":
                    return self.forgot()
                return self.answer(200, {"job": 7})  # taken by the old server, which then went away
            if session not in srv.sessions:
                return self.forgot()
            srv.jobs += 1
            job = srv.jobs
            self.answer(200, {"job": job})
            image = ResultImage(np.zeros((8, 8, 4), np.uint8), (0, 0, 8, 8), np.zeros((8, 8), np.uint8), seed=1)
            srv.push(session, Started(job, "img2img", 1))
            srv.push(session, Result(job, (image,)))
            return None
        return self.answer(404, {"error": "no such call", "code": "server"})

    def do_DELETE(self):
        self.answer(200, {})

    def do_GET(self):
        srv = self.server
        session = self.headers.get(SESSION_HEADER, "")
        if self.path != "/events":
            return self.answer(404, {"error": "no such call", "code": "server"})
        with srv.cond:
            known = session in srv.sessions
        if not known:
            return self.forgot()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sent, deadline = 0, time.monotonic() + 20
        while time.monotonic() < deadline:
            with srv.cond:
                srv.cond.wait_for(lambda: session not in srv.sessions or len(srv.sessions[session]) > sent, 0.2)
                if session not in srv.sessions:
                    return None  # restarted: the stream ends
                pending = srv.sessions[session][sent:]
            for event in pending:
                sent += 1
                self.wfile.write(f"id: {sent}\ndata: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
        return None


@pytest.mark.parametrize("first_job_answer", ["session", "job"])
def test_a_job_submitted_while_the_server_restarts_ends_once(first_job_answer):
    server = Script(first_job_answer)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    events, cond = [], threading.Condition()

    def on_event(event):
        with cond:
            events.append(event)
            cond.notify_all()

    engine = RemoteEngine(on_event, f"http://127.0.0.1:{server.server_address[1]}", timeout=15)
    try:
        submitted = []
        submit = threading.Thread(target=lambda: submitted.append(engine.submit(Img2ImgRequest(
            image=np.zeros((8, 8, 3), np.uint8)))))
        submit.start()
        assert server.post_held.wait(10)  # the job is on its way to the server...
        server.restart()  # ...which restarts: the client's stream finds its session gone and opens another
        deadline = time.monotonic() + 10
        while engine._session == "s1" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine._session == "s2"
        server.release.set()
        submit.join(15)
        assert len(submitted) == 1
        job = submitted[0]
        with cond:
            assert cond.wait_for(lambda: any(e.job_id == job and isinstance(e, TERMINAL) for e in events), 10)
        time.sleep(0.3)  # a second ending would come now
        ends = [e for e in events if e.job_id == job and isinstance(e, TERMINAL)]
        assert len(ends) == 1, ends
        if first_job_answer == "session":  # the server had not taken it: the client sent it again and it ran
            assert isinstance(ends[0], Result) and any(isinstance(e, Started) for e in events if e.job_id == job)
        else:  # the old server took it and went away: lost, said once
            assert isinstance(ends[0], Failed) and ends[0].message == LOST
    finally:
        engine.shutdown(timeout=5)
        server.shutdown()
        server.server_close()


def test_the_client_says_when_its_stream_is_down_and_when_it_is_back():
    server = Script("session")
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    engine = RemoteEngine(lambda event: None, f"http://127.0.0.1:{port}", timeout=5)
    again = None
    try:
        assert engine.connection() == (True, "")
        server.restart()  # its streams end...
        server.shutdown()  # ...and nothing listens any more
        server.server_close()
        deadline = time.monotonic() + 10
        while "refused" not in engine.connection()[1].lower() and time.monotonic() < deadline:
            time.sleep(0.05)  # first the dropped stream, then each try to reconnect is refused
        connected, problem = engine.connection()
        assert not connected and "refused" in problem.lower(), problem
        again = Script("session", port)  # the server is back on the same port (it forgot the client)
        threading.Thread(target=again.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        deadline = time.monotonic() + 10
        while not engine.connection()[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.connection() == (True, "") and engine._session == "s1"  # a new session on the new server
    finally:
        engine.shutdown(timeout=5)
        if again is not None:
            again.restart()
            again.shutdown()
            again.server_close()
