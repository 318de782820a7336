"""How torch's OpenMP worker threads wait between operations, set before torch is first imported.

``OMP_WAIT_POLICY=PASSIVE``: a waiting thread sleeps instead of spinning, so torch does not slow down badly
when another process (or our own GUI thread) wants the core. Alone that makes every one of the thousands of
small operations of a denoising step pay a thread wake-up: on two cores the embedded model's UNet step took
71 ms, no faster than on one thread. ``GOMP_SPINCOUNT`` (read by GNU OpenMP, which torch's Linux wheels use;
it overrides the policy's spin count of zero) lets a thread spin that long before it sleeps, well under a
millisecond: the step then takes 43 ms, and a thread that is not needed still sleeps almost at once.
Measured in ``bench/bench_live.py``; both are defaults, so the environment can override them.
"""
from __future__ import annotations

import os

OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "20000"}


def openmp_defaults(env=None) -> dict:
    """Sets the defaults in ``env`` (default: this process's environment) where they are unset; returns it."""
    env = os.environ if env is None else env
    for key, value in OPENMP_DEFAULTS.items():
        env.setdefault(key, value)
    return env
