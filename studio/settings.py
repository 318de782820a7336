"""Typed, versioned settings stored as JSON in the user's config folder.

Unknown keys are ignored and missing keys take their defaults, so an old
file never breaks a new version; ``version`` lets a future release migrate.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

VERSION = 1


@dataclass
class GenerationSettings:
    operation: str = "inpaint"  # inpaint, outpaint, img2img, upscale
    model: str = ""  # "" = the embedded default model
    prompt: str = ""
    negative_prompt: str = ""
    strength: float = 1.0  # inpaint's; each operation keeps its own (switching shows that one)
    outpaint_strength: float = 1.0
    img2img_strength: float = 0.6  # a variation that keeps the composition
    steps: int = 20
    guidance: float = 7.0
    seed: int = 0
    random_seed: bool = True
    count: int = 4
    sampler: str = "dpmpp_2m"
    grow: int = 8
    feather: int = 16
    padding: int = 48
    fill: str = "original"
    overlap: int = 48
    upscaler: str = ""  # "" = the bundled Real-ESRGAN x4plus
    upscale_scale: int = 2
    upscale_tile: int = 512
    refine_strength: float = 0.0
    defaults_applied_for: str = ""  # the model whose recommended inpaint settings were last applied
    restore_detail: bool = True  # inpaint/outpaint: detail from the surroundings, for models that ask for it


@dataclass
class Settings:
    version: int = VERSION
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    recent_files: list = field(default_factory=list)
    brush_size: float = 20.0
    brush_hardness: float = 0.8
    brush_opacity: float = 1.0
    brush_flow: float = 1.0
    color: tuple = (20, 20, 20)
    models: list = field(default_factory=list)  # extra local model paths the user added


def config_path() -> Path:
    override = os.environ.get("LATENT_STUDIO_CONFIG")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("latent-studio")) / "settings.json"


def _fill(cls, data: dict):
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in (data or {}).items():
        if key not in known:
            continue
        default = getattr(cls(), key)
        if isinstance(default, GenerationSettings):
            value = _fill(GenerationSettings, value if isinstance(value, dict) else {})
        elif isinstance(default, bool):
            value = bool(value)
        elif isinstance(default, str) and not isinstance(value, str):
            continue
        elif isinstance(default, (int, float)) and not isinstance(value, (int, float)):
            continue
        elif isinstance(default, int) and isinstance(value, float):
            value = int(value)
        elif isinstance(default, tuple):
            value = tuple(value) if isinstance(value, (list, tuple)) else default
        elif isinstance(default, list):
            value = list(value) if isinstance(value, list) else default
        kwargs[key] = value
    return cls(**kwargs)


def load(path: Path | None = None) -> Settings:
    path = path or config_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return Settings()
    if not isinstance(data, dict):
        return Settings()
    settings = _fill(Settings, data)
    settings.version = VERSION
    return settings


def save(settings: Settings, path: Path | None = None) -> None:
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(settings), indent=1))
    os.replace(tmp, path)
