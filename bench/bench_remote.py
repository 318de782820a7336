"""Serving benchmarks (issue 17): the engine behind Ray Serve on a local cluster, over loopback.

    python bench/bench_remote.py            # tiny model, CPU, two replicas of one torch thread (a few minutes)
    python bench/bench_remote.py --full     # SD 1.5-size random weights at 512² (slow on CPU)
    python bench/bench_remote.py --embedded # the embedded model at 256² (compute-bound, unlike the tiny model)

Needs the cluster extra (make setup-cluster). Figures, measured side by side in one run:
  per-job time remote / in-process (same request, one torch thread each)    goal <= 1.10 (SD 1.5 size, 512²)
  preview latency, engine emits -> client reads (median, ms)                 goal <= 20
  throughput, 2 replicas / 1 replica, two clients' jobs                      goal >= 1.7 (two devices)
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common  # noqa: F401  (sets up paths and the environment)
from _common import full_size_folder, report


class Waiter:
    def __init__(self):
        self.done = {}
        self.cond = threading.Condition()

    def __call__(self, event):
        if type(event).__name__ in ("Result", "Failed", "Cancelled"):
            with self.cond:
                self.done[event.job_id] = event
                self.cond.notify_all()

    def wait(self, job, timeout=1800):
        with self.cond:
            assert self.cond.wait_for(lambda: job in self.done, timeout), f"job {job} did not end"
            event = self.done[job]
        if type(event).__name__ != "Result":
            raise RuntimeError(getattr(event, "message", "cancelled"))
        return event


def request(size: int, steps: int, seed: int = 0, guidance: float = 7.5):
    from backend import InpaintRequest
    from scenes import make_scene

    img, mask = make_scene(size, size)
    return InpaintRequest(image=img, mask=mask, model="bench-model", steps=steps, seed=seed, padding=0,
                          fill="original", strength=1.0, guidance=guidance)


def job_time(engine, waiter, req, repeat: int) -> float:
    waiter.wait(engine.submit(req))  # warm: model loaded
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        waiter.wait(engine.submit(req))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of every process on this machine, by pid and name (Linux /proc; {} elsewhere)."""
    tick, found = os.sysconf("SC_CLK_TCK"), {}
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        if name.startswith("ray::") or not cmdline[0]:
            title = cmdline[0].decode(errors="replace") or name  # Ray actors set their process title
        else:
            args = [a.decode(errors="replace") for a in cmdline[:2] if a]
            title = " ".join([Path(args[0]).name] + [Path(a).name for a in args[1:] if not a.startswith("-")])
        fields = stat[stat.rindex(")") + 2:].split()
        found[f"{pid} {title}"] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return found


def print_cpu_shares(before: dict, after: dict, wall: float, top: int = 10) -> None:
    used = sorted(((after[k] - before.get(k, 0.0), k) for k in after), reverse=True)[:top]
    print("  where the CPU went (% of one core over the timed run):")
    for seconds, key in used:
        if seconds > 0:
            print(f"    {100 * seconds / wall:6.1f} %  {key[:80]}")


def throughput(url: str, token: str, req, jobs_per_client: int, cpu: bool = False) -> float:
    """Jobs per second, two clients each submitting ``jobs_per_client`` jobs at once (after one warm-up job each);
    with ``cpu``, also prints which processes used the CPU meanwhile."""
    from remote.client import RemoteEngine

    waiters = [Waiter(), Waiter()]
    clients = [RemoteEngine(w, url, token) for w in waiters]
    try:
        # one job per client at once, so every replica has loaded the model before the timing (one after
        # another, both would go to the replica that already has it, and the other would load it in the timing)
        for w, job in [(w, c.submit(req)) for c, w in zip(clients, waiters)]:
            w.wait(job)
        before = cpu_seconds() if cpu else {}
        t = time.perf_counter()
        jobs = [(w, c.submit(req.replace(seed=i))) for i in range(jobs_per_client) for c, w in zip(clients, waiters)]
        for w, job in jobs:
            w.wait(job)
        wall = time.perf_counter() - t
        if cpu:
            print_cpu_shares(before, cpu_seconds(), wall)
        return len(jobs) / wall
    finally:
        for c in clients:
            c.shutdown()


def plain_child(args) -> int:
    """One engine process without Ray: the embedded model, one torch thread, a warm-up job, then four timed
    jobs; prints the seconds a job."""
    import queue

    import torch

    from _common import run_job
    from backend.engine import Engine

    torch.set_num_threads(1)
    events = queue.Queue()
    engine = Engine(events.put, threads=1, preview_interval=args.preview_interval)
    req = request(256, args.steps or 10, guidance=args.guidance).replace(model="")
    try:
        run_job(engine, events, req)
        t = time.perf_counter()
        for _ in range(4):
            run_job(engine, events, req)
        print(f"PER_JOB {(time.perf_counter() - t) / 4:.3f}", flush=True)
    finally:
        engine.shutdown()
    return 0


