"""Fuzz every file reader with hostile files, under a memory limit, and count what happens.

    .venv/bin/python tools/fuzz_files.py [COUNT] [SEED] [--scale N] [--mem-gb 1.5] [--hang-s 10]
                                         [--targets canvas,cli] [--only NAME]

The cases: every crafted hostile file of tools/hostile_files.py (zip bombs, lying
zip directories, bz2/lzma members, huge declared sizes, many references to one
PNG, XML entity tricks, path traversal, PNG/JPEG/WebP header lies), then COUNT
mutants of small valid files (.ora from tools/fuzz_ora.py; PNG in every mode,
interlaced or not; JPEG; WebP), mutated byte-wise and, for PNGs, chunk-wise with
fixed checksums and lying headers.

Each file goes through the document loader (``canvas.image_io.load_image``) and
through the CLI's read path (``cli.imagefiles``: check_sizes, read_document,
flatten, read_mask, read_parameters), in a worker process whose address space is
capped with ``RLIMIT_AS`` (1.5 GB).  Outcomes: loaded, a clean error
(FileFormatError/DocumentError; ImageFileError for the CLI), a crash-class
exception (anything else, MemoryError included), a hang (no answer within
``--hang-s`` seconds: the worker is killed) or a dead worker.  The report gives
the counts, the peak RSS of the worst case and the slowest cases; crashing and
hanging files are saved to /tmp/files-fuzz-*.
"""
from __future__ import annotations

import argparse
import gc
import io
import json
import os
import random
import select
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import hostile_files as hf  # noqa: E402

TARGETS = ("canvas", "cli")


