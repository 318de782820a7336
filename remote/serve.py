"""``main.py serve``: the engine as a Ray Serve application (needs the ``cluster`` extra).

    server = start(ServeOptions(port=7860, replicas=2, token="…"))
    print(server.url)
    server.stop()        # the application, Serve, and the local Ray cluster it started

Without ``address`` a local Ray cluster is started (and stopped by :meth:`Server.stop`); with one,
the application joins that cluster and :meth:`Server.stop` deletes only this application. Each
worker replica owns one engine (``num_gpus=1`` when ``device`` is cuda, else ``num_cpus`` =
``threads``); the gateway takes no CPU of its own.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import BackendError

from .protocol import Limits

log = logging.getLogger(__name__)

APP_NAME = "latent-studio"
ROOT = Path(__file__).resolve().parent.parent


class ServeError(BackendError):
    """The server cannot start as asked; ``str()`` is one sentence."""


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 7860
    replicas: int = 1
    max_replicas: int = 0  # above `replicas`: autoscale between them by ongoing jobs
    address: str | None = None  # an existing Ray cluster; None starts a local one
    token: str = ""
    device: str | None = None  # cuda, mps or cpu; None: the best available on each replica
    threads: int | None = None  # torch threads per replica (CPU)
    preview_interval: float = 0.1
    limits: Limits = field(default_factory=Limits)
    tls_cert: str | None = None
    tls_key: str | None = None
    env: dict = field(default_factory=dict)  # extra environment for the replicas


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str) -> str:
    """The token in ``path``, surrounding whitespace ignored; ServeError (one sentence) when unusable."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ServeError(f"The token file {path} cannot be read ({exc.strerror or exc}): check its name and "
                         "permissions.") from None
    if not token:
        raise ServeError(f"The token file {path} is empty: put a long random token in it, e.g. from "
                         "`python -c \"import secrets; print(secrets.token_urlsafe(32))\"`.")
    return token


def check_options(options: ServeOptions) -> None:
    """The refusals that need no Ray: raise ServeError with one sentence."""
    if not is_loopback(options.host) and not options.token:
        raise ServeError(f"Serving on {options.host} would let anyone on the network use this machine: give a "
                         "token with --token-file, or serve on 127.0.0.1.")
    if not 0 < options.port < 65536:
        raise ServeError(f"--port {options.port} is not a port: choose one from 1 to 65535.")
    if options.replicas < 1:
        raise ServeError(f"--replicas {options.replicas} must be at least 1.")
    if options.max_replicas and options.max_replicas < options.replicas:
        raise ServeError(f"--max-replicas {options.max_replicas} is below --replicas {options.replicas}: raise it.")
    if bool(options.tls_cert) != bool(options.tls_key):
        raise ServeError("TLS needs both --tls-cert and --tls-key: give the certificate and its key.")
    if options.address is None:
        family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
        with socket.socket(family) as probe:
            # as the server's own socket does: the connections of a server stopped a moment ago (TIME_WAIT)
            # do not hold the port, a program listening on it does
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((options.host, options.port))
            except OSError as exc:
                raise ServeError(f"Cannot listen on {options.host}:{options.port} ({exc.strerror or exc}): choose "
                                 "another --port or stop what uses it.") from None


def _ray():
    try:
        import ray
        from ray import serve
    except ModuleNotFoundError:
        raise ServeError("Serving needs Ray Serve, which is not installed: run `make setup-cluster` (or "
                         "`pip install -e '.[cluster]'`).") from None
    return ray, serve


# A stopping replica checks this often whether its calls have ended (Ray's default, 2 s, made stopping
# the server take about 5 s after the gateway had ended every job and stream).
SHUTDOWN = {"graceful_shutdown_wait_loop_s": 0.25}


