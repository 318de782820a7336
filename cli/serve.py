"""``main.py serve``: the engine as a Ray Serve service for the app, the CLI and other clients.

Stops on Ctrl-C or SIGTERM, taking down its application and the local Ray cluster it started.
"""
from __future__ import annotations

import signal
import sys
import time

from .contract import fail as _fail


# Every setting of `serve`, its flag's default, and its type: a --config file may set any of them
# (flags given on the command line win).
def _defaults() -> dict:
    from remote.protocol import DEFAULT_PORT, Limits

    limits = Limits()
    return {"host": "127.0.0.1", "port": DEFAULT_PORT, "replicas": 1, "max_replicas": 0, "address": None,
            "token_file": None, "device": None, "threads": None, "tls_cert": None, "tls_key": None,
            "max_side": limits.max_side, "max_pixels": limits.max_pixels, "max_steps": limits.max_steps,
            "max_count": limits.max_count}


_INTEGERS = {"port", "replicas", "max_replicas", "threads", "max_side", "max_pixels", "max_steps", "max_count"}


def register(sub) -> None:
    d = _defaults()
    p = sub.add_parser("serve", help="serve the engine to other machines (needs the cluster extra)",
                       description="Deploys the engine as a Ray Serve application: one engine per replica, "
                                   "jobs of several clients interleaved, each client's events streamed to it.")
    p.add_argument("--config", default=None,
                   help="a TOML file setting any of the options below by their long names (max_replicas = 4); "
                        "options given here win")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; any other needs --token-file)")
    p.add_argument("--port", type=int, help=f"port (default {d['port']})")
    p.add_argument("--replicas", type=int, help="engines to run, one per GPU (or CPU) (default 1)")
    p.add_argument("--max-replicas", type=int,
                   help="autoscale up to this many engines while jobs wait (default: no autoscaling)")
    p.add_argument("--address",
                   help="join this Ray cluster (e.g. ray://head:10001 or auto) instead of starting a local one")
    p.add_argument("--token-file",
                   help="file holding the token clients must send (Authorization: Bearer); whitespace ignored")
    p.add_argument("--device", help="cuda, mps or cpu for every engine (default: the best available)")
    p.add_argument("--threads", type=int, help="torch threads per engine (CPU)")
    p.add_argument("--tls-cert", help="certificate file (PEM) to serve HTTPS")
    p.add_argument("--tls-key", help="its private key file (PEM)")
    p.add_argument("--max-side", type=int,
                   help=f"largest image side a request may have, px (default {d['max_side']})")
    p.add_argument("--max-pixels", type=int, help=f"most pixels one job may cover (default {d['max_pixels']})")
    p.add_argument("--max-steps", type=int, help=f"most denoising steps a job may ask (default {d['max_steps']})")
    p.add_argument("--max-count", type=int, help=f"most variations a job may ask (default {d['max_count']})")
    p.set_defaults(func=_serve)


def read_config(path: str) -> dict:
    """The settings of a ``--config`` TOML file; ServeError (one sentence) for anything else."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the cluster extra installs tomli
        import tomli as tomllib

    from remote.serve import ServeError

    known = _defaults()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ServeError(f"The config file {path} cannot be read ({exc.strerror or exc}): check its name.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ServeError(f"The config file {path} is not valid TOML ({exc}): fix it.") from None
    data = {key.replace("-", "_"): value for key, value in data.items()}
    for key, value in data.items():
        if key not in known:
            raise ServeError(f"The config file {path} sets `{key}`, which `serve` does not have: use one of "
                             f"{', '.join(sorted(known))}.")
        want = int if key in _INTEGERS else str
        if isinstance(value, bool) or not isinstance(value, want):
            raise ServeError(f"The config file {path} sets `{key}` to {value!r}: give "
                             f"{'a whole number' if want is int else 'a string'}.")
    return data


def options_from(args):
    from remote.protocol import Limits
    from remote.serve import ServeError, ServeOptions, read_token

    settings = _defaults()
    if getattr(args, "config", None):
        settings.update(read_config(args.config))
    settings.update({key: value for key in settings if (value := getattr(args, key, None)) is not None})
    for key in ("port", "replicas", "max_side", "max_pixels", "max_steps", "max_count"):
        if settings[key] < 1:
            raise ServeError(f"`{key}` is {settings[key]}: give a whole number of at least 1.")
    token = read_token(settings["token_file"]) if settings["token_file"] else ""
    return ServeOptions(host=settings["host"], port=settings["port"], replicas=settings["replicas"],
                        max_replicas=settings["max_replicas"], address=settings["address"], token=token,
                        device=settings["device"], threads=settings["threads"], tls_cert=settings["tls_cert"],
                        tls_key=settings["tls_key"],
                        limits=Limits(settings["max_side"], settings["max_pixels"], settings["max_steps"],
                                      settings["max_count"]))


def _serve(args) -> int:
    from remote.serve import ServeError, check_options, start

    try:
        options = options_from(args)
        check_options(options)
    except ServeError as exc:
        return _fail(str(exc))

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    server = None
    try:
        print("Starting Ray and the engines (this takes a while)…", file=sys.stderr, flush=True)
        server = start(options)
        print(f"Serving Latent Studio on {server.url} with {options.replicas} engine(s); Ctrl-C stops.",
              flush=True)
        while True:
            time.sleep(1.0)
    except ServeError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("Stopping…", file=sys.stderr, flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if server is not None:
                server.stop()
        except KeyboardInterrupt:
            pass
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
