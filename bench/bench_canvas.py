"""Canvas benchmarks (issue 4).  Run: .venv/bin/python bench/bench_canvas.py

Prints each figure with its goal and the ratio figure/goal (<= 1 meets the goal).
1. redraw after one 256² brush dab on a 10-layer 8192² document (goal <= 5 ms)
2. memory of a 16384² document with one 1024² painted area (goal <= 20 MB)
3. save + load of a 10-layer 4096² document (seconds and MB; no goal)
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from canvas.brush import BrushSettings  # noqa: E402
from canvas.document import Document  # noqa: E402
from canvas.geometry import Rect  # noqa: E402
from canvas.ora import load_ora, save_ora  # noqa: E402


def report(name: str, value: float, unit: str, goal: float | None = None) -> None:
    if goal is None:
        print(f"{name}: {value:.3f} {unit}")
    else:
        print(f"{name}: {value:.3f} {unit} (goal <= {goal:g} {unit}, ratio {value / goal:.2f})")


def layered_document(side: int, n_layers: int, painted: int, seed: int = 0) -> Document:
    """n layers; each holds a `painted`² block of semi-transparent noise at a different place."""
    rng = np.random.default_rng(seed)
    doc = Document(side, side)
    block = rng.integers(0, 256, (painted, painted, 4), dtype=np.uint8)
    for i in range(n_layers):
        x = (i * painted // 3) % (side - painted)
        doc.add_image_layer(block, x, x, f"layer {i}")
        doc.history.clear()
    return doc


def bench_redraw() -> None:
    side = 8192
    doc = Document(side, side)
    rng = np.random.default_rng(1)
    block = rng.integers(0, 256, (2048, 2048, 4), dtype=np.uint8)
    block[..., 3] = rng.integers(64, 256, (2048, 2048), dtype=np.uint8)
    for i in range(10):  # 10 layers, all with content under the painted area
        doc.add_image_layer(block, 3000 + 16 * i, 3000 + 16 * i, f"layer {i}")
    doc.set_layer_properties(doc.layers[8], blend_mode="multiply")
    doc.history.clear()
    view = Rect(3000, 3000, 1920, 1080)  # a full-HD view over the painted area
    doc.render(view)
    layer = doc.layers[5]
    brush = BrushSettings(size=256, hardness=0.7, opacity=0.8, flow=0.6)
    stroke = doc.begin_stroke(brush, layer, (200, 30, 30))
    cold = []
    t = time.perf_counter()
    stroke.dab(3500, 3400)
    t_dab = time.perf_counter()
    doc.render(view)
    cold.append((t_dab - t, time.perf_counter() - t_dab))
    paint, redraw = [], []
    for i in range(100):
        x, y = 3500 + (i % 10) * 60, 3400 + (i // 10) * 50
        t0 = time.perf_counter()
        rect = stroke.stroke_to(x, y)  # spacing may give 0..n dabs; force one dab:
        if rect is None:
            rect = stroke.dab(x, y)
        t1 = time.perf_counter()
        doc.render(rect)  # what the view recomputes: only the dirty area
        t2 = time.perf_counter()
        paint.append(t1 - t0)
        redraw.append(t2 - t1)
    stroke.end()
    report("redraw after one 256² dab, 10-layer 8192² doc (median of 100)",
           statistics.median(redraw) * 1000, "ms", 5)
    report("  same, best of 100 (an idle machine)", min(redraw) * 1000, "ms", 5)
    report("  brush dab itself (median)", statistics.median(paint) * 1000, "ms")
    report("  first dab on a newly focused layer: redraw", cold[0][1] * 1000, "ms")
    report("  full 1920x1080 view from scratch", _time(lambda: (doc.cache.invalidate(None), doc.render(view))) * 1000, "ms")


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_memory() -> None:
    tracemalloc.start()
    doc = Document(16384, 16384)
    layer = doc.add_layer()
    empty = tracemalloc.get_traced_memory()[0]
    doc.add_image_layer(np.full((1024, 1024, 4), 200, np.uint8), 8000, 8000, "painted")
    s = doc.begin_stroke(BrushSettings(size=64), layer, (0, 0, 0))
    s.stroke_to(8100, 8100)
    s.stroke_to(8600, 8500)
    s.end()
    doc.render(Rect(7680, 7680, 1920, 1080))
    current = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    report("memory of an empty 16384² document", empty / 1e6, "MB")
    report("memory of a 16384² document with one 1024² painted area (+ a stroke, undo, view cache)",
           current / 1e6, "MB", 20)


def smooth_document(side: int, n_layers: int) -> Document:
    """n full-size layers of painting-like content: gradients and soft discs, partly transparent."""
    doc = Document(side, side)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    for i in range(n_layers):
        rgba = np.empty((side, side, 4), np.uint8)
        rgba[..., 0] = (xx * 255 * (i + 1) / n_layers).astype(np.uint8)
        rgba[..., 1] = (yy * 255).astype(np.uint8)
        rgba[..., 2] = ((xx + yy) * 127).astype(np.uint8)
        cx, cy = 0.2 + 0.06 * i, 0.3 + 0.04 * i
        d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        rgba[..., 3] = np.clip((0.45 - d) * 1000, 0, 255).astype(np.uint8) if i else 255
        doc.add_image_layer(rgba, 0, 0, f"layer {i}")
        doc.history.clear()
    return doc


def _save_load(doc: Document, label: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.ora")
        t0 = time.perf_counter()
        save_ora(doc, path)
        t1 = time.perf_counter()
        loaded = load_ora(path)
        t2 = time.perf_counter()
        size = os.path.getsize(path)
    assert len(loaded.layers) == len(doc.layers)
    print(f"save + load of a 10-layer 4096² document, {label}: save {t1 - t0:.2f} s, "
          f"load {t2 - t1:.2f} s, file {size / 1e6:.1f} MB, pixels held {doc.nbytes / 1e6:.0f} MB")


def bench_save_load() -> None:
    _save_load(smooth_document(4096, 10), "full-size painting-like layers")
    _save_load(layered_document(4096, 10, 2048), "2048² of random noise per layer (worst case for PNG)")


if __name__ == "__main__":
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
          "(timings are noisy when the machine is busy)")
    t = time.perf_counter()
    bench_redraw()
    bench_memory()
    bench_save_load()
    print(f"(total {time.perf_counter() - t:.1f} s)")
