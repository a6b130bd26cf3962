#!/usr/bin/env python3
"""Assemble the wallpaper model folder (diffusers ONNX layout + cabin's display stage) from the
checkpoints the three training scripts leave in onnx/train/checkpoints/.

    onnx/.venv/bin/python onnx/train/export_model.py [--out onnx/wallpaper-tiny]

Writes tokenizer/, text_encoder/, unet/, vae_encoder/, vae_decoder/, upscaler/ (when its checkpoint
exists), scheduler/, model_index.json (with cabin's recommended steps and guidance),
train_info.json, MODEL_CARD.md and docs/wallpaper-samples*.png. Each ONNX file is checked against
torch with onnxruntime. manifest.json is written by the engine's own tool afterwards
(`cabin-wallpaper manifest`, see make_model.sh).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import export  # noqa: E402
import models  # noqa: E402
import scenes  # noqa: E402
from train import (LATENT_HW, MAX_LEN, OrtPipe, build_text_encoder, build_unet, folder_size,  # noqa: E402
                   load_checkpoint, load_tokenizer, log, onnx_export, ort_session, sanitise_configs, versions,
                   wrappers, write_model_index)

CK = HERE / "checkpoints"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "onnx" / "wallpaper-tiny")
    ap.add_argument("--checkpoints", type=Path, default=CK)
    ap.add_argument("--steps", type=int, default=12, help="recommended denoising steps")
    ap.add_argument("--guidance", type=float, default=1.5,
                    help="recommended guidance (1.5: best held-out adherence of 1.5, 2, 3 and 5 at 0.3.0)")
    ap.add_argument("--scheduler", default="ddim", choices=("ddim", "dpm++2m"))
    ap.add_argument("--samples", type=Path, default=ROOT / "docs", help="where the sample sheets go")
    return ap.parse_args()


def export_text_side(out: Path, text_encoder, unet, tok):
    te_wrap, unet_wrap, _, _ = wrappers()
    d = text_encoder.config.hidden_size
    ids = torch.from_numpy(tok(["snowy mountains at dusk"])).to(torch.int32)
    onnx_export(te_wrap(text_encoder), (ids,), out / "text_encoder" / "model.onnx", ["input_ids"],
                ["last_hidden_state", "pooler_output"], {"input_ids": {0: "batch", 1: "sequence"}},
                [["batch", "sequence", d], ["batch", d]])
    text_encoder.config.architectures = ["CLIPTextModel"]
    text_encoder.config.save_pretrained(out / "text_encoder")
    lc = unet.config.in_channels
    g = torch.Generator().manual_seed(123)
    onnx_export(unet_wrap(unet), (torch.randn(2, lc, *LATENT_HW, generator=g), torch.tensor([999.0, 500.0]),
                                  torch.randn(2, MAX_LEN, d, generator=g)),
                out / "unet" / "model.onnx", ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
                {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
                 "encoder_hidden_states": {0: "batch", 1: "sequence"}},
                [["batch", lc, "height", "width"]])
    unet.save_config(out / "unet")
    # the same inputs through onnxruntime and torch
    ids = tok(["snowy mountains at dusk", "", "换一张黄昏的雪山的壁纸"])
    emb = ort_session(out / "text_encoder" / "model.onnx").run(None, {"input_ids": ids.astype(np.int32)})[0]
    lat = torch.randn(3, lc, *LATENT_HW, generator=g)
    ts = np.array([999.0, 500.0, 20.0], np.float32)
    eps = ort_session(out / "unet" / "model.onnx").run(
        None, {"sample": lat.numpy(), "timestep": ts, "encoder_hidden_states": emb})[0]
    with torch.no_grad():
        emb_t = text_encoder(input_ids=torch.from_numpy(ids)).last_hidden_state.numpy()
        eps_t = unet(lat, torch.from_numpy(ts), torch.from_numpy(emb)).sample.numpy()
    return {"text_encoder": float(np.abs(emb - emb_t).max()), "unet": float(np.abs(eps - eps_t).max())}


def sample_sheet(pipe, upscaler_path, path: Path, lang, a, seed0=5000):
    """Every family x phase, one seed each, at native size (upscaled x6 views are evaluate.py's job)."""
    rows = []
    for phase in scenes.PHASES:
        prompts = [scenes.canonical({"family": f, "phase": phase, "styles": []}, lang) for f in scenes.FAMILIES]
        lat = pipe.latents(prompts, [seed0 + i for i in range(len(prompts))], a.scheduler,
                           a.steps, a.guidance)
        rows.append(np.concatenate(list(pipe.decode(lat)), 1))
    from PIL import Image

    sheet = (np.concatenate(rows, 0) * 255).round().astype(np.uint8)
    Image.fromarray(sheet).save(path)
    log(f"wrote {path} ({sheet.shape[1]}x{sheet.shape[0]})")


def sitting_lines(name, extra):
    out = []
    for s in extra.get("sittings", []):
        out.append(f"  - {name}: steps {s['from_step']}-{s['to_step']} in {s['seconds'] / 60:.0f} min on {s['machine']}, "
                   f"{s['threads']} thread(s), bf16 {'on' if s['bf16'] else 'off'} ({s['started']})")
    return out


def write_card(out: Path, info):
    ae, dn, up = info["autoencoder"], info["denoiser"], info.get("upscaler")
    hours = sum(x["seconds"] for x in (ae, dn, up) if x) / 3600
    lines = [
        "# wallpaper-tiny: cabin's in-house wallpaper model", "",
        "A small latent text-to-image diffusion model in the diffusers ONNX layout, trained from scratch on",
        "procedurally rendered scenes (`onnx/train/scenes.py`: ten families x four light phases x styles), with a",
        "learned display stage that lifts the 128x320 picture x6 for the 1920x720 centre display. No third-party",
        "weights or images: everything was made by `onnx/train/make_model.sh` on this repository's code, on CPUs",
        "(2 cores) in resumable sittings.", "",
        "## Parts", "",
        "| part | what | params |", "|---|---|---|",
        f"| tokenizer | byte-level BPE, {info['vocab']} tokens, max length {MAX_LEN} | - |",
        f"| text_encoder | CLIPTextModel, hidden {dn['text_dim']}, 3 layers | {info['params']['text_encoder']:,} |",
        f"| unet | UNet2DConditionModel {dn['unet_channels']}, latent {dn['latent_channels']}x{LATENT_HW[0]}x{LATENT_HW[1]} "
        f"| {info['params']['unet']:,} |",
        f"| vae | cabin autoencoder x8, {ae['latent_channels']} latent channels, pixel-norm residual blocks, "
        f"scaling_factor {dn['scaling_factor']:.4f} | enc {info['params']['vae_encoder']:,}, dec {info['params']['vae_decoder']:,} |",
        f"| upscaler | display stage x{info['upscale'] or '-'}: bilinear + learned residual | "
        f"{info['params'].get('upscaler', 0):,} |",
        "", "| file | size |", "|---|---|",
    ]
    for rel, size in sorted(info["files"].items()):
        lines.append(f"| `{rel}` | {size / 2**20:.2f} MiB |")
    lines += [
        "", f"Recommended: **{info['scheduler']}, {info['steps']} steps, guidance {info['guidance']}**.", "",
        "## How it was made", "",
        f"`onnx/train/make_model.sh`, {hours:.1f} training hours in all:",
        f"- autoencoder: {ae['step']} steps of 8 random 128x128 crops; edge-weighted L1 + gradient L1 + tiny KL, "
        f"PatchGAN after 60 %; validation PSNR {ae.get('val_psnr_db', float('nan')):.2f} dB on full frames.",
        f"- denoiser: {dn['step']} steps of {dn['batch']} (v-prediction, cosine schedule, EMA); loss {dn.get('loss', float('nan')):.4f}."
        + (f" The last {dn['step'] - dn['tune_from']:,} steps (from {dn['tune_from']:,}, a second cosine from "
           f"{dn['tune_lr']:.1e}) read captions from the widened lexicon of `scenes.py` (everyday words and time "
           "phrases said as events, both languages)." if dn.get("tune_from") and dn["step"] > dn["tune_from"] else ""),
        "- Choices (lexicon, guidance, checkpoints) are made on `onnx/train/dev_prompts.json`; the held-out figures "
        "below are on `onnx/train/eval_prompts.json`, worded apart from both the captions and the dev set.",
    ]
    if up:
        lines.append(f"- upscaler: {up['step']} steps; validation PSNR {up.get('val_psnr_db', float('nan')):.2f} dB "
                     f"against the renderer's 768x1920 drawing (bilinear: {up.get('bilinear_psnr_db', float('nan')):.2f} dB).")
    lines += ["", "Sittings:"] + sitting_lines("autoencoder", ae) + sitting_lines("denoiser", dn) + \
        (sitting_lines("upscaler", up) if up else [])
    lines += ["", "## Checks at export", "",
              "onnxruntime vs torch, max |diff|: " + ", ".join(f"{k} {v:.1e}" for k, v in info["diffs"].items()),
              "", "## Evaluation at 1920x720", "",
              "Not yet run on this export: `onnx/train/evaluate.py --card` writes this section "
              "(`make_model.sh` does), figures in full in `docs/wallpaper-eval.json`.", "",
              "## What it cannot do", "",
              "- It draws the ten families the renderer knows (sea, mountains, starry sky, city, forest, desert, "
              "aurora, lake, rainy city, cherry blossom) in four lights and a few styles. Anything else (people, "
              "animals, cars, text, a named place) comes out as the nearest family, chosen by the words it knows.",
              "- It is a 5.6 M-parameter model trained on CPUs: shapes are soft (snowy peaks read as bright clouds, "
              "trees as a textured band), and night pictures are dark on purpose (they follow the night cap of the "
              "cockpit) with little detail.",
              "- The display stage lifts 128x320 to 768x1920 with learned sharpening, not new detail: what the 8x "
              "autoencoder lost is not brought back.",
              "- Prompts are read through a 2048-token byte-level BPE trained on the captions: long sentences are "
              "cut at 32 tokens, and a word it never saw counts only through its pieces.", "",
              "Licence: made in-house from this repository's code and data generator; MIT OR Apache-2.0, as the repository."]
    (out / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")


def main():
    a = parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    ck_ae = load_checkpoint(a.checkpoints / "autoencoder.pt")
    ck_dn = load_checkpoint(a.checkpoints / "denoiser.pt")
    up_path = a.checkpoints / "upscaler.pt"
    ck_up = load_checkpoint(up_path) if list(up_path.parent.glob(up_path.name + ".part*")) else None
    dn = ck_dn["extra"]
    if "tune_from" not in dn:  # checkpoints saved before the settings were recorded with them
        import train_denoiser
        dn |= {"tune_from": train_denoiser.tune_from, "tune_lr": train_denoiser.tune_lr}
    if dn["autoencoder_step"] != ck_ae["step"]:
        log(f"warning: the denoiser was trained on autoencoder step {dn['autoencoder_step']}, not {ck_ae['step']}")
    tok = load_tokenizer(a.checkpoints / "tokenizer")
    ae = models.Autoencoder(ck_ae["extra"]["latent_channels"])
    ae.load_state_dict({k: v.float() for k, v in ck_ae["ae"].items()})
    text_encoder = build_text_encoder(dn["text_dim"], tok.vocab_size, tok)
    unet = build_unet(dn["latent_channels"], dn["unet_channels"], dn["text_dim"])
    text_encoder.load_state_dict({k: v.float() for k, v in ck_dn["text_encoder_ema"].items()})
    unet.load_state_dict({k: v.float() for k, v in ck_dn["unet_ema"].items()})
    text_encoder.eval()
    unet.eval()

    out = a.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    (out / "tokenizer").mkdir(parents=True)
    for f in (a.checkpoints / "tokenizer").iterdir():
        shutil.copy(f, out / "tokenizer" / f.name)
    diffs = export_text_side(out, text_encoder, unet, tok)
    diffs |= export.export_autoencoder(ae, out, dn["scaling_factor"], (scenes.H, scenes.W))
    params = {"text_encoder": models.nparams(text_encoder), "unet": models.nparams(unet),
              "vae_encoder": models.nparams(ae.encoder), "vae_decoder": models.nparams(ae.decoder)}
    upscale = None
    if ck_up is not None:
        up = models.Upscaler()
        up.load_state_dict({k: v.float() for k, v in ck_up["upscaler"].items()})
        diffs["upscaler"] = export.export_upscaler(up, out / "upscaler")
        params["upscaler"] = models.nparams(up)
        upscale = up.scale
    for k, v in diffs.items():
        log(f"onnxruntime vs torch {k:12s}: max |diff| {v:.2e}")
    write_model_index(out, {"steps": a.steps, "guidance": a.guidance, "scheduler": a.scheduler}, a.scheduler)
    sanitise_configs(out)

    pipe = OrtPipe(out, tok, dn["scaling_factor"])
    a.samples.mkdir(parents=True, exist_ok=True)
    for lang, name in (("en", "wallpaper-samples.png"), ("zh", "wallpaper-samples_zh.png")):
        sample_sheet(pipe, out / "upscaler", a.samples / name, lang, a)

    files = {str(p.relative_to(out)): p.stat().st_size for p in out.rglob("*.onnx")}
    info = {"autoencoder": ck_ae["extra"] | {"step": ck_ae["step"], "seconds": ck_ae["seconds"]},
            "denoiser": dn | {"step": ck_dn["step"], "seconds": ck_dn["seconds"]},
            "upscaler": (ck_up["extra"] | {"step": ck_up["step"], "seconds": ck_up["seconds"]}) if ck_up else None,
            "vocab": tok.vocab_size, "params": params, "upscale": upscale, "files": files, "diffs": diffs,
            "steps": a.steps, "guidance": a.guidance, "scheduler": a.scheduler, "versions": versions(),
            "folder_bytes": folder_size(out)}
    (out / "train_info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False, default=str) + "\n")
    write_card(out, info)
    log(f"exported {out} ({folder_size(out) / 2**20:.1f} MiB) in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
