"""Pieces shared by both training stages: progress, learning-rate schedule, device, checkpoints."""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrainConfig:
    """What both training stages take; each stage adds its own fields."""

    data_dir: Path
    work_dir: Path
    preset: str = "mini"
    minutes: float | None = None
    max_steps: int | None = None
    batch: int = 8
    lr: float = 2e-4
    warmup: int = 200
    device: str | None = None
    seed: int = 0
    resume: bool = True
    checkpoint_minutes: float = 5.0
    deadline: float | None = None  # absolute time.time() stop (GPU run)
    log_every: float = 10.0


class TrainingError(Exception):
    """A training problem whose text is presentable to the user as is."""


class Progress:
    """GUI-free progress: prints loss, steps/s and ETA at most every `every` seconds.

    The budget is wall time (minutes) and/or a step count, whichever comes first.
    """

    def __init__(self, name: str, minutes: float | None, max_steps: int | None, start_step: int = 0,
                 log=print, every: float = 10.0, deadline: float | None = None):
        if minutes is None and max_steps is None:
            raise TrainingError("give a budget: --minutes or --steps")
        self.name, self.log, self.every = name, log, every
        self.t0 = time.monotonic()
        self.end = self.t0 + minutes * 60 if minutes is not None else math.inf
        if deadline is not None:  # an absolute time.time() limit (the GPU run's wall clock)
            self.end = min(self.end, self.t0 + deadline - time.time())
        self.max_steps = max_steps
        self.start_step = start_step
        self.step = start_step
        self._last = self.t0
        self._smooth: dict[str, float] = {}

    def fraction(self) -> float:
        """How far through this run's budget we are, 0..1 (drives the lr schedule)."""
        f_time = (time.monotonic() - self.t0) / max(1e-9, self.end - self.t0) if self.end < math.inf else 0.0
        f_steps = (self.step - self.start_step) / self.max_steps if self.max_steps else 0.0
        return min(1.0, max(f_time, f_steps))

    def done(self) -> bool:
        if self.max_steps is not None and self.step - self.start_step >= self.max_steps:
            return True
        return time.monotonic() >= self.end

    def update(self, **losses: float) -> None:
        self.step += 1
        for k, v in losses.items():
            self._smooth[k] = v if k not in self._smooth else 0.95 * self._smooth[k] + 0.05 * v
        now = time.monotonic()
        if now - self._last >= self.every or self.done():
            self._last = now
            ran = self.step - self.start_step
            rate = ran / max(1e-9, now - self.t0)
            left = self.end - now if self.end < math.inf else math.inf
            if self.max_steps is not None:
                left = min(left, (self.max_steps - ran) / max(rate, 1e-9))
            parts = " ".join(f"{k} {v:.4f}" for k, v in self._smooth.items())
            self.log(f"[{self.name}] step {self.step} {parts} | {rate:.2f} steps/s | ETA {format_eta(left)}")

    def smoothed(self, key: str) -> float | None:
        return self._smooth.get(key)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.t0


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def lr_at(base: float, step_in_run: int, fraction: float, warmup: int, floor: float = 0.05) -> float:
    """Linear warmup, then cosine decay over the run's budget down to floor*base."""
    warm = min(1.0, (step_in_run + 1) / max(1, warmup))
    cos = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * fraction))
    return base * warm * cos


def pick_device(name: str | None = None):
    import torch

    if name:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise TrainingError("--device cuda given but no CUDA device is available")
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device):
    """bf16 autocast on CUDA, nothing on CPU."""
    import contextlib

    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def save_checkpoint(path: Path, **state) -> None:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path):
    import torch

    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def save_weights(path: Path, state: dict, dtype=None) -> None:
    """A state dict as safetensors (optionally cast, e.g. to fp16)."""
    from safetensors.torch import save_file

    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in state.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


def write_json(path: Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=1))


def append_log(path: Path | None, line: str) -> None:
    if path is not None:
        with open(path, "a") as f:
            f.write(line + "\n")
