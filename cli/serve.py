"""``main.py serve``: the engine as a Ray Serve service for the app, the CLI and other clients.

Stops on Ctrl-C or SIGTERM, taking down its application and the local Ray cluster it started.
"""
from __future__ import annotations

import signal
import sys
import time


def register(sub) -> None:
    from remote.protocol import DEFAULT_PORT, Limits

    p = sub.add_parser("serve", help="serve the engine to other machines (needs the cluster extra)",
                       description="Deploys the engine as a Ray Serve application: one engine per replica, "
                                   "jobs of several clients interleaved, each client's events streamed to it.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs --token-file)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--replicas", type=int, default=1, help="engines to run, one per GPU (or CPU) (default 1)")
    p.add_argument("--max-replicas", type=int, default=0,
                   help="autoscale up to this many engines while jobs wait (default: no autoscaling)")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster (e.g. ray://head:10001 or auto) instead of starting a local one")
    p.add_argument("--token-file", default=None,
                   help="file holding the token clients must send (Authorization: Bearer); whitespace ignored")
    p.add_argument("--device", default=None, help="cuda, mps or cpu for every engine (default: the best available)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per engine (CPU)")
    p.add_argument("--tls-cert", default=None, help="certificate file (PEM) to serve HTTPS")
    p.add_argument("--tls-key", default=None, help="its private key file (PEM)")
    limits = Limits()
    p.add_argument("--max-side", type=int, default=limits.max_side,
                   help=f"largest image side a request may have, px (default {limits.max_side})")
    p.add_argument("--max-pixels", type=int, default=limits.max_pixels,
                   help=f"most pixels one job may cover (default {limits.max_pixels})")
    p.add_argument("--max-steps", type=int, default=limits.max_steps,
                   help=f"most denoising steps a job may ask (default {limits.max_steps})")
    p.add_argument("--max-count", type=int, default=limits.max_count,
                   help=f"most variations a job may ask (default {limits.max_count})")
    p.set_defaults(func=_serve)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def options_from(args):
    from remote.protocol import Limits
    from remote.serve import ServeOptions, read_token

    token = read_token(args.token_file) if args.token_file else ""
    return ServeOptions(host=args.host, port=args.port, replicas=args.replicas, max_replicas=args.max_replicas,
                        address=args.address, token=token, device=args.device, threads=args.threads,
                        tls_cert=args.tls_cert, tls_key=args.tls_key,
                        limits=Limits(args.max_side, args.max_pixels, args.max_steps, args.max_count))


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
