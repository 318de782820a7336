"""The A1111 "parameters" text: what generated an image, as stored in PNG tEXt chunks.

Format (the de-facto standard read by A1111, ComfyUI importers, civitai...):

    <prompt>
    Negative prompt: <negative prompt>
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model: name, Denoising strength: 0.75

:func:`format_parameters` and :func:`parse_parameters` convert between that
text and an ordered ``dict[str, str]`` with keys ``"prompt"``,
``"negative_prompt"`` and the settings' own names ("Steps", "Sampler", ...).
``parse_parameters(format_parameters(d)) == d`` for prompts without a line
starting "Negative prompt:" and values without commas or quotes lost in
quoting (values holding ``,`` ``:`` or ``"`` are quoted as JSON strings, like A1111).
"""
from __future__ import annotations

import json
import re

NEGATIVE = "Negative prompt: "
_SETTING = re.compile(r'\s*([\w \-/+.()]+?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def format_parameters(params: dict) -> str:
    params = {str(k): str(v) for k, v in params.items()}
    prompt = params.pop("prompt", "")
    negative = params.pop("negative_prompt", None)
    lines = [prompt]
    if negative:  # A1111 leaves the line out when there is no negative prompt
        lines.append(NEGATIVE + negative)
    settings = []
    for key, value in params.items():
        if any(c in value for c in ',:"\n') or value != value.strip():
            value = json.dumps(value, ensure_ascii=False)
        settings.append(f"{key}: {value}")
    if settings:
        lines.append(", ".join(settings))
    return "\n".join(lines)


def parse_parameters(text: str) -> dict[str, str]:
    """Parse an A1111 parameters text; unknown shapes degrade to {"prompt": text}."""
    lines = text.split("\n")
    settings_line = ""
    if len(lines) > 1 and _looks_like_settings(lines[-1]):
        settings_line = lines.pop()
    out: dict[str, str] = {}
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if not in_negative and line.startswith(NEGATIVE.rstrip()):
            in_negative = True
            line = line[len(NEGATIVE.rstrip()):].removeprefix(" ")
        (negative_lines if in_negative else prompt_lines).append(line)
    out["prompt"] = "\n".join(prompt_lines)
    if in_negative:
        out["negative_prompt"] = "\n".join(negative_lines)
    for m in _SETTING.finditer(settings_line):
        key, value = m.group(1).strip(), m.group(2).strip()
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[key] = value
    return out


def _looks_like_settings(line: str) -> bool:
    return bool(re.match(r"^\s*[\w \-/+.()]+:\s", line)) and ("Steps:" in line or ", " in line)


def generated_layer_name(operation: str, prompt: str, words: int = 6) -> str:
    """E.g. ("inpaint", "a red fox in the snow at dawn") -> "Inpaint: a red fox in the snow…"."""
    parts = prompt.split()
    short = " ".join(parts[:words]) + ("…" if len(parts) > words else "")
    op = operation[:1].upper() + operation[1:]
    return f"{op}: {short}" if short else op