def plain_scaling(args) -> None:
    """What this machine's cores give two engines without Ray: one plain engine process alone, then two at once
    (the embedded model, one torch thread each): the ceiling for the throughput figure here."""
    import subprocess

    cmd = [sys.executable, __file__, "--plain-child", "--guidance", str(args.guidance),
           "--preview-interval", str(args.preview_interval)] + (["--steps", str(args.steps)] if args.steps else [])

    def per_job(outputs) -> list[float]:
        return [float(line.split()[1]) for out in outputs for line in out.splitlines() if line.startswith("PER_JOB")]

    alone = per_job([subprocess.run(cmd, capture_output=True, text=True).stdout])
    both = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    together = per_job([p.communicate()[0] for p in both])
    if len(alone) != 1 or len(together) != 2:
        print("plain engine processes: a child failed")
        return
    report("two plain engine processes at once / one alone (jobs per second)", 2 * alone[0] / max(together),
           "none: the cores' ceiling here")
    print(f"  ({alone[0]:.2f} s a job alone; {together[0]:.2f} and {together[1]:.2f} s side by side)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="SD 1.5-size random weights at 512²")
    parser.add_argument("--embedded", action="store_true", help="the embedded model at 256²")
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--guidance", type=float, default=7.5, help="1 skips the unconditioned pass")
    parser.add_argument("--repeat", type=int, default=3, help="timed jobs per side (after one warm-up job)")
    parser.add_argument("--jobs", type=int, default=4, help="jobs per client in the throughput runs")
    parser.add_argument("--no-throughput", action="store_true", help="only the per-job and preview figures")
    parser.add_argument("--plain", action="store_true",
                        help="also: two plain engine processes (no Ray) at once against one, the cores' ceiling")
    parser.add_argument("--plain-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--nice-clients", type=int, default=0, metavar="N",
                        help="run this process (the two clients) at nice N during the throughput runs, as if the "
                             "clients ran on other machines")
    parser.add_argument("--preview-interval", type=float, default=0.0,
                        help="seconds between previews (0: every step; the app and `serve` use 0.1)")
    args = parser.parse_args()
    if args.plain_child:
        return plain_child(args)
    try:
        from ray import serve
    except ModuleNotFoundError:
        print("bench_remote needs the cluster extra: run `make setup-cluster`.")
        return 0
    import torch

    from backend.engine import Engine
    from remote.client import RemoteEngine
    from remote.protocol import Limits
    from remote.serve import APP_NAME, ServeOptions, build_app, start

    size, steps = (512, args.steps or 10) if args.full else (256, args.steps or 10) if args.embedded else (
        128, args.steps or 10)
    root = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    models = root / "models"
    models.mkdir()
    if args.full:
        full_size_folder(models / "bench-model")
    elif args.embedded:
        from backend.models import resolve

        (models / "bench-model").symlink_to(resolve("").path, target_is_directory=True)
    else:
        import tiny_models

        tiny_models.save_diffusers_folder(models / "bench-model", "sd15", 9, seed=0)
    os.sync()  # the kernel writes a new model folder back to disk in the timing otherwise (a core for seconds)
    os.environ["LATENT_STUDIO_MODELS"] = str(models)
    req = request(size, steps, guidance=args.guidance)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "bench"
    options = ServeOptions(port=port, replicas=2, threads=1, token=token, preview_interval=args.preview_interval,
                           limits=Limits(max_side=1024, max_pixels=1024 * 1024))
    t = time.perf_counter()
    server = start(options)
    what = "SD 1.5 size" if args.full else "embedded model" if args.embedded else "tiny model"
    print(f"server up in {time.perf_counter() - t:.1f} s ({size}² inpaint, {steps} steps, guidance "
          f"{args.guidance:g}, {what}, one torch thread per engine; load {os.getloadavg()[0]:.1f})")
    try:
        torch.set_num_threads(1)
        waiter = Waiter()
        local = Engine(waiter, threads=1, preview_interval=args.preview_interval)
        try:
            local_time = job_time(local, waiter, req, args.repeat)
        finally:
            local.shutdown()
        waiter = Waiter()
        remote = RemoteEngine(waiter, server.url, token)
        try:
            remote_time = job_time(remote, waiter, req, args.repeat)
            previews = [s for kind, s in remote.latencies if kind == "Preview"]
        finally:
            remote.shutdown()
        report("per-job time remote / in-process", remote_time / local_time, "<= 1.10 (SD 1.5 size, 512²)")
        print(f"  (in-process {local_time * 1000:.0f} ms, remote {remote_time * 1000:.0f} ms)")
        report("preview latency engine -> client, median", statistics.median(previews) * 1000, "<= 20", " ms")
        if args.no_throughput:
            return 0
        if args.nice_clients:
            os.nice(args.nice_clients)  # painters' clients run on their own machines, not on the server's cores
        two = throughput(server.url, token, req, args.jobs, cpu=True)
        serve.run(build_app(ServeOptions(**{**options.__dict__, "replicas": 1})), name=APP_NAME, route_prefix="/",
                  blocking=False)
        one = throughput(server.url, token, req, args.jobs, cpu=True)
        report("throughput 2 replicas / 1 replica, two clients", two / one, ">= 1.7 (two devices)")
        print(f"  ({two:.2f} and {one:.2f} jobs/s; here both replicas share {os.cpu_count()} CPU cores)")
        if args.plain:
            plain_scaling(args)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
