"""Where things live: shipped resources and the user's folders."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESOURCES = ROOT / "resources"
MODEL_CONFIGS = RESOURCES / "model-configs"
EMBEDDED_MODELS = RESOURCES / "models"
APP_NAME = "latent-studio"


def models_dir() -> Path:
    """The user's model folder: $LATENT_STUDIO_MODELS, else the platform's data dir."""
    override = os.environ.get("LATENT_STUDIO_MODELS")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME)) / "models"


def cache_dir() -> Path:
    override = os.environ.get("LATENT_STUDIO_CACHE")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME))


def find_model_file(ref: str, folders, suffixes=()) -> Path:
    """``ref`` as a path; failing that, ``ref`` (or ``ref`` + a suffix) in the first folder that has it.

    Returns the expanded path when nothing matches, so the caller can say it was not found.
    """
    path = Path(os.path.expanduser(ref))
    if path.exists():
        return path
    for folder in folders:
        for candidate in [folder / ref] + [folder / f"{ref}{s}" for s in suffixes]:
            if candidate.exists():
                return candidate
    return path
