"""Turn a training work folder into the shipped diffusers folder (StableDiffusionInpaintPipeline).

How the prompt is ignored with the stock pipeline: the photos have no captions, so the UNet was
trained with one learned context vector (the null embedding). The folder's text encoder is a
stub ``CLIPTextModel`` (hidden size 8, one layer, final layer norm with weight 0 and bias 0, so
every prompt encodes to zeros), and the UNet gets diffusers' ``encoder_hid_proj`` (``text_proj``,
8 -> cross_attention_dim) with weight 0 and bias = the null embedding. Any prompt, the empty
prompt and any hidden layer (clip skip) therefore give exactly the trained context. The
stub is 0.4M parameters instead of 3.2M for a text encoder as wide as the context.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from .loop import TrainingError

MODEL_NAME = "latent-studio-mini"
TRAINING_RECORD = "training.json"  # train_stats.json of the run that made a folder
# What the app and CLI use for this model unless told otherwise (backend.models.recommended_settings),
# and the latent cell size of its colour guidance (backend.core._LatentAnchor): measured with
# `evaluate`, see the model card.
INPAINT_DEFAULTS = {"fill": "exemplar", "strength": 0.5}
OUTPAINT_DEFAULTS = {"fill": "exemplar", "strength": 0.5}
# The fewest steps whose live img2img figures stay within 10 % of 20 steps (bench/eval_live_settings.py).
LIVE_DEFAULTS = {"steps": 6, "sampler": "dpmpp_2m", "strength": 0.5}
COLOUR_GUIDE_CELL = 4
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = REPO_ROOT / "resources" / "models" / MODEL_NAME
TOKENIZER_DIR = REPO_ROOT / "resources" / "model-configs" / "sd15" / "tokenizer"


def stub_text_encoder(hidden: int):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
        num_attention_heads=1, max_position_embeddings=77, projection_dim=hidden,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )
    torch.manual_seed(0)
    te = CLIPTextModel(cfg)
    with torch.no_grad():
        final = getattr(te, "text_model", te).final_layer_norm  # transformers 4.x nests it
        final.weight.zero_()
        final.bias.zero_()
    return te


def build_folder(work_dir: Path, dest: Path = DEFAULT_MODEL_DIR, log=print) -> Path:
    """Write the pipeline folder at dest from vae.*, unet.*, null_embedding.* in work_dir."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from safetensors.torch import load_file

    from .models import NULL_TEXT_DIM, SCHEDULER_CONFIG

    work_dir, dest = Path(work_dir), Path(dest)
    need = ["vae_config.json", "vae.safetensors", "unet_config.json", "unet.safetensors", "null_embedding.safetensors"]
    missing = [n for n in need if not (work_dir / n).is_file()]
    if missing:
        raise TrainingError(f"{work_dir} lacks {', '.join(missing)}: train both stages first")

    vae_cfg = json.loads((work_dir / "vae_config.json").read_text())
    vae = AutoencoderKL(**vae_cfg)
    vae.load_state_dict({k: v.float() for k, v in load_file(str(work_dir / "vae.safetensors")).items()})

    unet_cfg = json.loads((work_dir / "unet_config.json").read_text())
    unet_cfg.update(encoder_hid_dim=NULL_TEXT_DIM, encoder_hid_dim_type="text_proj")
    unet = UNet2DConditionModel(**unet_cfg)
    state = {k: v.float() for k, v in load_file(str(work_dir / "unet.safetensors")).items()}
    result = unet.load_state_dict(state, strict=False)
    if result.unexpected_keys or set(result.missing_keys) != {"encoder_hid_proj.weight", "encoder_hid_proj.bias"}:
        raise TrainingError(f"UNet weights do not match its config: {result}")
    null = load_file(str(work_dir / "null_embedding.safetensors"))["null"].float()
    with torch.no_grad():
        unet.encoder_hid_proj.weight.zero_()
        unet.encoder_hid_proj.bias.copy_(null)

    te = stub_text_encoder(NULL_TEXT_DIM)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vae.to(torch.float16).save_pretrained(tmp / "vae", safe_serialization=True)
    unet.to(torch.float16).save_pretrained(tmp / "unet", safe_serialization=True)
    te.to(torch.float16).save_pretrained(tmp / "text_encoder", safe_serialization=True)
    shutil.copytree(TOKENIZER_DIR, tmp / "tokenizer")
    DDIMScheduler(**SCHEDULER_CONFIG).save_pretrained(tmp / "scheduler")
    import diffusers

    index = {
        "_class_name": "StableDiffusionInpaintPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    stats = _read_stats(work_dir)
    resolution = int(stats.get("resolution", unet_cfg["sample_size"] * 8))
    (tmp / "latent_studio.json").write_text(
        json.dumps({"ignores_prompt": True, "native_resolution": resolution, "anchor_latents": True,
                    "colour_guide_cell": COLOUR_GUIDE_CELL, "restore_detail": True,
                    "inpaint_defaults": INPAINT_DEFAULTS, "outpaint_defaults": OUTPAINT_DEFAULTS,
                    "live_defaults": LIVE_DEFAULTS,
                    "name": MODEL_NAME}, indent=2) + "\n"
    )
    (tmp / TRAINING_RECORD).write_text(json.dumps(stats, indent=1) + "\n")
    params = write_card(tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    log(f"wrote {dest} ({size / 1e6:.1f} MB, {sum(params.values()) / 1e6:.2f}M parameters)")
    return dest


def unpack_folder(model_dir: Path, work_dir: Path) -> None:
    """The reverse of build_folder: a packaged model's VAE, UNet (without the text projection)
    and null embedding as stage outputs in work_dir, so train-unet can start from them
    (``unet_init.safetensors``; see UnetTrainConfig.init), train-vae --decoder-only can fine-tune
    the decoder, and the folder can be packaged again after either stage alone."""
    import torch
    from safetensors.torch import load_file

    from .loop import save_weights

    model_dir, work_dir = Path(model_dir), Path(work_dir)
    try:
        vae_cfg = json.loads((model_dir / "vae" / "config.json").read_text())
        vae_state = load_file(str(model_dir / "vae" / "diffusion_pytorch_model.safetensors"))
        unet_state = load_file(str(model_dir / "unet" / "diffusion_pytorch_model.safetensors"))
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{model_dir} is not a packaged Latent Studio model ({exc})") from exc
    if "encoder_hid_proj.bias" not in unet_state:
        raise TrainingError(f"{model_dir}'s UNet has no learned null embedding (encoder_hid_proj): it was not "
                            "packaged by train-unet, so it cannot be fine-tuned here")
    work_dir.mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in vae_cfg.items() if not k.startswith("_")}
    (work_dir / "vae_config.json").write_text(json.dumps(keep, indent=1))
    save_weights(work_dir / "vae.safetensors", vae_state, dtype=torch.float32)
    null = unet_state.pop("encoder_hid_proj.bias").float()
    unet_state.pop("encoder_hid_proj.weight", None)
    save_weights(work_dir / "unet_init.safetensors", unet_state, dtype=torch.float32)
    save_weights(work_dir / "null_init.safetensors", {"null": null}, dtype=torch.float32)
    # The model's own UNet is also the current stage-2 output, until train-unet replaces it.
    save_weights(work_dir / "unet.safetensors", unet_state, dtype=torch.float16)
    save_weights(work_dir / "null_embedding.safetensors", {"null": null}, dtype=torch.float32)
    unet_cfg = json.loads((model_dir / "unet" / "config.json").read_text())
    drop = ("encoder_hid_dim", "encoder_hid_dim_type")
    (work_dir / "unet_config.json").write_text(json.dumps(
        {k: v for k, v in unet_cfg.items() if not k.startswith("_") and k not in drop}, indent=1))
    # The model's training record (build_folder keeps it in the folder), so the card goes on from it.
    # Its fine-tunes so far become "earlier" totals, which the next fine-tune's figures add to.
    record = model_dir / TRAINING_RECORD
    if record.is_file():
        stats = json.loads(record.read_text())
        for stage in ("unet", "vae"):
            steps = stats.pop(f"{stage}_finetune_steps", 0)
            if steps:
                stats[f"{stage}_finetune_earlier_steps"] = stats.get(f"{stage}_finetune_earlier_steps", 0) + steps
                stats[f"{stage}_finetune_earlier_seconds"] = (stats.get(f"{stage}_finetune_earlier_seconds", 0)
                                                              + stats.pop(f"{stage}_finetune_seconds", 0))
                stats[f"{stage}_finetune_earlier_runs"] = stats.get(f"{stage}_finetune_earlier_runs", 0) + 1
        (work_dir / "train_stats.json").write_text(json.dumps(stats, indent=1))


def _finetune_totals(stats: dict, stage: str) -> tuple[int, float, str]:
    """(steps, seconds, " in N runs" or "") of a stage's fine-tunes, earlier ones included."""
    steps = stats.get(f"{stage}_finetune_steps", 0) + stats.get(f"{stage}_finetune_earlier_steps", 0)
    seconds = stats.get(f"{stage}_finetune_seconds", 0) + stats.get(f"{stage}_finetune_earlier_seconds", 0)
    runs = stats.get(f"{stage}_finetune_earlier_runs", 0) + (1 if stats.get(f"{stage}_finetune_steps") else 0)
    return steps, seconds, (f" in {runs} runs" if runs > 1 else "")


def _finetune_line(stats: dict) -> str:
    steps, seconds, runs = _finetune_totals(stats, "unet")
    if not steps:
        return ""
    pairs = stats.get("unet_finetune_pairs") or 0
    how = f"{pairs} masked crops encoded once and reused, mirrored at random" if pairs else "masks drawn every step"
    return (f"\n- Then fine-tuned from those weights (`train-unet --init-from`): {steps} steps{runs}, "
            f"batch {stats.get('unet_finetune_batch', '?')}, {seconds / 60:.1f} min on "
            f"{stats.get('unet_finetune_device', '?')} (last run: {how}).")


def _decoder_line(stats: dict) -> str:
    steps, seconds, runs = _finetune_totals(stats, "vae")
    if not steps:
        return ""
    return (f" Then its decoder alone fine-tuned (`train-vae --decoder-only`, encoder frozen, same loss less the KL "
            f"term): {steps} steps{runs}, batch {stats.get('vae_finetune_batch', '?')} of "
            f"{stats.get('vae_finetune_crop', '?')}² crops, {seconds / 60:.1f} min on "
            f"{stats.get('vae_finetune_device', '?')}.")


def _read_stats(work_dir: Path) -> dict:
    path = Path(work_dir) / "train_stats.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _data_table() -> str:
    from .data import SOURCES, split_of

    rows = ["| scene | source | author | licence | split |", "|---|---|---|---|---|"]
    for s in SOURCES:
        where = f"`{s.origin[4:]}` `/{s.path}`" if s.origin.startswith("deb:") else f"scikit-image `skimage/data/{s.path}`"
        rows.append(f"| {s.scene} | {where} | {s.author} | {s.licence} | {split_of(s.scene)} |")
    return "\n".join(rows)


def model_card(vae_cfg: dict, unet_cfg: dict, params: dict, stats: dict, resolution: int, info: dict | None = None,
               model_dir: Path | None = None) -> str:
    m = stats.get("metrics", {})
    info = info or {}

    def metric(key, fmt="{:.2f}"):
        return fmt.format(m[key]) if key in m and m[key] is not None else "not measured yet"

    total = sum(params.values())
    return f"""---
library_name: diffusers
pipeline_tag: image-to-image
tags: [inpainting, latent-diffusion, latent-studio]
latent_studio:
  ignores_prompt: true
  native_resolution: {resolution}
---
# {MODEL_NAME}

Latent Studio's embedded default model: a small latent diffusion model trained from scratch by
`backend/training/` on {len(_data_rows())} openly licensed photos, the way latent diffusion is
trained: the autoencoder first, then the inpainting denoiser in its latent space. It is a
diffusers `StableDiffusionInpaintPipeline` folder; it serves inpaint, outpaint, img2img (whole-image
mask) and the refine pass of upscaling. **It ignores the prompt**: the photos have no captions, so
the denoiser was trained with one learned context vector (see "Prompt" below). Native resolution
{resolution}×{resolution} px; larger images work (the networks are convolutional) but were not
trained on.

## Architecture ({total / 1e6:.2f}M parameters, fp16 safetensors)
- `vae/`: `AutoencoderKL`, 8× downsampling, {vae_cfg['latent_channels']} latent channels, widths
  {vae_cfg['block_out_channels']}, {vae_cfg['layers_per_block']} ResNet layer(s) per block,
  scaling_factor {vae_cfg.get('scaling_factor')} (1 / latent std on training crops); {params['vae'] / 1e6:.2f}M.
- `unet/`: `UNet2DConditionModel`, 9 input channels (noisy latent 4 + mask 1 + masked-image latent 4),
  widths {unet_cfg['block_out_channels']}, blocks {unet_cfg['down_block_types']}, {unet_cfg['layers_per_block']}
  layer(s) per block, cross-attention dim {unet_cfg['cross_attention_dim']}; {params['unet'] / 1e6:.2f}M.
- `text_encoder/`: stub `CLIPTextModel` (hidden 8, 1 layer) whose output is always zero; {params['text_encoder'] / 1e6:.2f}M.
  `tokenizer/`: the CLIP BPE tokenizer. `scheduler/`: DDIM, SD's scaled-linear betas, 1000 steps, epsilon.

## Prompt
The UNet's `encoder_hid_proj` (a `text_proj`, 8 → {unet_cfg['cross_attention_dim']}) has weight 0 and bias =
the learned null embedding, so every prompt (and negative prompt) gives the same context. Guidance
scale has no effect; use 1.0 to skip the duplicate pass. `latent_studio.json` says so for the app, and asks the engine to keep the unmasked latents on the
known image's trajectory at every step (`anchor_latents`), which stops a colour drift this briefly trained
denoiser shows over a full sampling run.

## Recommended settings
`latent_studio.json` recommends `inpaint_defaults` {json.dumps(info.get('inpaint_defaults', INPAINT_DEFAULTS))} and
`outpaint_defaults` {json.dumps(info.get('outpaint_defaults', OUTPAINT_DEFAULTS))}; the app applies them when it
switches to this model and the CLI uses them unless `--fill`/`--strength` are given. The `exemplar` fill
continues the hole from the picture's own patches (OpenCV contrib's shift-map, the kind of fill
Content-Aware Fill makes: a roof line or a row of windows carries on), and the denoiser refines it at that
strength: below 1 the engine adds back the detail its small autoencoder loses of the start image, so the
fill keeps its structure and gets the model's blending and variety. With a fill made from the surroundings
(`exemplar`, `blur`, `flat`) the engine also keeps the hole's coarse colours (means over
{COLOUR_GUIDE_CELL}×{COLOUR_GUIDE_CELL} latent cells, {8 * COLOUR_GUIDE_CELL} px) on the prefill at every step
(`colour_guide_cell`, low-pass guidance as in ILVR), and the denoiser paints the detail, kept no stronger
per latent channel than the surroundings' detail at the same step: on its own it picks a hole's colours from
context less well than the surroundings do, and paints blotches of foreign colour (see Metrics). Its small
autoencoder draws little of the finest detail (its reconstructions of held-out crops have about a third of
the photos' gradient energy), so `restore_detail` asks the engine to give inpainted and outpainted areas the
fine grain of similar-coloured surroundings, in the share the decoded image lacks around the hole
(`backend/region.py`, `transfer_detail`); `--no-detail` and the app's "Detail from the surroundings" box turn
it off.
{_preview_line(model_dir) + _encode_line(model_dir) if model_dir is not None else ""}
## Training
- Autoencoder: L1 + 0.5 × L1 of image gradients + 1e-6 × KL, AdamW, warmup + cosine;
  {stats.get('vae_steps', '?')} steps, batch {stats.get('vae_batch', '?')} of {stats.get('vae_crop', '?')}² crops,
  {stats.get('vae_seconds', 0) / 60:.1f} min on {stats.get('vae_device', '?')}.{_decoder_line(stats)}
- Denoiser: epsilon objective, uniform timesteps, EMA 0.999; masks: brush strokes, 1–3 boxes, border
  bands (outpainting), whole image (img2img); {stats.get('unet_steps', '?')} steps, batch {stats.get('unet_batch', '?')}
  of {resolution}² crops, {stats.get('unet_seconds', 0) / 60:.1f} min on {stats.get('unet_device', '?')}.{_finetune_line(stats)}
- Crops: windows of 1–4× the crop side from photos downscaled to a 1024 px short side, resized with
  antialiasing, random flips, ±5 % brightness/contrast/saturation.
- Reproduce: `python main.py prepare-data`, `python main.py train-vae --minutes N`,
  `python main.py train-unet --minutes N` (CPU or CUDA), or `tools/gpu_train.sh` + `tools/package_gpu_result.py`;
  fine-tunes: `train-vae --init-from MODEL --decoder-only`, `train-unet --init-from MODEL`, or on CUDA
  `GPU_TRAIN_ARGS="--init-from MODEL" tools/gpu_train.sh 1.5 6` (both).
{('- ' + stats['notes']) if stats.get('notes') else ''}

## Metrics (held-out scenes, `python main.py evaluate`{', ' + m['date'] if m.get('date') else ''})
{metrics_section(m).rstrip() if m.get('ours_colour_error') is not None else "- VAE reconstruction PSNR on held-out 256² crops: " + metric('vae_psnr') + " dB (goal ≥ 24). Inpainting: not measured yet."}

## Data and licences
Held-out scenes (never trained on): {', '.join(sorted(_heldout()))}.

{_data_table()}

Debian packages fetched with `apt-get download` (Debian bookworm) and unpacked, not installed; licences
as in their `/usr/share/doc/*/copyright` (the Plasma wallpapers' per-image `metadata.json` names
LGPL-3.0; Debian's copyright file lists the package as GPL-2+). Left out: abstract and illustrated
wallpapers (e.g. Plasma's Altai, MilkyWay, Flow; MATE's abstract/ and desktop/).
The weights are derived from these works; redistribute them under terms compatible with
GPL-2+/LGPL-3.0 and with attribution as above.

Generated {time.strftime('%Y-%m-%d')} by `backend/training/package.py`.
"""


def _data_rows():
    from .data import SOURCES

    return SOURCES


def _heldout():
    from .data import HELDOUT_SCENES

    return HELDOUT_SCENES


def update_card_metrics(model_dir: Path, metrics: dict) -> None:
    """Records measured metrics in the folder's training record and writes its model card afresh
    (from the folder's configs, the record and this module's template, so the card follows
    the template as it changes)."""
    model_dir = Path(model_dir)
    record = model_dir / TRAINING_RECORD
    stats = json.loads(record.read_text()) if record.is_file() else {}
    stats["metrics"] = {k: v for k, v in metrics.items() if k != "contact_sheet"}
    stats["metrics"]["date"] = time.strftime("%Y-%m-%d")
    record.write_text(json.dumps(stats, indent=1) + "\n")
    write_card(model_dir)


def write_card(model_dir: Path) -> dict:
    """The model card (README.md) of a packaged folder, from its configs and training record;
    returns the parameter counts of its parts."""
    from safetensors import safe_open

    model_dir = Path(model_dir)
    try:
        vae_cfg = json.loads((model_dir / "vae" / "config.json").read_text())
        unet_cfg = json.loads((model_dir / "unet" / "config.json").read_text())
        info = json.loads((model_dir / "latent_studio.json").read_text())
        params = {}
        for part in ("vae", "unet", "text_encoder"):
            files = list((model_dir / part).glob("*.safetensors"))
            n = 0
            for f in files:
                with safe_open(str(f), "np") as st:
                    n += sum(int(np.prod(st.get_slice(k).get_shape())) for k in st.keys())
            params[part] = n
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{model_dir} is not a packaged Latent Studio model ({exc})") from exc
    record = model_dir / TRAINING_RECORD
    stats = json.loads(record.read_text()) if record.is_file() else {}
    (model_dir / "README.md").write_text(model_card(vae_cfg, unet_cfg, params, stats,
                                                    int(info.get("native_resolution", 256)), info, model_dir))
    return params


def _preview_line(model_dir: Path) -> str:
    from backend.preview import HEAD_FILE

    if not (Path(model_dir) / HEAD_FILE).is_file():
        return ""
    return ("\n## Previews\n`" + HEAD_FILE + "` is a tiny decoder for the live previews (eight 3×3 layers at the "
            "latents' resolution, seven depthwise-separable, and a pixel shuffle, about 5 ms for a 256² preview on a CPU), fitted to this model's "
            "own VAE decoder on the training photos' latents and perturbed copies of them "
            "(`python main.py train-preview`); a linear latent→RGB map shows this autoencoder's latents in false "
            "colours.\n")


def _encode_line(model_dir: Path) -> str:
    from backend.preview import ENCODE_HEAD_FILE

    if not (Path(model_dir) / ENCODE_HEAD_FILE).is_file():
        return ""
    return ("\n## Live encoder\n`" + ENCODE_HEAD_FILE + "` is a tiny encoder for live updates (a pixel unshuffle, three 3×3 "
            "convolutions down to the latents' resolution and depthwise-separable blocks there, about 7 ms at 256² "
            "on a CPU against the VAE encoder's 300), fitted to the mean of this model's own VAE encoder on training "
            "crops and painted-over copies of them (`python main.py train-encode-head`). Full jobs keep the VAE.\n")


def metrics_section(m: dict) -> str:
    """The card's metric lines from `evaluate`'s figures."""
    lines = [
        f"- VAE reconstruction PSNR on held-out 256² crops: {m['vae_psnr']:.2f} dB (goal ≥ 24; CompVis kl-f8: 24.19).",
        f"- Inpainting 64² holes in {m.get('crops', 16)} held-out 256² crops, against OpenCV Telea, with the recommended "
        f"settings (fill {m.get('inpaint_fill', '?')}, strength {m.get('inpaint_strength', 1.0):g}"
        f"{', detail transfer' if m.get('restore_detail') else ''}): mean colour error "
        f"{m['ours_colour_error']:.2f} vs {m['telea_colour_error']:.2f} (ratio "
        f"{m['ours_colour_error'] / max(m['telea_colour_error'], 1e-9):.2f}; goal ≤ 1.10); gradient-histogram "
        f"distance to the truth {m['ours_texture']:.3f} vs {m['telea_texture']:.3f} (goal: below Telea's).",
    ]
    if m.get("nodetail_colour_error") is not None:
        lines.append(
            f"- The same without detail transfer (`restore_detail`): colour error {m['nodetail_colour_error']:.2f} "
            f"(ratio {m['nodetail_colour_error'] / max(m['telea_colour_error'], 1e-9):.2f}), texture distance "
            f"{m['nodetail_texture']:.3f}.")
    if m.get("bare_colour_error") is not None:
        lines.append(
            f"- The denoiser alone (fill original, strength 1, so no colour guidance; no detail transfer): colour error "
            f"{m['bare_colour_error']:.2f} (ratio {m['bare_colour_error'] / max(m['telea_colour_error'], 1e-9):.2f}), "
            f"texture distance {m['bare_texture']:.3f}.")
    if m.get("exemplar_colour_error") is not None and m["exemplar_colour_error"] == m["exemplar_colour_error"]:
        lines.append(
            f"- The exemplar fill alone (OpenCV contrib's shift-map), the anchor a painter compares with: colour error "
            f"{m['exemplar_colour_error']:.2f}, texture distance {m['exemplar_texture']:.3f}; ours with the recommended "
            f"settings over it: {m['ours_colour_error'] / max(m['exemplar_colour_error'], 1e-9):.2f} in colour (goal "
            f"≤ 1.02) and {m['ours_texture'] / max(m['exemplar_texture'], 1e-9):.2f} in texture (goal ≤ 1.1).")
    if m.get("preview_last") is not None and m["preview_last"] == m["preview_last"]:
        lines.append(
            f"- Previews: mean |preview − result| in the hole {m['preview_last']:.2f} at the last step and "
            f"{m['preview_half']:.2f} halfway (0–255; goal for the last step ≤ 4).")
    for key, strength, goal in (("img2img_s03", 0.3, "≥ 0.80"), ("img2img_s06", 0.6, "≥ 0.5")):
        if m.get(f"{key}_ssim") is not None:
            lines.append(
                f"- img2img at strength {strength:g}, full resolution, on the held-out scenes: SSIM to the input "
                f"{m[f'{key}_ssim']:.3f} (goal {goal}), colour error {m[f'{key}_colour']:.2f}, two seeds differ by "
                f"{m[f'{key}_seeds']:.2f} on average (0–255).")
    return "\n".join(lines) + "\n"
