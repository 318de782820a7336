"""The server's two parts, as plain classes that :mod:`remote.serve` deploys with Ray Serve.

* :class:`Worker` (one per replica: one GPU, or CPU) owns one in-process :class:`backend.engine.Engine`
  and the model it loaded. ``run(request)`` is a streaming call: it submits the job to the engine and
  yields the job's events, encoded, until the last one; a cancelled call cancels the job. Ray Serve's
  model multiplexing sends a job to a replica that already has the job's model when one is free.
* :class:`Gateway` (one replica, the HTTP ingress) checks the protocol version and the token, keeps
  each client's session (its jobs, its event buffer), refuses requests over the limits or naming a
  model outside the server's model folders, queues jobs per client and hands them to the workers in
  turn (one client's batch does not hold up another's job), and streams each client its own events.

Nothing here imports Ray at import time; the worker imports torch on its first job.
"""
from __future__ import annotations

import asyncio
import collections
import hmac
import itertools
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

from backend.errors import BackendError, InvalidRequest, ModelError

from . import protocol
from .protocol import PROTOCOL, PROTOCOL_HEADER, SESSION_HEADER, Limits, RemoteError

log = logging.getLogger(__name__)

EVENT_BUFFER = 1024  # events kept per client for a stream that reconnects
IDLE_SESSION_S = 600.0  # a client with no stream and no call for this long is forgotten (its jobs cancelled)
KEEPALIVE_S = 10.0  # a comment line on an idle stream, so both ends notice a dead connection


# --- the engine's replica --------------------------------------------------------------------------

