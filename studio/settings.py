"""Typed, versioned settings stored as JSON in the user's config folder.

The generation settings are the operation specs' own typed settings (``operations``): the common
ones once, and each operation's own, so each operation keeps its strength, fill and the rest.
Unknown keys are ignored, a value of the wrong type or out of range takes its default, and a file
of version 1 (one flat list of generation values) is migrated, so an old file never breaks a new
version.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from operations import SPECS
from operations.spec import CommonSettings, coerce
from operations.steering import AppSteering, LoraEntry

VERSION = 2


def _default_common() -> CommonSettings:
    return coerce(CommonSettings, {}, app=True)  # the app's own defaults (Variations 4)


def _default_operations() -> dict:
    return {name: spec.settings() for name, spec in SPECS.items()}


@dataclass
class GenerationSettings:
    operation: str = "inpaint"
    common: CommonSettings = field(default_factory=_default_common)
    operations: dict = field(default_factory=_default_operations)  # name -> that spec's settings
    random_seed: bool = True
    defaults_applied_for: str = ""  # the model whose recommended inpaint settings were last applied

    def of(self, name: str):
        return self.operations[name]


@dataclass
class WindowSettings:
    geometry: tuple = ()  # (x, y, width, height) of the normal window, in screen pixels
    maximized: bool = False


@dataclass
class EngineSettings:
    """Where jobs run (Settings ▸ Engine): ``local`` (this computer) or ``server`` at ``url`` with ``token``."""

    kind: str = "local"
    url: str = ""
    token: str = ""
    fast_path: bool = True  # backend.fastpath on this computer's engine (channels_last, fused attention, compile)


@dataclass
class SteeringSettings:
    """The generation panel's LoRA list (``{"name", "weight", "enabled"}`` each) and IP-Adapter model."""

    loras: list = field(default_factory=list)
    ip_adapter: str = ""

    def value(self) -> AppSteering:
        return AppSteering(tuple(LoraEntry(**entry) for entry in self.loras), self.ip_adapter)

    @classmethod
    def of(cls, steering: AppSteering) -> "SteeringSettings":
        return cls([asdict(entry) for entry in steering.loras], steering.ip_adapter)


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
    window: WindowSettings = field(default_factory=WindowSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    steering: SteeringSettings = field(default_factory=SteeringSettings)


def config_path() -> Path:
    override = os.environ.get("LATENT_STUDIO_CONFIG")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("latent-studio")) / "settings.json"


def _plain(cls, data: dict):
    """A plain settings dataclass from a mapping: wrong types take the default."""
    kwargs = {}
    for f in fields(cls):
        if f.name not in (data or {}):
            continue
        value = data[f.name]
        default = getattr(cls(), f.name)
        if isinstance(default, bool):
            value = bool(value)
        elif isinstance(default, str) and not isinstance(value, str):
            continue
        elif isinstance(default, (int, float)) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            continue
        elif isinstance(default, int) and isinstance(value, float):
            value = int(value)
        elif isinstance(default, tuple):
            value = tuple(value) if isinstance(value, (list, tuple)) else default
        elif isinstance(default, list):
            value = list(value) if isinstance(value, list) else default
        elif dataclasses.is_dataclass(default):
            continue
        kwargs[f.name] = value
    return cls(**kwargs)


def _generation(data: dict) -> GenerationSettings:
    if "common" not in data:
        data = _migrate_v1(data)
    ops = data.get("operations") if isinstance(data.get("operations"), dict) else {}
    operation = data.get("operation") if data.get("operation") in SPECS else "inpaint"
    return GenerationSettings(
        operation=operation,
        common=coerce(CommonSettings, data.get("common") if isinstance(data.get("common"), dict) else {}, app=True),
        operations={name: coerce(spec.settings, ops.get(name) if isinstance(ops.get(name), dict) else {})
                    for name, spec in SPECS.items()},
        random_seed=bool(data.get("random_seed", True)),
        defaults_applied_for=data.get("defaults_applied_for") if isinstance(data.get("defaults_applied_for"), str)
        else "",
    )


def _migrate_v1(g: dict) -> dict:
    """Version 1 kept one flat list of generation values, with a strength per operation."""
    common = {k: g[k] for k in ("model", "prompt", "negative_prompt", "steps", "guidance", "seed", "count", "sampler")
              if k in g}
    ops: dict = {"inpaint": {}, "outpaint": {}, "img2img": {}, "upscale": {}}
    for key, (op, name) in {"strength": ("inpaint", "strength"), "outpaint_strength": ("outpaint", "strength"),
                            "img2img_strength": ("img2img", "strength"), "grow": ("inpaint", "grow"),
                            "feather": ("inpaint", "feather"), "padding": ("inpaint", "padding"),
                            "overlap": ("outpaint", "overlap"), "upscaler": ("upscale", "upscaler"),
                            "upscale_scale": ("upscale", "scale"), "upscale_tile": ("upscale", "tile"),
                            "refine_strength": ("upscale", "refine_strength")}.items():
        if key in g:
            ops[op][name] = g[key]
    if "restore_detail" in g:
        ops["inpaint"]["restore_detail"] = ops["outpaint"]["restore_detail"] = g["restore_detail"]
    fill = g.get("fill")
    if isinstance(fill, str):
        ops["outpaint" if fill == "edge" else "inpaint"]["fill"] = fill
    return dict(operation=g.get("operation"), common=common, operations=ops, random_seed=g.get("random_seed", True),
                defaults_applied_for=g.get("defaults_applied_for", ""))


def _steering(data: dict) -> SteeringSettings:
    """The LoRA list as stored: an entry without a name is dropped, a weight of the wrong type takes 1 and
    one out of range is clamped to [-2, 2], a file listed twice is kept once."""
    from backend.steering import LORA_WEIGHT

    loras, seen = [], set()
    for entry in data.get("loras") if isinstance(data.get("loras"), list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            continue
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight != weight:
            weight = 1.0
        if entry["name"] in seen:
            continue
        seen.add(entry["name"])
        loras.append({"name": entry["name"], "weight": min(max(float(weight), LORA_WEIGHT[0]), LORA_WEIGHT[1]),
                      "enabled": entry.get("enabled", True) is not False})
    ip_adapter = data.get("ip_adapter") if isinstance(data.get("ip_adapter"), str) else ""
    return SteeringSettings(loras, ip_adapter)


def load(path: Path | None = None) -> Settings:
    path = path or config_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return Settings()
    if not isinstance(data, dict):
        return Settings()
    settings = _plain(Settings, data)
    settings.version = VERSION
    generation = data.get("generation")
    settings.generation = _generation(generation if isinstance(generation, dict) else {})
    window = data.get("window")
    settings.window = _plain(WindowSettings, window if isinstance(window, dict) else {})
    engine = data.get("engine")
    settings.engine = _plain(EngineSettings, engine if isinstance(engine, dict) else {})
    steering = data.get("steering")
    settings.steering = _steering(steering if isinstance(steering, dict) else {})
    if settings.engine.kind not in ("local", "server"):
        settings.engine.kind = "local"
    if len(settings.window.geometry) != 4 or not all(isinstance(v, int) for v in settings.window.geometry):
        settings.window.geometry = ()
    return settings


def save(settings: Settings, path: Path | None = None) -> None:
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(settings), indent=1))
    if settings.engine.token:  # the file holds a server's token: readable by its owner only
        os.chmod(tmp, 0o600)
    os.replace(tmp, path)