# ============================================================================== the cases
def seed_images() -> list[tuple[str, bytes]]:
    """Small valid PNG (every mode, plain and interlaced), JPEG and WebP files."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:37, :53]
    rgba = np.dstack([xx * 4, yy * 6, (xx + yy) * 2, 255 - xx * 3]).astype(np.uint8)
    rgba[10:20] = rng.integers(0, 256, (10, 53, 4), dtype=np.uint8)
    grey = rgba[..., 0].copy()
    images = {
        "RGBA": Image.fromarray(rgba, "RGBA"), "RGB": Image.fromarray(rgba[..., :3].copy()),
        "L": Image.fromarray(grey, "L"), "LA": Image.fromarray(rgba[..., ::3].copy(), "LA"),
        "P": Image.fromarray(rgba[..., :3].copy()).quantize(16), "1": Image.fromarray(grey > 100),
        "I;16": Image.fromarray(grey.astype(np.uint16) * 257),
    }
    out = []
    for name, im in images.items():
        for interlace in (0, 1):
            buf = io.BytesIO()
            im.save(buf, "PNG", interlace=interlace, **({"transparency": 3} if name == "P" else {}))
            out.append((".png", buf.getvalue()))
    out.append((".png", hf.png_rows(20, 9, bytes([2]) + bytes(range(160)), depth=16)))  # 16-bit RGBA
    for fmt, ext, im, kw in (("JPEG", ".jpg", images["RGB"], {}), ("JPEG", ".jpg", images["L"], {}),
                             ("JPEG", ".jpg", images["RGB"].convert("CMYK"), {}),
                             ("WEBP", ".webp", images["RGBA"], {"lossless": True}),
                             ("WEBP", ".webp", images["RGB"], {"quality": 50})):
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out.append((ext, buf.getvalue()))
    return out


def _png_chunks(data: bytes) -> list[list]:
    chunks, i = [], 8
    while i + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[i:i + 8])
        chunks.append([kind, data[i + 8:i + 8 + n]])
        i += 12 + n
    return chunks


def mutate_png(data: bytes, rnd: random.Random) -> bytes:
    """Chunk-level damage with valid checksums: lying sizes, depths and colour types, lost or
    repeated chunks, damaged image data."""
    chunks = _png_chunks(data)
    if not chunks:
        return data
    kind = rnd.randrange(6)
    if kind == 0 and chunks[0][0] == b"IHDR":  # a lying size
        w, h = struct.unpack(">II", chunks[0][1][:8])
        w = rnd.choice([w + 1, w * 2, 1, 16384, 65535, 100_000, 1 << 30, w * 1000])
        h = rnd.choice([h - 1, h * 3, 1, 16384, 65535, 100_000, 1 << 30])
        chunks[0][1] = struct.pack(">II", max(w, 1), max(h, 1)) + chunks[0][1][8:]
    elif kind == 1 and chunks[0][0] == b"IHDR":  # another depth, colour type or interlace
        b = bytearray(chunks[0][1])
        b[rnd.choice([8, 9, 12])] = rnd.choice([0, 1, 2, 3, 4, 6, 8, 16, 255])
        chunks[0][1] = bytes(b)
    elif kind == 2 and len(chunks) > 2:
        chunks.pop(rnd.randrange(1, len(chunks) - 1))
    elif kind == 3:
        i = rnd.randrange(len(chunks))
        chunks.insert(i, list(chunks[i]))
    elif kind == 4:  # damaged image data that still inflates
        for c in chunks:
            if c[0] == b"IDAT":
                try:
                    raw = bytearray(zlib.decompress(c[1]))
                except zlib.error:
                    break
                for _ in range(rnd.randint(1, 6)):
                    if raw:
                        raw[rnd.randrange(len(raw))] = rnd.randrange(256)
                c[1] = zlib.compress(bytes(raw))
                break
    else:
        c = rnd.choice(chunks)
        c[1] = hf_mutate(c[1], rnd)
    return hf.PNG_SIG + b"".join(hf.chunk(k, v) for k, v in chunks)


def hf_mutate(data: bytes, rnd: random.Random) -> bytes:
    from fuzz_ora import mutate_bytes

    return mutate_bytes(data, rnd)


def mutant(seed: int, i: int) -> tuple[str, bytes]:
    """Mutant number i of a run: an .ora (fuzz_ora's mutants) or a PNG/JPEG/WebP."""
    import fuzz_ora

    rnd = random.Random(seed * 1_000_003 + i)
    if rnd.random() < 0.5:
        base = rnd.choice(_ora_seeds())
        data = fuzz_ora.mutate_members(base, rnd) if rnd.random() < 0.6 else fuzz_ora.mutate_bytes(base, rnd)
        return ".ora", data
    ext, data = rnd.choice(_image_seeds())
    if ext == ".png" and rnd.random() < 0.6:
        return ext, mutate_png(data, rnd)
    if ext == ".jpg" and rnd.random() < 0.3:
        return ext, hf.jpeg_with_size(rnd.choice([1, 17, 4000, 16384, 40000, 65535]), rnd.choice([1, 9, 16384, 65535]))
    return ext, hf_mutate(data, rnd)


_SEEDS: dict = {}


def _ora_seeds():
    if "ora" not in _SEEDS:
        import fuzz_ora
        _SEEDS["ora"] = fuzz_ora.seed_files()
    return _SEEDS["ora"]


def _image_seeds():
    if "img" not in _SEEDS:
        _SEEDS["img"] = seed_images()
    return _SEEDS["img"]


def case(name: str, seed: int, scale: int) -> tuple[str, bytes]:
    if name.startswith("mutant "):
        return mutant(seed, int(name.split()[1]))
    ext, build = hf.crafted(scale)[name]
    return ext, build()


# ============================================================================== one file, in the worker
def run_target(target: str, path: str) -> tuple[str, str]:
    """(outcome, detail): outcome in loaded / clean / crash."""
    from canvas.errors import DocumentError

    try:
        if target == "canvas":
            from canvas.image_io import load_image

            doc = load_image(path)
            detail = f"{doc.width}x{doc.height}, {len(doc.layers)} layers"
            del doc
        else:
            from backend.errors import BackendError
            from cli.imagefiles import check_sizes, flatten, read_document, read_mask, read_parameters

            try:
                size = check_sizes(path, path)
                image = flatten(read_document(path), path)
                mask = read_mask(path, size)
                read_parameters(path)
                detail = f"{image.shape[1]}x{image.shape[0]}, mask {mask.mean():.0f}"
                del image, mask
            except BackendError as exc:
                return "clean", str(exc)
        return "loaded", detail
    except DocumentError as exc:
        return "clean", str(exc)
    except BaseException as exc:  # noqa: BLE001 - this is what we hunt
        return "crash", "".join(traceback.format_exception(exc, limit=4))[-1500:]


def _trim() -> None:
    """Give freed heap memory back to the system, so each case's peak starts from a clean base."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> None:
    import resource

    limit = int(args.mem_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    names = json.loads(sys.stdin.readline())
    folder = tempfile.mkdtemp(prefix="files-fuzz-")
    import canvas.image_io  # noqa: F401 - imported before the first case is timed
    import cli.imagefiles  # noqa: F401

    for index, name in names:
        try:
            ext, data = case(name, args.seed, args.scale)
        except Exception as exc:  # noqa: BLE001 - a broken builder is reported, not fatal
            print(json.dumps({"i": index, "phase": "done", "target": "-", "outcome": "build-error",
                              "detail": repr(exc), "secs": 0, "peak_mb": 0, "size": 0}), flush=True)
            continue
        path = os.path.join(folder, f"case{ext}")
        with open(path, "wb") as f:
            f.write(data)
        for target in args.targets:
            gc.collect()
            _trim()
            _reset_peak()
            print(json.dumps({"i": index, "phase": "start", "target": target}), flush=True)
            t = time.perf_counter()
            outcome, detail = run_target(target, path)
            secs = time.perf_counter() - t
            gc.collect()
            print(json.dumps({"i": index, "phase": "done", "target": target, "outcome": outcome,
                              "detail": detail[:400], "secs": round(secs, 3), "peak_mb": round(_peak_mb(), 1),
                              "size": len(data)}), flush=True)
        os.unlink(path)


# ============================================================================== the parent
def run(names: list[str], seed: int, scale: int = 1, mem_gb: float = 1.5, hang_s: float = 10,
        targets=TARGETS, log=None) -> dict:
    """Run the named cases in workers; return the summary (see :func:`report`)."""
    results: list[dict] = []
    todo = list(enumerate(names))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tools")]),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    while todo:
        cmd = [sys.executable, os.path.abspath(__file__), "0", str(seed), "--worker", "--scale", str(scale),
               "--mem-gb", str(mem_gb), "--targets", ",".join(targets)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=ROOT, text=True)
        proc.stdin.write(json.dumps(todo) + "\n")
        proc.stdin.flush()
        current = None
        started = None
        while True:
            wait = None if current is None else max(0.0, hang_s - (time.monotonic() - started))
            ready, _, _ = select.select([proc.stdout], [], [], wait)
            if not ready:  # a hang: kill the worker, count it, go on after it
                proc.kill()
                proc.wait()
                results.append({**current, "outcome": "hang", "detail": f"no answer in {hang_s:g} s",
                                "secs": hang_s, "peak_mb": 0, "size": 0})
                break
            line = proc.stdout.readline()
            if not line:  # the worker died (or ended)
                proc.wait()
                if current is None and todo and not any(r["i"] >= todo[0][0] for r in results):
                    i, name = todo[0]  # it died before its first case: never loop on it
                    current, started = {"i": i, "target": "-", "name": name}, time.monotonic()
                if current is not None:
                    err = proc.stderr.read()[-600:]
                    results.append({**current, "outcome": "died", "secs": time.monotonic() - started,
                                    "detail": f"exit status {proc.returncode} {err}", "peak_mb": 0, "size": 0})
                break
            msg = json.loads(line)
            if msg["phase"] == "start":
                current, started = {"i": msg["i"], "target": msg["target"], "name": names[msg["i"]]}, time.monotonic()
            else:
                msg["name"] = names[msg["i"]]
                results.append(msg)
                current = None
                if log is not None:
                    log(msg)
        last = max((r["i"] for r in results), default=-1)
        todo = [(i, n) for i, n in todo if i > last]
    return report(results, seed, scale)


def report(results: list[dict], seed: int, scale: int) -> dict:
    counts: dict[str, int] = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    worst = max(results, key=lambda r: r.get("peak_mb", 0), default=None)
    slow = sorted(results, key=lambda r: -r.get("secs", 0))[:5]
    bad = [r for r in results if r["outcome"] in ("crash", "hang", "died", "build-error")]
    for r in bad:
        try:
            ext, data = case(r["name"], seed, scale)
            path = f"/tmp/files-fuzz-{seed}-{r['i']}{ext}"
            with open(path, "wb") as f:
                f.write(data)
            r["saved"] = path
        except Exception:  # noqa: BLE001
            pass
    return {"files": len({r["i"] for r in results}), "runs": len(results), "counts": counts,
            "peak_mb": worst["peak_mb"] if worst else 0, "peak_case": worst and (worst["name"], worst["target"]),
            "slowest": [(r["name"], r["target"], r["secs"]) for r in slow], "bad": bad, "results": results}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("count", nargs="?", type=int, default=2000, help="mutants (the crafted cases come first)")
    p.add_argument("seed", nargs="?", type=int, default=None)
    p.add_argument("--scale", type=int, default=48, help="bomb size: 64 MiB × scale")
    p.add_argument("--mem-gb", type=float, default=1.5)
    p.add_argument("--hang-s", type=float, default=10)
    p.add_argument("--targets", default="canvas,cli")
    p.add_argument("--only", default=None, help="run only the crafted cases whose name contains this")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--json", default=None, help="write every result here")
    args = p.parse_args()
    args.targets = tuple(args.targets.split(","))
    args.seed = int(time.time()) if args.seed is None else args.seed
    if args.worker:
        worker(args)
        return 0
    crafted = [n for n in hf.crafted(args.scale) if args.only is None or args.only in n]
    names = crafted + ([f"mutant {i}" for i in range(args.count)] if args.only is None else [])
    t = time.perf_counter()

    def log(msg):
        if msg["i"] < len(crafted) or msg["outcome"] not in ("clean", "loaded"):
            print(f"{msg['name'][:44]:44} {msg['target']:6} {msg['outcome']:7} {msg['secs']:7.2f} s "
                  f"{msg['peak_mb']:7.0f} MB  {msg['detail'][:110]!r}", flush=True)

    summary = run(names, args.seed, args.scale, args.mem_gb, args.hang_s, args.targets, log)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    print(f"\n{summary['files']} files ({len(crafted)} crafted, seed {args.seed}), {summary['runs']} reads "
          f"through {', '.join(args.targets)} in {time.perf_counter() - t:.0f} s under RLIMIT_AS {args.mem_gb} GB: "
          f"{summary['counts']}; peak RSS {summary['peak_mb']:.0f} MB ({summary['peak_case']}); slowest "
          f"{summary['slowest'][:3]}")
    for r in summary["bad"]:
        print(f"  {r['outcome']}: {r['name']} ({r['target']}) {r.get('saved', '')}\n    {r['detail'][-600:]}")
    return 1 if summary["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
