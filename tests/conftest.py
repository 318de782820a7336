"""Shared test configuration and the tiny-model fixtures.

Nothing heavy is imported here at import time: torch, diffusers and transformers are imported lazily
inside the fixtures, so tests that do not use a model stay fast.

Fixtures (built once per session, under ``tmp_path_factory``; treat them as read-only):

* ``tiny_sd15_folder``, ``tiny_sd15_inpaint_folder`` (9-channel UNet), ``tiny_sd21_folder``,
  ``tiny_sdxl_folder``, ``tiny_sdxl_inpaint_folder`` -> ``Path`` of a complete diffusers folder.
* ``tiny_sd15_single_file``, ``tiny_sd15_inpaint_single_file``, ``tiny_sd21_single_file``,
  ``tiny_sdxl_single_file``, ``tiny_sdxl_inpaint_single_file`` -> ``(checkpoint, config_folder)``:
  one ``.safetensors`` in the original LDM layout and its weightless diffusers config folder.
* ``tiny_model_cache`` -> a cache with ``.folder(family, in_channels)`` and
  ``.single_file(family, in_channels)`` for any other combination (same artifacts, built on demand).
* ``malicious_pickle`` (function scope, so that every test gets a fresh marker) ->
  ``(ckpt_path, marker_path)``: ``marker_path`` does not exist and is created if, and only if, the
  ``.ckpt`` is unpickled without restrictions.
"""

import os

from backend.threads import openmp_defaults  # noqa: E402

openmp_defaults()
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The fast path (backend.fastpath) puts the VAE encoder in channels_last on the CPU, which changes the
# float rounding: the tests that compare with stock diffusers pixel for pixel need it off, so it is off
# for the suite; tests/backend/test_fastpath.py turns it on where it is the subject.
os.environ["LATENT_STUDIO_FAST_PATH"] = "0"

import pytest  # noqa: E402

_TORCH_CONFIGURED = False


def _torch():
    """Import torch on first use and limit it to the two cores this machine shares."""
    global _TORCH_CONFIGURED
    import torch

    if not _TORCH_CONFIGURED:
        torch.set_num_threads(2)
        _TORCH_CONFIGURED = True
    return torch


class TinyModels:
    """Builds each tiny artifact at most once per session."""

    def __init__(self, root):
        self._root = root
        self._cache = {}

    def folder(self, family: str = "sd15", in_channels: int = 4):
        key = ("folder", family, in_channels)
        if key not in self._cache:
            _torch()
            import tiny_models

            path = self._root / f"{family}-{in_channels}ch-diffusers"
            self._cache[key] = tiny_models.save_diffusers_folder(path, family, in_channels, seed=0)
        return self._cache[key]

    def single_file(self, family: str = "sd15", in_channels: int = 4):
        key = ("single", family, in_channels)
        if key not in self._cache:
            _torch()
            import tiny_models

            path = self._root / f"{family}-{in_channels}ch-single"
            self._cache[key] = tiny_models.save_single_file(path, family, in_channels, seed=0)
        return self._cache[key]


@pytest.fixture(scope="session")
def tiny_model_cache(tmp_path_factory):
    return TinyModels(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def tiny_sd15_folder(tiny_model_cache):
    return tiny_model_cache.folder("sd15", 4)


@pytest.fixture(scope="session")
def tiny_sd15_inpaint_folder(tiny_model_cache):
    return tiny_model_cache.folder("sd15", 9)


@pytest.fixture(scope="session")
def tiny_sd21_folder(tiny_model_cache):
    return tiny_model_cache.folder("sd21", 4)


@pytest.fixture(scope="session")
def tiny_sdxl_folder(tiny_model_cache):
    return tiny_model_cache.folder("sdxl", 4)


@pytest.fixture(scope="session")
def tiny_sdxl_inpaint_folder(tiny_model_cache):
    return tiny_model_cache.folder("sdxl", 9)


@pytest.fixture(scope="session")
def tiny_sd15_single_file(tiny_model_cache):
    return tiny_model_cache.single_file("sd15", 4)


@pytest.fixture(scope="session")
def tiny_sd15_inpaint_single_file(tiny_model_cache):
    return tiny_model_cache.single_file("sd15", 9)


@pytest.fixture(scope="session")
def tiny_sd21_single_file(tiny_model_cache):
    return tiny_model_cache.single_file("sd21", 4)


@pytest.fixture(scope="session")
def tiny_sdxl_single_file(tiny_model_cache):
    return tiny_model_cache.single_file("sdxl", 4)


@pytest.fixture(scope="session")
def tiny_sdxl_inpaint_single_file(tiny_model_cache):
    return tiny_model_cache.single_file("sdxl", 9)


@pytest.fixture
def malicious_pickle(tmp_path):
    _torch()
    import tiny_models

    marker = tmp_path / "pwned-marker"
    path = tiny_models.write_malicious_pickle(tmp_path / "model.ckpt", marker)
    assert not marker.exists()
    return path, marker


def pytest_terminal_summary(terminalreporter):
    """Say where the studio tests left their screenshots."""
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "test-artifacts"
    if folder.is_dir() and any(folder.iterdir()):
        terminalreporter.write_line(f"test artifacts (screenshots): {folder}")


# Tests that run a diffusion model (a tiny one built from configs) or the real engine are slow by
# nature: `make test-fast` leaves them out. Marked here by the fixtures they use, so a new test on a
# tiny model is marked without anyone remembering to; others carry `pytest.mark.slow` themselves.
SLOW_FIXTURES = {"engine", "real_window", "tiny_model_cache", "models"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        # Parametrized by a fixture's name, fetched with request.getfixturevalue: a tiny model too.
        params = getattr(getattr(item, "callspec", None), "params", {}).values()
        names |= {p for p in params if isinstance(p, str)}
        if names & SLOW_FIXTURES or any(n.startswith("tiny_") for n in names):
            item.add_marker(pytest.mark.slow)
