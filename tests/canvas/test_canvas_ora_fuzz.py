"""Fuzz the .ora reader with a few thousand mutated files: only FileFormatError may escape."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))

from fuzz_ora import check, mutants, seed_files  # noqa: E402


def test_seed_files_load():
    for data in seed_files():
        assert check(data) is None


@pytest.mark.slow  # several seconds: `make test` runs it, `make test-fast` does not
def test_mutated_files_raise_only_our_error():
    failures = []
    for i, data in enumerate(mutants(3000, seed=20240611)):
        exc = check(data)
        if exc is not None:
            failures.append(f"case {i}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures[:10])
