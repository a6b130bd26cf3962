#!/usr/bin/env python3
"""Train the wallpaper model's autoencoder (models.Autoencoder) on rendered scenes, on 2 CPU cores.

    onnx/.venv/bin/python onnx/train/train_autoencoder.py [--sitting-minutes 120] [--fresh]

Resumes from the last checkpoint by default and stops after --sitting-minutes (or on Ctrl-C /
SIGTERM), saving first, so the total of --steps can be spread over several sittings (sitting.py:
full state on this machine, fp16 weights in the repository at onnx/train/checkpoints/). A GPU, when
present, is used by the same command and only makes it sooner.

Loss: edge-weighted L1 + gradient L1 + a tiny KL, with posterior noise so the decoder tolerates the
denoiser's imprecise latents; after --adv-from of the steps a PatchGAN critic joins (hinge loss, the
adaptive weight of taming-transformers / SD's VAE) for the texture L1 averages away.
"""

from __future__ import annotations

import argparse
import math
import os
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
from train import ae_losses, log, render_set, to_tensor  # noqa: E402

# ---- settings (each one is a --flag) -----------------------------------------------------------
steps = 40_000            # optimiser steps over all sittings
batch = 8                 # crops per step
crop = (128, 128)         # H x W of a training crop (random position, random horizontal flip)
lr = 4e-4
warmup = 300              # steps; also after a resume without optimiser state
kl_weight = 1e-5
adv_weight = 0.5          # PatchGAN weight (0: off), relative to the reconstruction gradient
adv_from = 0.6            # share of the steps before the critic joins
pool = 6000               # rendered training scenes held in RAM (a fresh pool each sitting)
data_seed = 20261206
val_frames = 48
# -------------------------------------------------------------------------------------------------


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = globals()
    for name in ("steps", "batch", "lr", "warmup", "kl_weight", "adv_weight", "adv_from", "pool", "data_seed",
                 "val_frames"):
        ap.add_argument("--" + name.replace("_", "-"), type=type(g[name]), default=g[name])
    add_sitting_args(ap, HERE / "checkpoints" / "autoencoder.pt")
    return ap.parse_args()


def psnr(ae, frames, dev):
    ae.eval()
    mse = []
    with torch.no_grad():
        for i in range(0, len(frames), 16):
            x = to_tensor(frames[i:i + 16], dev)
            xr = ae.decode(ae.encode(x)[0]).clamp(-1, 1)
            mse.append(((xr - x) / 2).pow(2).flatten(1).mean(1))
    ae.train()
    return 10 * math.log10(1 / max(torch.cat(mse).mean().item(), 1e-10))


def random_crops(rng, imgs, n, ch, cw):
    idx = rng.integers(0, len(imgs), n)
    oy = rng.integers(0, imgs.shape[1] - ch + 1, n)
    ox = rng.integers(0, imgs.shape[2] - cw + 1, n)
    out = np.stack([imgs[i, y:y + ch, x:x + cw] for i, y, x in zip(idx, oy, ox)])
    flip = rng.uniform(size=n) < 0.5
    out[flip] = out[flip, :, ::-1]
    return out


def main():
    a = parse_args()
    dev, autocast, bf16 = device_and_autocast(a)
    ae = models.Autoencoder().to(dev)
    disc = models.patch_discriminator().to(dev)
    opt = torch.optim.AdamW(ae.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=0.0)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=a.lr, betas=(0.5, 0.9))
    sit = Sitting("autoencoder", a, {"ae": ae, "disc": disc}, {"opt": opt, "opt_d": opt_d}, dev, bf16)
    if sit.step >= a.steps:
        log(f"already at step {sit.step} of {a.steps}: nothing to do")
        return

    t = time.time()
    procs = max(1, min(os.cpu_count() or 1, 16))
    imgs, _ = render_set(a.pool, a.data_seed + 1 + sit.step, procs)  # a fresh pool each sitting, reproducibly
    val, _ = render_set(a.val_frames, a.data_seed, 1)
    log(f"device {dev}, {torch.get_num_threads()} threads, bf16 {'on' if bf16 else 'off'}; rendered {len(imgs)} + "
        f"{len(val)} scenes in {time.time() - t:.0f} s; AE {models.nparams(ae.encoder):,} + "
        f"{models.nparams(ae.decoder):,} params")

    rng = np.random.default_rng([a.data_seed, sit.step])
    val_psnr = psnr(ae, val, dev)
    log(f"step {sit.step}/{a.steps}: val PSNR {val_psnr:.2f} dB")
    progress = Progress(a.steps, sit.step)
    hist, skipped = [], 0
    while sit.going(a.steps):
        frac = sit.step / a.steps
        for o in (opt, opt_d):
            for g in o.param_groups:
                g["lr"] = cosine_lr(sit.step, a.steps, a.lr, sit.warm_from, a.warmup)
        x = to_tensor(random_crops(rng, imgs, a.batch, *crop), dev)
        with autocast:
            mean, logvar = (t.float() for t in ae.encode(x))
            std = (0.5 * logvar).exp()
            noise = min(1.0, 0.05 + frac * 3)  # posterior noise ramped in once the codes mean something
            z = mean + noise * std * torch.randn_like(mean)
            xr = ae.decode(z).float()
        l1, grad = ae_losses(xr, x)
        kl = 0.5 * (mean.pow(2) + std.pow(2) - 1.0 - logvar).mean()
        loss = l1 + grad + a.kl_weight * kl
        adversarial = a.adv_weight > 0 and frac >= a.adv_from
        lam = torch.zeros(())
        if adversarial:
            adv, lam = models.adversarial_loss(disc, xr, l1 + grad, ae.decoder.out.weight, a.adv_weight, autocast)
            loss = loss + adv
        if not torch.isfinite(loss):
            skipped += 1  # a rare bad batch must not poison the weights; many mean divergence
            if skipped > 20:
                raise SystemExit(f"loss not finite {skipped} times by step {sit.step}: lower --lr and resume")
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        d_loss = torch.zeros(())
        if adversarial:
            d_loss = models.critic_step(disc, opt_d, x, xr, autocast)
        sit.step += 1
        hist.append((l1.item(), grad.item(), kl.item(), d_loss.item(), lam.item()))
        if sit.due():
            val_psnr = psnr(ae, val, dev)
            sit.save(val_psnr_db=val_psnr, latent_channels=ae.latent)
        m = np.mean(hist[-100:], 0)
        adv = f" d-loss {m[3]:.3f} adv-w {m[4]:.3f}" if adversarial else ""
        progress.maybe(sit.step, f"l1w {m[0]:.4f} grad {m[1]:.4f} kl {m[2]:.1f}{adv} "
                       f"lr {opt.param_groups[0]['lr']:.1e}, last val PSNR {val_psnr:.2f} dB",
                       a.batch * crop[0] * crop[1] / (scenes.H * scenes.W), "frames")
    val_psnr = psnr(ae, val, dev)
    sit.save(val_psnr_db=val_psnr, latent_channels=ae.latent)
    log(f"stopped ({sit.why_stopped(a.steps)}) at step {sit.step}/{a.steps}: val PSNR {val_psnr:.2f} dB; "
        f"{sit.seconds / 3600:.2f} h trained in all; checkpoint {a.checkpoint}.part*")
    return 0 if sit.step >= a.steps else 75  # EX_TEMPFAIL: more sittings needed


if __name__ == "__main__":
    sys.exit(main())
