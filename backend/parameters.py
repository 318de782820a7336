"""Generation parameters in the AUTOMATIC1111 ``parameters`` text format.

The format is read by every Stable Diffusion tool: the prompt, an optional
``Negative prompt:`` line, then one line of ``Key: value`` pairs::

    a red barn
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: 512x512, Model: sd15

Pure Python (no torch) so the document model and the CLI can use it too.
"""
from __future__ import annotations

import re

# Key order as A1111 writes it; unknown keys follow in insertion order.
_ORDER = ("Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "Denoising strength")


def format_parameters(params: dict[str, object]) -> str:
    """Turns ``{"prompt": ..., "negative_prompt": ..., "Steps": 20, ...}`` into the text form."""
    prompt = str(params.get("prompt", ""))
    negative = str(params.get("negative_prompt", ""))
    rest = {k: v for k, v in params.items() if k not in ("prompt", "negative_prompt")}
    keys = [k for k in _ORDER if k in rest] + [k for k in rest if k not in _ORDER]
    pairs = ", ".join(f"{k}: {_quote(str(rest[k]))}" for k in keys)
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    if pairs:
        lines.append(pairs)
    return "\n".join(lines)


def parse_parameters(text: str) -> dict[str, str]:
    """The inverse of :func:`format_parameters` (values come back as strings)."""
    lines = text.split("\n")
    result: dict[str, str] = {}
    last = lines[-1] if len(lines) > 1 or _looks_like_pairs(lines[-1]) else ""
    body = lines[:-1] if last else lines
    if last:
        for key, value in _PAIR.findall(last):
            result[key.strip()] = _unquote(value.strip())
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].lstrip()
        (negative_lines if in_negative else prompt_lines).append(line)
    result["prompt"] = "\n".join(prompt_lines)
    if negative_lines:
        result["negative_prompt"] = "\n".join(negative_lines)
    return result


_PAIR = re.compile(r'\s*([\w \-/.]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _looks_like_pairs(line: str) -> bool:
    return bool(re.match(r"^Steps: \d+", line))


def _quote(value: str) -> str:
    if any(c in value for c in ',:"\n') or value != value.strip():
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return value


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), inner)
    return value