def build_app(options: ServeOptions):
    """The Serve application: the gateway bound to the workers."""
    _, serve = _ray()
    from .server import Gateway, Worker

    from backend.threads import OPENMP_DEFAULTS

    env = {**OPENMP_DEFAULTS, "PYTHONPATH": _pythonpath(),
           **{k: os.environ[k] for k in ("LATENT_STUDIO_MODELS", "LATENT_STUDIO_CACHE", "HF_HUB_OFFLINE", "HF_HOME")
              if k in os.environ},
           **options.env}
    if options.threads:
        env["OMP_NUM_THREADS"] = str(options.threads)
    gpu = (options.device or "").startswith("cuda")
    worker_resources = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": options.threads or 1}
    engine_options = {"device": options.device, "threads": options.threads,
                      "preview_interval": options.preview_interval}

    class EngineWorker(Worker):
        _model = serve.multiplexed(max_num_models_per_replica=1)(Worker._model)

    scaling = {"num_replicas": options.replicas}
    if options.max_replicas > options.replicas:
        scaling = {"autoscaling_config": {"min_replicas": options.replicas, "max_replicas": options.max_replicas,
                                          "target_ongoing_requests": 1}}
    worker = serve.deployment(
        EngineWorker, name="EngineWorker", max_ongoing_requests=1, max_queued_requests=-1, **SHUTDOWN,
        ray_actor_options={**worker_resources, "runtime_env": {"env_vars": env}}, **scaling)
    gateway = serve.deployment(
        Gateway, name="Gateway", num_replicas=1, max_ongoing_requests=10_000, **SHUTDOWN,
        ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": env}})
    limits = options.limits
    config = {"token": options.token, "slots": max(options.replicas, options.max_replicas),
              "limits": {"max_side": limits.max_side, "max_pixels": limits.max_pixels,
                         "max_steps": limits.max_steps, "max_count": limits.max_count}}
    return gateway.bind(worker.bind(engine_options), config)


def _pythonpath() -> str:
    parts = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


def _signal_handlers() -> dict:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore(handlers: dict) -> None:
    import signal

    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


class Server:
    def __init__(self, options: ServeOptions, started_cluster: bool):
        self.options = options
        self.started_cluster = started_cluster
        scheme = "https" if options.tls_cert else "http"
        host = options.host if options.host not in ("0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{host}:{options.port}"
        self._stopped = False

    def stop(self) -> None:
        """Stops the application; the local cluster too, when this server started it."""
        if self._stopped:
            return
        self._stopped = True
        ray, serve = _ray()
        try:
            # Open jobs and event streams would hold each replica's graceful shutdown for its full timeout
            # (20 s): the gateway ends them first, each open job with one Failed sentence to its client.
            serve.get_app_handle(APP_NAME).close.remote().result(timeout_s=10)
        except Exception as exc:  # not deployed, or already gone: nothing is waiting on it
            log.info("the gateway did not close its jobs: %s", exc)
        try:
            if self.started_cluster:
                serve.shutdown()
            else:
                serve.delete(APP_NAME)
        finally:
            if self.started_cluster:
                ray.shutdown()


LOCAL_CLUSTER_QUIET = ("RAY_enable_metrics_collection", "RAY_task_events_report_interval_ms")


def start(options: ServeOptions) -> Server:
    """Starts (or joins) Ray, deploys the application and returns once it answers."""
    check_options(options)
    ray, serve = _ray()
    os.environ["PYTHONPATH"] = _pythonpath()  # the local cluster's processes import this checkout
    started = False
    handlers = _signal_handlers()
    if options.address:
        ray.init(address=options.address, log_to_driver=False)
    else:
        cpus = max(os.cpu_count() or 1, options.replicas * (options.threads or 1))
        # A local cluster has no dashboard to show metrics or task events: collecting them only takes CPU
        # from the replicas (on two cores, 2 replicas / 1 went from about 1.56 to 1.67 without them).
        for key in LOCAL_CLUSTER_QUIET:
            os.environ.setdefault(key, "0")
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        started = True
    _restore(handlers)  # Ray's own SIGTERM handler would end the process without stopping anything
    server = Server(options, started)
    try:
        http = {"host": options.host, "port": options.port}
        if options.tls_cert:
            http.update(ssl_certfile=options.tls_cert, ssl_keyfile=options.tls_key)
        serve.start(http_options=http)
        serve.run(build_app(options), name=APP_NAME, route_prefix="/", blocking=False)
    except BaseException:
        server.stop()
        raise
    return server
