"""``RemoteEngine``: the engine interface over the network, to a ``main.py serve`` server.

    engine = RemoteEngine(on_event, "http://gpu-box:7860", token)   # raises RemoteError when refused
    job = engine.submit(InpaintRequest(...))

It answers with the same events as the in-process engine, on its stream thread, with job ids of its
own. Only the standard library is used (no Ray, no Qt): the app and the CLI need no extra install.
A dropped event stream is reconnected by itself and the events missed meanwhile are replayed; when
the server restarted and lost this client, every job still open ends with one ``Failed`` sentence.
"""
from __future__ import annotations

import collections
import http.client
import itertools
import json
import logging
import ssl
import threading
import time
import urllib.parse
from typing import Callable

from backend.errors import BackendError
from backend.events import Event, Failed
from backend.interface import EngineBase, ModelInfo

from . import protocol
from .protocol import PROTOCOL, PROTOCOL_HEADER, SESSION_HEADER, RemoteError

log = logging.getLogger(__name__)

TOKEN_ENV = "LATENT_STUDIO_TOKEN"
LOST = "The server restarted and lost this job: submit it again."


class RemoteEngine(EngineBase):
    def __init__(self, on_event: Callable[[Event], None], url: str, token: str = "", *, timeout: float = 30.0,
                 stream_timeout: float = 35.0, context: ssl.SSLContext | None = None):
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise RemoteError(f"{url!r} is not a server address: give one like http://gpu-box:7860.", "network")
        self.url = f"{parsed.scheme}://{parsed.netloc}"
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname
        self._port = parsed.port or (443 if self._https else 80)
        self._context = context
        self._token = token.strip()
        self._timeout = timeout
        self._stream_timeout = stream_timeout
        self._on_event = on_event
        self._lock = threading.Lock()
        self._renewing = threading.Lock()
        self._ids = itertools.count(1)
        self._local: dict[int, int] = {}  # server job id -> our job id
        self._server: dict[int, int] = {}  # our job id -> server job id
        self._open: set[int] = set()  # our job ids not ended yet
        self._early: dict[int, list] = {}  # events of a server job whose submit has not returned yet
        self._closed = False
        self._stream_sock = None  # the stream's socket (a response with "Connection: close" takes it from conn)
        self._connected = True  # the session just opened; False from a dropped stream until it is back
        self._problem = ""
        # (event type, seconds from the server's engine emitting it to this client reading it): the same
        # machine's clock only, for bench/bench_remote.py
        self.latencies: collections.deque = collections.deque(maxlen=10_000)
        self.limits: dict = {}
        self._session = ""
        self._open_session()
        self._thread = threading.Thread(target=self._listen, name="latent-studio-remote", daemon=True)
        self._thread.start()

    # --- HTTP -------------------------------------------------------------------------------
    def _connection(self, timeout: float):
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._context)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self) -> dict:
        headers = {PROTOCOL_HEADER: str(PROTOCOL), "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if self._session:
            headers[SESSION_HEADER] = self._session
        return headers

    def _call(self, method: str, path: str, body: dict | None = None, *, renew: bool = True) -> dict:
        return self._call_in_session(method, path, body, renew=renew)[0]

    def _call_in_session(self, method: str, path: str, body: dict | None = None, *,
                         renew: bool = True) -> tuple[dict, str]:
        """The server's answer and the session it was given in (a new one when the server had forgotten this
        client and ``renew``)."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = self._headers()
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn = self._connection(self._timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            status = response.status
        except ssl.SSLCertVerificationError as exc:
            raise RemoteError(f"The certificate of {self.url} is not trusted ({exc.verify_message}): use one the "
                              "system trusts, or name its CA file in SSL_CERT_FILE.", "network") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RemoteError(f"Cannot reach the server at {self.url} ({_reason(exc)}): check the address and that "
                              "`main.py serve` runs there.", "network") from None
        finally:
            conn.close()
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        if status >= 400:
            if answer.get("code") == "session" and renew and path != "/session":
                self._renew(headers.get(SESSION_HEADER, ""))
                return self._call_in_session(method, path, body, renew=False)
            if "error" not in answer:
                raise RemoteError(f"{self.url} answered HTTP {status} and is not a Latent Studio server of this "
                                  "version: check the address.", "protocol", status)
            raise protocol.error_from(answer, status)
        return answer, headers.get(SESSION_HEADER, "")

    # --- sessions -----------------------------------------------------------------------------
    def _open_session(self) -> None:
        answer = self._call("POST", "/session", renew=False)
        if answer.get("protocol") != PROTOCOL:
            raise protocol.RemoteRefused(protocol.mismatch_sentence(answer.get("protocol"), PROTOCOL), "protocol")
        self.limits = dict(answer.get("limits", {}))
        self._session = str(answer["session"])

    def _renew(self, lost_session: str) -> None:
        """The server forgot this client (it restarted): a new session; the jobs still open are lost."""
        with self._renewing:
            if self._session != lost_session or self._closed:
                return  # another thread renewed it already
            self._open_session()
        with self._lock:
            # the jobs the old session had; a job whose submit has not returned yet is its submit's business
            lost = sorted(job for job in self._open if job in self._server)
            self._open.difference_update(lost)
            self._local.clear()
            self._server.clear()
            self._early.clear()
        for job in lost:
            self._emit(Failed(job, LOST))

    # --- the engine interface ---------------------------------------------------------------
    def submit(self, request) -> int:
        if self._closed:
            raise BackendError("The engine has been shut down: start the app again.")
        encoded = protocol.encode(request)
        local = next(self._ids)
        with self._lock:
            self._open.add(local)
        try:
            answer, session = self._call_in_session("POST", "/jobs", {"request": encoded})
            server_job = int(answer["job"])
        except BaseException:
            with self._lock:
                self._open.discard(local)
            raise
        with self._lock:
            lost, early = session != self._session, []  # lost: the server restarted since it took the job
            if lost:
                self._open.discard(local)
            else:
                self._local[server_job] = local
                self._server[local] = server_job
                early = self._early.pop(server_job, [])
        if lost:
            self._emit(Failed(local, LOST))
        for data in early:
            self._deliver(data)
        return local

    def cancel(self, job_id: int) -> bool:
        with self._lock:
            server_job = self._server.get(job_id)
            if job_id not in self._open or server_job is None:
                return False
        try:
            return bool(self._call("POST", f"/jobs/{server_job}/cancel").get("cancelled"))
        except RemoteError as exc:
            if exc.code == "job":
                return False
            raise

    def cancel_all(self) -> None:
        self._call("POST", "/jobs/cancel-all")

    def preload(self, model: str = "") -> None:
        self._call("POST", "/preload", {"model": model})

    def check(self, request) -> None:
        self._call("POST", "/check", {"request": protocol.encode(request)})

    def model_info(self, model: str = "") -> ModelInfo:
        info = self._call("GET", "/models/info?" + urllib.parse.urlencode({"model": model}))["info"]
        return protocol.decode(info, allowed=("ModelInfo",))

    def list_models(self) -> list[tuple[str, str, str]]:
        return [tuple(m) for m in self._call("GET", "/models")["models"]]

    def status(self, job_id: int) -> str:
        """The job's state on the server: queued, running, result, failed or cancelled."""
        with self._lock:
            server_job = self._server.get(job_id)
        if server_job is None:
            raise RemoteError(f"Job {job_id} is not one of this client's jobs.", "job")
        return str(self._call("GET", f"/jobs/{server_job}")["state"])

    def shutdown(self, wait: bool = True, timeout: float | None = 30.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sock = self._stream_sock
        try:
            self._call("DELETE", "/session", renew=False)  # cancels this client's jobs
        except BackendError:
            pass
        if sock is not None:
            try:
                sock.shutdown(2)  # the stream thread's read returns now
            except OSError:
                pass
        if wait:
            self._thread.join(timeout)

    def connection(self) -> tuple[bool, str]:
        """(connected, why not): False with the last reason while the event stream is down and the client
        tries again by itself (the app's status bar shows it)."""
        with self._lock:
            return self._connected, self._problem

    # --- the event stream -------------------------------------------------------------------

    def _deliver(self, data: dict) -> None:
        sent = data.get("$sent")
        if isinstance(sent, float):
            self.latencies.append((data.get("$type"), time.time() - sent))
        fields = data.get("$fields", {})
        server_job = fields.get("job_id", 0)
        with self._lock:
            if server_job == 0:
                local = 0
            elif server_job in self._local:
                local = self._local[server_job]
            else:
                self._early.setdefault(server_job, []).append(data)
                return
            if data.get("$type") in protocol.TERMINAL_NAMES:
                if local not in self._open:
                    return  # already ended (e.g. failed on our side when the server restarted)
                self._open.discard(local)
        try:
            event = protocol.decode(data, allowed=protocol.EVENT_NAMES, job_id=local)
        except BackendError as exc:
            log.warning("an event could not be read: %s", exc)
            return
        self._emit(event)

    def _listen(self) -> None:
        last_id = "0"
        delay = 0.1
        while not self._closed:
            conn = self._connection(self._stream_timeout)
            session = self._session
            try:
                conn.request("GET", "/events", headers={**self._headers(), "Accept": "text/event-stream",
                                                        "Last-Event-ID": last_id})
                with self._lock:
                    self._stream_sock = conn.sock
                    if self._closed:
                        break
                response = conn.getresponse()
                if response.status != 200:
                    answer = _json(response.read())
                    if answer.get("code") == "session" and not self._closed:
                        self._renew(session)
                        last_id = "0"
                        continue
                    raise ConnectionError(answer.get("error") or f"HTTP {response.status}")
                delay = 0.1
                with self._lock:
                    self._connected, self._problem = True, ""
                data_lines: list[str] = []
                event_id = None
                while not self._closed:
                    line = response.readline()
                    if not line:
                        break  # the server closed the stream
                    line = line.decode("utf-8").rstrip("\r\n")
                    if not line:
                        if data_lines:
                            self._deliver(json.loads("\n".join(data_lines)))
                            if event_id is not None:
                                last_id = event_id
                        data_lines, event_id = [], None
                    elif line.startswith("data:"):
                        data_lines.append(line[5:].lstrip(" "))
                    elif line.startswith("id:"):
                        event_id = line[3:].strip()
            except (OSError, http.client.HTTPException, ValueError, BackendError) as exc:
                if not self._closed:
                    log.info("event stream from %s dropped (%s); reconnecting", self.url, _reason(exc))
                    with self._lock:
                        self._connected, self._problem = False, _reason(exc)
            finally:
                conn.close()
            if not self._closed:
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


def _json(raw: bytes) -> dict:
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(reason).rstrip(".")


def remote_engine_factory(url: str, token: str = "", **options):
    """An :data:`backend.interface.EngineFactory` for a server at ``url``."""

    def make(on_event):
        return RemoteEngine(on_event, url, token, **options)

    return make


def token_from(token_file: str | None = None, environ=None) -> str:
    """The token: from ``token_file`` (surrounding whitespace ignored), else $LATENT_STUDIO_TOKEN, else ""."""
    import os
    from pathlib import Path

    if token_file:
        try:
            return Path(token_file).read_text().strip()
        except OSError as exc:
            raise RemoteError(f"The token file {token_file} cannot be read ({exc.strerror or exc}): check its "
                              "name.", "auth") from None
    return (environ if environ is not None else os.environ).get(TOKEN_ENV, "").strip()
