#!/usr/bin/env python3
"""Train the wallpaper model's text encoder + UNet on the trained autoencoder's latents.

    onnx/.venv/bin/python onnx/train/train_denoiser.py [--sitting-minutes 120] [--fresh]

The scene set is rendered once per autoencoder checkpoint and encoded (posterior mean and
log-variance, fp16) into --state-dir. Every step draws a fresh caption for each scene (scenes.py:
English and Chinese, many phrasings), so the text side sees far more variety than the pictures.
v-prediction on the cosine schedule, x0-weight min(SNR, 5) + 1, 10% empty captions for
classifier-free guidance, EMA weights (what is exported). Resumable in sittings (sitting.py); a GPU,
when present, only makes it sooner.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models  # noqa: E402
import scenes  # noqa: E402
from sitting import Progress, Sitting, add_sitting_args, cosine_lr, device_and_autocast  # noqa: E402
from train import (T_TRAIN, Ema, alphas_cumprod, build_text_encoder, build_tokenizer, build_unet,  # noqa: E402
                   load_checkpoint, load_tokenizer, log, render_set, to_tensor)

# ---- settings (each one is a --flag) -----------------------------------------------------------
steps = 27_500            # x 32 = 880k samples; ~10 h at the 0.4-0.8 steps/s measured here (1 or 2 threads)
batch = 32
lr = 4e-4
warmup = 300
tune_from = 24_000        # from here a second, shorter cosine at tune_lr: 0.4 went on from 0.3's finished
tune_lr = 1.5e-4          # 24,000 steps with the widened caption lexicon (scenes.py) rather than start over
ema = 0.999
cond_drop = 0.1
word_drop = 0.12          # after tune_from: each English word of a caption dropped with this chance, and
fake_words = 0.25         # this share of captions gets a made-up word: no single phrase carries a caption
scenes_n = 12_000         # rendered scenes, encoded once per autoencoder checkpoint
unet_channels = "64,96,128"
text_dim = 128
vocab = 2048              # BPE ids: 1024 split most Chinese characters into 2+ byte tokens
data_seed = 20261208
# -------------------------------------------------------------------------------------------------


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = globals()
    for name in ("steps", "batch", "lr", "warmup", "tune_from", "tune_lr", "word_drop", "fake_words", "ema", "cond_drop", "scenes_n", "unet_channels", "text_dim",
                 "vocab", "data_seed"):
        ap.add_argument("--" + name.replace("_", "-"), type=type(g[name]), default=g[name])
    ap.add_argument("--autoencoder", type=Path, default=HERE / "checkpoints" / "autoencoder.pt")
    add_sitting_args(ap, HERE / "checkpoints" / "denoiser.pt")
    return ap.parse_args()


def encoded_scenes(a, ae, ae_step, dev):
    """(metas, mean, logvar) of the rendered scene set for this autoencoder checkpoint, cached."""
    path = a.state_dir / f"denoiser-latents-{scenes.fingerprint()}-ae{ae_step}-{a.scenes_n}-{a.data_seed}.pt"
    if path.exists():
        d = torch.load(path, weights_only=False)
        return d["metas"], d["mean"], d["logvar"]
    t = time.time()
    imgs, metas = render_set(a.scenes_n, a.data_seed, max(1, min(os.cpu_count() or 1, 16)))
    means, logvars = [], []
    with torch.no_grad():
        for i in range(0, len(imgs), 32):
            m, lv = ae.encode(to_tensor(imgs[i:i + 32], dev))
            means.append(m.half().cpu())
            logvars.append(lv.half().cpu())
    mean, logvar = torch.cat(means), torch.cat(logvars)
    log(f"rendered and encoded {len(imgs)} scenes in {time.time() - t:.0f} s")
    a.state_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"metas": metas, "mean": mean, "logvar": logvar}, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return metas, mean, logvar


def lr_at(a, step, warm_from):
    """Cosine from lr over the first tune_from steps, then a second cosine from tune_lr to the end."""
    if step < a.tune_from or a.tune_from <= 0:
        return cosine_lr(step, min(a.tune_from, a.steps) if a.tune_from > 0 else a.steps, a.lr, warm_from, a.warmup)
    return cosine_lr(step - a.tune_from, a.steps - a.tune_from, a.tune_lr, max(warm_from - a.tune_from, 0), a.warmup)


def roughen(rng, text, word_drop, fake_words):
    """A caption as people also say it: some words left out, an unknown word in. English only (a
    Chinese caption has no spaces, and its characters already carry meaning one by one). Teaches
    the text encoder to read every word it knows instead of whole memorised phrases."""
    words = text.split(" ")
    if len(words) < 3 or not text.isascii():
        return text
    kept = [w for w in words if rng.uniform() >= word_drop] or words[:1]
    if rng.uniform() < fake_words:
        letters = "bcdfghjklmnprstvwz"[rng.integers(0, 18)] + "".join(
            "aeiou"[rng.integers(0, 5)] + "bcdfghklmnprstvz"[rng.integers(0, 16)] for _ in range(rng.integers(1, 4)))
        kept.insert(int(rng.integers(0, len(kept) + 1)), letters)
    return " ".join(kept)


def tokenizer_for(a):
    """The BPE tokenizer is a pure function of the data seed; it is kept beside the checkpoint so an
    export never depends on re-training it the same way."""
    kept = a.checkpoint.parent / "tokenizer"
    if not (kept / "tokenizer.json").exists():
        tmp = a.state_dir / "tokenizer-build"
        build_tokenizer(tmp, a.data_seed, a.vocab)
        kept.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            shutil.copy(f, kept / f.name)
    return load_tokenizer(kept)


def main():
    a = parse_args()
    dev, autocast, bf16 = device_and_autocast(a)
    ck = load_checkpoint(a.autoencoder)
    latent = ck["extra"]["latent_channels"]
    ae = models.Autoencoder(latent).to(dev).eval()
    ae.load_state_dict({k: v.float() for k, v in ck["ae"].items()})
    tok = tokenizer_for(a)

    torch.manual_seed(a.data_seed)
    text_encoder = build_text_encoder(a.text_dim, tok.vocab_size, tok).to(dev).train()
    unet = build_unet(latent, a.unet_channels, a.text_dim).to(dev).train()
    text_ema = build_text_encoder(a.text_dim, tok.vocab_size, tok).to(dev).eval()
    unet_ema = build_unet(latent, a.unet_channels, a.text_dim).to(dev).eval()
    text_ema.load_state_dict(text_encoder.state_dict())
    unet_ema.load_state_dict(unet.state_dict())
    params = list(text_encoder.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), weight_decay=0.01)
    sit = Sitting("denoiser", a, {"text_encoder": text_encoder, "unet": unet, "text_encoder_ema": text_ema,
                                  "unet_ema": unet_ema}, {"opt": opt}, dev, bf16)
    if sit.step >= a.steps:
        log(f"already at step {sit.step} of {a.steps}: nothing to do")
        return
    ema_updater = Ema([text_encoder, unet], a.ema)
    ema_updater.models = [text_ema, unet_ema]
    ema_updater.step = sit.step

    metas, mean, logvar = encoded_scenes(a, ae, ck["step"], dev)
    mean, logvar = mean.to(dev), logvar.to(dev)
    # scaling_factor: unit variance of the posterior samples, measured once and kept with the weights
    sf = sit.extra.get("scaling_factor") or float(
        1.0 / (mean.float() + (0.5 * logvar.float()).exp() * torch.randn_like(mean.float())).std())
    log(f"device {dev}, {torch.get_num_threads()} threads, bf16 {'on' if bf16 else 'off'}; {len(metas)} scenes, "
        f"latent {tuple(mean.shape[1:])}, scaling_factor {sf:.4f}; UNet {models.nparams(unet):,} + text encoder "
        f"{models.nparams(text_encoder):,} params; autoencoder step {ck['step']}")

    facts = {"scaling_factor": sf, "latent_channels": latent, "autoencoder_step": ck["step"],
             "unet_channels": a.unet_channels, "text_dim": a.text_dim, "batch": a.batch,
             "tune_from": a.tune_from, "tune_lr": a.tune_lr, "word_drop": a.word_drop, "fake_words": a.fake_words}
    ac = alphas_cumprod().to(dev)
    sqrt_ac, sqrt_1m = ac.sqrt().float(), (1 - ac).sqrt().float()
    snr = (ac / (1 - ac)).float()
    w_t = (torch.clamp(snr, max=5.0) + 1) / (snr + 1)  # v-loss weights: x0-weight min(snr, 5) + 1
    empty = tok([""])[0]
    rng = np.random.default_rng([a.data_seed, sit.step])
    gen = torch.Generator(device=dev).manual_seed(a.data_seed + sit.step)
    progress = Progress(a.steps, sit.step)
    hist = []
    while sit.going(a.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(a, sit.step, sit.warm_from)
        idx = rng.integers(0, len(metas), a.batch)
        texts = [scenes.caption(rng, metas[i]) for i in idx]
        if 0 < a.tune_from <= sit.step:
            texts = [roughen(rng, t, a.word_drop, a.fake_words) for t in texts]
        ids = tok(texts)
        ids[rng.uniform(0, 1, a.batch) < a.cond_drop] = empty
        idx_t = torch.from_numpy(idx).to(dev)
        m, lv = mean[idx_t].float(), logvar[idx_t].float()
        z0 = (m + (0.5 * lv).exp() * torch.randn(m.shape, generator=gen, device=dev)) * sf
        t = torch.randint(0, T_TRAIN, (a.batch,), generator=gen, device=dev)
        noise = torch.randn(z0.shape, generator=gen, device=dev)
        sa, s1 = sqrt_ac[t].view(-1, 1, 1, 1), sqrt_1m[t].view(-1, 1, 1, 1)
        zt = sa * z0 + s1 * noise
        v = sa * noise - s1 * z0
        with autocast:
            hidden = text_encoder(input_ids=torch.from_numpy(ids).to(dev)).last_hidden_state
            pred = unet(zt, t, hidden).sample.float()
        loss = (w_t[t] * (pred - v).pow(2).mean((1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_updater.update()
        sit.step += 1
        hist.append(loss.item())
        if sit.due():
            sit.save(loss=float(np.mean(hist[-500:])), **facts)
        progress.maybe(sit.step, f"loss {np.mean(hist[-200:]):.4f} lr {opt.param_groups[0]['lr']:.1e}",
                       a.batch, "samples")
    sit.save(loss=float(np.mean(hist[-500:])), **facts)
    log(f"stopped ({sit.why_stopped(a.steps)}) at step {sit.step}/{a.steps}: loss {np.mean(hist[-500:]):.4f}; "
        f"{sit.seconds / 3600:.2f} h trained in all; checkpoint {a.checkpoint}.part*")
    return 0 if sit.step >= a.steps else 75  # EX_TEMPFAIL: more sittings needed


if __name__ == "__main__":
    sys.exit(main())
