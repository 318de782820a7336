"""How torch's OpenMP worker threads wait between operations, set before torch is first imported.

``OMP_WAIT_POLICY=PASSIVE``: a waiting thread sleeps instead of spinning, so torch does not slow down badly
when another process (or our own GUI thread) wants the core. It costs something on an otherwise idle
machine: every one of the thousands of small operations of a denoising step pays a thread wake-up, and on
two cores the embedded model's UNet step took 71–83 ms, no faster than on one thread. ``GOMP_SPINCOUNT``
(GNU OpenMP's, which torch's Linux wheels use; it overrides the policy's spin count of zero) lets a thread
spin that long before it sleeps: 20000 took the step to 41 ms and a live update from 302 to 157 ms on the
idle machine, but with another job on both cores the live update went from 281 to 1079 ms (1000: 373 ms,
5000: 644 ms), since a spinning thread then holds the core its partner needs. So the spin is not a default:
set ``GOMP_SPINCOUNT=20000`` in the environment on a machine that does nothing else (measured in
``bench/bench_live.py``). The default below can be overridden by the environment too.
"""
from __future__ import annotations

import os

OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def openmp_defaults(env=None) -> dict:
    """Sets the defaults in ``env`` (default: this process's environment) where they are unset; returns it."""
    env = os.environ if env is None else env
    for key, value in OPENMP_DEFAULTS.items():
        env.setdefault(key, value)
    return env
