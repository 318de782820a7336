"""Hostile and mutated files through the document loader and the CLI's read path, in a worker
process limited to 1.5 GB of address space: only clean errors, no crash, no hang.

The quick version of ``tools/fuzz_files.py`` (which runs the heavy cases and thousands of mutants)."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))

import fuzz_files  # noqa: E402
import hostile_files as hf  # noqa: E402


@pytest.mark.slow  # several seconds: `make test` runs it, `make test-fast` does not
def test_hostile_files_raise_only_our_errors_under_a_memory_limit():
    crafted = [name for name in hf.crafted() if name not in hf.HEAVY]
    names = crafted + [f"mutant {i}" for i in range(250)]
    summary = fuzz_files.run(names, seed=20260611, mem_gb=1.5, hang_s=10)
    bad = [f"{r['outcome']}: {r['name']} ({r['target']}): {r['detail'][-300:]}" for r in summary["bad"]]
    assert not bad, "\n".join(bad[:10])
    assert summary["files"] == len(names) and summary["counts"].get("clean", 0) > len(crafted)
    assert summary["peak_mb"] < 1024, summary["peak_case"]