class Worker:
    """One engine. ``options``: ``device``, ``threads``, ``preview_interval`` of the Engine."""

    def __init__(self, options: dict | None = None):
        from backend.engine import Engine

        self._lock = threading.Lock()
        self._jobs: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._preloads: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self._engine = Engine(self._on_event, **(options or {}))
        # torch and diffusers load while the replica waits for its first job (the engine's thread would
        # otherwise import them then); the import lock makes the engine wait for this rather than repeat it
        threading.Thread(target=_warm_up, name="latent-studio-warm-up", daemon=True).start()

    def _on_event(self, event) -> None:  # the engine's thread
        with self._lock:
            targets = [self._jobs[event.job_id]] if event.job_id in self._jobs else (
                list(self._preloads) if event.job_id == 0 else [])
        if not targets:
            return
        encoded = protocol.encode(event)  # images are encoded here, off the event loop
        encoded["$sent"] = time.time()  # when the engine emitted it (bench/bench_remote.py: stream latency)
        for loop, queue in targets:
            loop.call_soon_threadsafe(queue.put_nowait, encoded)

    async def _model(self, model_id: str) -> str:
        """Wrapped by ``serve.multiplexed`` in :mod:`remote.serve`: marks the model as this replica's."""
        return model_id

    async def _touch(self) -> None:
        from ray import serve

        model_id = serve.get_multiplexed_model_id()
        if model_id:
            await self._model(model_id)

    async def run(self, request):
        """Runs ``request`` (already validated by the gateway) and yields its encoded events."""
        await self._touch()
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        with self._lock:
            job = self._engine.submit(request)
            self._jobs[job] = (loop, queue)
        finished = False
        try:
            while True:
                event = await queue.get()
                yield event
                if event["$type"] in protocol.TERMINAL_NAMES:
                    finished = True
                    return
        finally:
            if not finished:  # the call was cancelled (the client cancelled, or went away)
                self._engine.cancel(job)
            with self._lock:
                self._jobs.pop(job, None)

    async def preload(self, model: str):
        """Loads ``model``; yields its encoded ``ModelState`` events up to ready or failed."""
        await self._touch()
        target = (asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            self._preloads.append(target)
        try:
            self._engine.preload(model)
            while True:
                event = await target[1].get()
                yield event
                if event["$fields"].get("state") in ("ready", "failed"):
                    return
        finally:
            with self._lock:
                self._preloads.remove(target)

    def __del__(self):
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.shutdown(wait=False)


def _warm_up() -> None:
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except Exception:  # the first job reports any real problem
        log.exception("warming up the replica failed")


# --- the ingress --------------------------------------------------------------------------------

@dataclass
class Job:
    id: int
    session: "Session"
    request: object
    model_id: str
    state: str = "queued"  # queued, running, done, failed, cancelled
    cancelled: bool = False
    call: object = None  # the worker's streaming response while running


@dataclass
class Session:
    id: str
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))
    events: collections.deque = field(default_factory=lambda: collections.deque(maxlen=EVENT_BUFFER))
    queued: collections.deque = field(default_factory=collections.deque)
    jobs: dict = field(default_factory=dict)
    streams: int = 0
    seen: float = field(default_factory=time.monotonic)
    changed: asyncio.Event | None = None

    def push(self, encoded: dict) -> None:
        self.events.append((next(self.seq), json.dumps(encoded, separators=(",", ":"))))
        if self.changed is not None:
            self.changed.set()


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Gateway:
    """The HTTP side. ``config``: ``token`` ("" = none asked, loopback only), ``limits`` (a dict of
    :class:`Limits`), ``slots`` (jobs handed to the workers at once: the number of replicas)."""

    def __init__(self, worker, config: dict):
        self._worker = worker
        self._token = str(config.get("token") or "")
        self._limits = Limits(**config.get("limits", {}))
        self._slots = max(1, int(config.get("slots", 1)))
        self._running = 0
        self._sessions: dict[str, Session] = {}
        self._turns: collections.deque[str] = collections.deque()  # sessions with queued jobs, in turn
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    # --- HTTP ---------------------------------------------------------------------------------
    async def __call__(self, request):
        from starlette.responses import JSONResponse

        try:
            self._check_protocol(request)
            self._check_token(request)
            return await self._route(request)
        except Refusal as exc:
            return JSONResponse({"error": exc.message, "code": exc.code, "protocol": PROTOCOL}, exc.status,
                                headers={PROTOCOL_HEADER: str(PROTOCOL)})
        except RemoteError as exc:
            return JSONResponse({"error": str(exc), "code": exc.code, "protocol": PROTOCOL}, exc.status or 400)
        except InvalidRequest as exc:
            return JSONResponse({"error": str(exc), "code": "request"}, 400)
        except ModelError as exc:
            return JSONResponse({"error": str(exc), "code": "model"}, 400)
        except BackendError as exc:
            return JSONResponse({"error": str(exc), "code": "request"}, 400)

    def _check_protocol(self, request) -> None:
        given = request.headers.get(PROTOCOL_HEADER)
        if given is None:
            raise Refusal(400, "protocol", f"This is a Latent Studio server (protocol {PROTOCOL}): connect with "
                                           "Latent Studio's app, its CLI (--engine URL) or remote.RemoteEngine.")
        if given.strip() != str(PROTOCOL):
            raise Refusal(400, "protocol", protocol.mismatch_sentence(PROTOCOL, given.strip()[:20]))

    def _check_token(self, request) -> None:
        if not self._token:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if not header:
            raise Refusal(401, "auth", "The server needs a token: give it with --token-file or LATENT_STUDIO_TOKEN "
                                       "(ask the server's administrator for it).")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token.encode()):
            raise Refusal(401, "auth", "The server refused the token: check the token file or LATENT_STUDIO_TOKEN "
                                       "against the server's.")

    async def _route(self, request):
        from starlette.responses import JSONResponse

        method, parts = request.method, [p for p in request.url.path.split("/") if p]
        if parts == ["hello"] and method == "GET":
            return JSONResponse({"protocol": PROTOCOL, "server": "latent-studio"})
        if parts == ["session"] and method == "POST":
            return JSONResponse(self._open_session())
        session = self._session(request)
        if parts == ["session"] and method == "DELETE":
            self._close_session(session)
            return JSONResponse({})
        if parts == ["events"] and method == "GET":
            return self._stream(session, request)
        if parts == ["jobs"] and method == "POST":
            if self._closing:
                raise Refusal(503, "server", "The server is stopping: submit the job again when it is back.")
            job = await self._submit(session, await self._body(request))
            return JSONResponse({"job": job.id})
        if parts == ["jobs"] and method == "GET":
            return JSONResponse({"jobs": [{"job": j.id, "state": j.state} for j in session.jobs.values()]})
        if parts == ["jobs", "cancel-all"] and method == "POST":
            for job in list(session.jobs.values()):
                self._cancel(job)
            return JSONResponse({})
        if len(parts) >= 2 and parts[0] == "jobs":
            job = self._own_job(session, parts[1])
            if len(parts) == 2 and method == "GET":
                return JSONResponse({"job": job.id, "state": job.state})
            if parts[2:] == ["cancel"] and method == "POST":
                return JSONResponse({"cancelled": self._cancel(job)})
        if parts == ["check"] and method == "POST":
            request_, _ = self._decode_request(await self._body(request))
            await asyncio.to_thread(self._check, request_)
            return JSONResponse({})
        if parts == ["preload"] and method == "POST":
            body = await self._body(request)
            model = str(body.get("model", ""))
            self._check_model_name(model, "model")
            self._spawn(self._preload(session, model, _where(model)))
            return JSONResponse({})
        if parts == ["models"] and method == "GET":
            return JSONResponse({"models": [list(m) for m in await asyncio.to_thread(_served_models)]})
        if parts == ["models", "info"] and method == "GET":
            model = request.query_params.get("model", "")
            self._check_model_name(model, "model")
            from backend.models import model_info

            return JSONResponse({"info": protocol.encode(await asyncio.to_thread(model_info, model))})
        raise Refusal(404, "server", f"This server has no {method} {request.url.path}: use the same version of "
                                     "Latent Studio on both sides.")

    async def _body(self, request) -> dict:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > self._limits.max_body:
            raise Refusal(413, "limit", f"The request is {int(size)} bytes but this server takes at most "
                                        f"{self._limits.max_body}: send a smaller region.")
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > self._limits.max_body:
                raise Refusal(413, "limit", f"The request is over {self._limits.max_body} bytes, more than this "
                                            "server takes: send a smaller region.")
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            raise Refusal(400, "request", "The request body is not JSON: send it with remote.RemoteEngine.") from None
        if not isinstance(body, dict):
            raise Refusal(400, "request", "The request body must be a JSON object: send it with remote.RemoteEngine.")
        return body

    # --- sessions ------------------------------------------------------------------------------
    def _open_session(self) -> dict:
        self._forget_idle()
        session = Session(secrets.token_urlsafe(24))
        self._sessions[session.id] = session
        limits = self._limits
        return {"session": session.id, "protocol": PROTOCOL,
                "limits": {"max_side": limits.max_side, "max_pixels": limits.max_pixels,
                           "max_steps": limits.max_steps, "max_count": limits.max_count}}

    def _session(self, request) -> Session:
        sid = request.headers.get(SESSION_HEADER, "")
        session = self._sessions.get(sid)
        if session is None:
            raise Refusal(404, "session", "The server does not know this client (it restarted, or forgot an idle "
                                          "client): connect again.")
        session.seen = time.monotonic()
        return session

    def _close_session(self, session: Session) -> None:
        for job in list(session.jobs.values()):
            self._cancel(job)
        self._sessions.pop(session.id, None)
        if session.changed is not None:
            session.changed.set()

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for session in list(self._sessions.values()):
            if session.streams == 0 and now - session.seen > IDLE_SESSION_S:
                self._close_session(session)

    def _own_job(self, session: Session, text: str) -> Job:
        job = session.jobs.get(int(text)) if text.isdigit() else None
        if job is None:
            raise Refusal(404, "job", f"Job {text[:20]} is not one of this client's jobs: a client sees and cancels "
                                      "only the jobs it submitted.")
        return job

    # --- jobs ------------------------------------------------------------------------------------
    def _decode_request(self, body: dict):
        try:
            request = protocol.decode(body.get("request"), self._limits.image_limits(),
                                      allowed=protocol.request_names())
        except (RemoteError, InvalidRequest):
            raise
        except Exception as exc:  # malformed data the codec did not foresee
            raise InvalidRequest(f"The request could not be read ({type(exc).__name__}): send it with "
                                 "remote.RemoteEngine.") from None
        if type(request).__name__ not in protocol.request_names():
            raise InvalidRequest("The request is not a job this server runs: send an inpaint, img2img, outpaint "
                                 "or upscale request.")
        self._limits.check(request)
        if request.allow_pickle:
            raise InvalidRequest("This server does not load pickle model files: ask its administrator for a "
                                 ".safetensors version of the model.")
        self._check_model_name(request.model, "model")
        if hasattr(request, "upscaler"):
            self._check_model_name(request.upscaler, "upscaler", also=("lanczos", "realesrgan_x4plus"))
        model_id = _model_id(request)  # by name, as preload routes it
        if request.model:
            request = request.replace(model=_where(request.model))
        return request, model_id

    def _check_model_name(self, name: str, what: str, also: tuple[str, ...] = ()) -> None:
        """Models by name only, from the server's model folders (no paths, no hub downloads)."""
        if not name or name.lower() in also:
            return
        from backend.models import HUB_ID

        if HUB_ID.match(name) and not name.startswith((".", "/")) and ".." not in name:
            raise ModelError(f"`{what}` {name[:80]!r} is a hub id, but this server does not download models: choose "
                             "one from its list of models, or ask its administrator to add this one.")
        if any(c in name for c in "/\\:") or name.startswith((".", "~")) or "\x00" in name:
            raise InvalidRequest(f"`{what}` {name[:80]!r} is a path, but this server serves models by name only: "
                                 "choose one from its list of models.")
        names = {n for n, _, _ in _served_models()}
        if name not in names:
            raise ModelError(f"This server has no model named {name[:80]!r}: choose one from its list of models.")

    def _check(self, request) -> None:
        from backend.ops import OPERATIONS

        check = OPERATIONS[type(request)].check
        if check is not None:
            check(request)

    async def _submit(self, session: Session, body: dict) -> Job:
        request, model_id = self._decode_request(body)
        job = Job(next(self._ids), session, request, model_id)
        session.jobs[job.id] = job
        self._jobs[job.id] = job
        session.queued.append(job)
        if session.id not in self._turns:
            self._turns.append(session.id)
        self._pump()
        return job

    def _pump(self) -> None:
        """Hands queued jobs to the workers while a slot is free, one client after another."""
        while self._running < self._slots and self._turns:
            sid = self._turns.popleft()
            session = self._sessions.get(sid)
            if session is None or not session.queued:
                continue
            job = session.queued.popleft()
            if session.queued:
                self._turns.append(sid)
            self._running += 1
            job.state = "running"
            self._spawn(self._run(job))

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job) -> None:
        session = job.session
        try:
            for attempt in (1, 2):
                started = False
                try:
                    job.call = self._worker.options(stream=True, multiplexed_model_id=job.model_id).run.remote(
                        job.request)
                    async for encoded in job.call:
                        if job.cancelled:
                            break
                        encoded["$fields"]["job_id"] = job.id
                        started = True
                        if encoded["$type"] in protocol.TERMINAL_NAMES:
                            job.state = encoded["$type"].lower()
                        session.push(encoded)
                    if job.cancelled and job.state == "running":
                        self._finish(job, "cancelled", protocol.encode(_cancelled(job.id)))
                    elif job.state == "running":
                        self._finish(job, "failed", _failed(job.id, "The server's engine stopped answering during "
                                                                    "this job: submit it again."))
                    return
                except Exception as exc:  # the replica died, or the call was cancelled
                    if job.cancelled:
                        self._finish(job, "cancelled", protocol.encode(_cancelled(job.id)))
                        return
                    if attempt == 1 and not started:
                        log.warning("job %s: no answer from a replica (%s); retrying once", job.id, exc)
                        continue
                    log.exception("job %s failed on its replica", job.id)
                    self._finish(job, "failed", _failed(
                        job.id, f"The server lost the engine running this job ({type(exc).__name__}): submit it "
                                "again.", repr(exc)))
                    return
        finally:
            job.call = None
            self._running -= 1
            self._pump()

    def _finish(self, job: Job, state: str, encoded: dict) -> None:
        if job.state in ("queued", "running"):
            job.state = state
            job.session.push(encoded)

    def _cancel(self, job: Job, failed: dict | None = None) -> bool:
        """Cancels ``job``; with ``failed`` (an encoded Failed event) it ends with that event instead."""
        if job.state == "queued":
            try:
                job.session.queued.remove(job)
            except ValueError:
                pass
            if failed is None:
                self._finish(job, "cancelled", protocol.encode(_cancelled(job.id)))
            else:
                self._finish(job, "failed", failed)
            return True
        if job.state != "running":
            return False
        if failed is not None:
            self._finish(job, "failed", failed)  # the job's own ending, when the engine stops, is not sent
        job.cancelled = True
        if job.call is not None:
            job.call.cancel()  # the worker's generator stops and cancels the engine's job
        return True

    async def close(self) -> int:
        """The server is stopping (``Server.stop``): every queued or running job ends now with one
        ``Failed`` sentence, running ones are cancelled on their engines, and every event stream ends
        once it has sent them, so that stopping does not wait for jobs or streams. Returns the jobs ended."""
        self._closing = True
        ended = sum(self._cancel(job, _failed(job.id, "The server stopped during this job: submit it again when the "
                                                      "server is back."))
                    for job in list(self._jobs.values()))
        for session in self._sessions.values():
            if session.changed is not None:
                session.changed.set()
        deadline = time.monotonic() + 5.0  # the streams send what is left, then end
        while any(s.streams for s in self._sessions.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return ended

    async def _preload(self, session: Session, model: str, where: str) -> None:
        try:
            call = self._worker.options(stream=True, multiplexed_model_id=model or _default_id()).preload.remote(where)
            async for encoded in call:
                session.push(encoded)
        except Exception as exc:
            log.warning("preload of %r failed: %s", model, exc)

    # --- the event stream ---------------------------------------------------------------------
    def _stream(self, session: Session, request):
        from starlette.responses import StreamingResponse

        last = request.headers.get("last-event-id", "0")
        after = int(last) if last.isdigit() else 0
        if session.changed is None:
            session.changed = asyncio.Event()

        async def events():
            nonlocal after
            session.streams += 1
            try:
                yield f": protocol {PROTOCOL}\n\n"
                while session.id in self._sessions:
                    pending = [(seq, text) for seq, text in session.events if seq > after]
                    if pending:
                        for seq, text in pending:
                            yield f"id: {seq}\ndata: {text}\n\n"
                            after = seq
                        continue
                    if self._closing:
                        return  # the server is stopping: the client reconnects when it is back
                    session.changed.clear()
                    try:
                        await asyncio.wait_for(session.changed.wait(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
            finally:
                session.streams -= 1
                session.seen = time.monotonic()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", PROTOCOL_HEADER: str(PROTOCOL)})


def _served_models() -> list[tuple[str, str, str]]:
    """The models of the server's folders (embedded and $LATENT_STUDIO_MODELS), without the hub cache
    and without pickles; ``where`` is the name, which is how a client asks for it (the server's paths
    are its own business)."""
    return [(name, kind, name) for name, kind, _ in _list_models()]


def _list_models() -> list[tuple[str, str, str]]:
    from backend.models import list_models

    return [(name, kind, where) for name, kind, where in list_models() if kind in ("embedded", "folder", "checkpoint")]


def _where(name: str) -> str:
    """The model folder's own file for a served model's name, whatever the replica's working folder holds
    (a model reference is tried as a path first)."""
    if not name:
        return name
    return {n: where for n, _, where in _list_models() if where}.get(name, name)


def _default_id() -> str:
    from backend.models import default_model

    return default_model()


def _model_id(request) -> str:
    """The model a job loads, for routing it to a replica that has it ("" for none)."""
    if getattr(request, "refine", True) is False:
        return ""
    return request.model or _default_id()


def _cancelled(job_id: int):
    from backend.events import Cancelled

    return Cancelled(job_id)


def _failed(job_id: int, message: str, details: str = "") -> dict:
    from backend.events import Failed

    return protocol.encode(Failed(job_id, message, details))
