#!/usr/bin/env python3
"""Train the wallpaper model's display stage (models.Upscaler, x6) on pairs the renderer makes.

    onnx/.venv/bin/python onnx/train/train_upscaler.py [--sitting-minutes 120] [--fresh]

A pair is one scene drawn twice: at the model's native 128x320, passed through the trained
autoencoder (checkpoints/autoencoder.pt) so the input has exactly the blur and artefacts the
decoder leaves; and drawn crisply at 768x1920 by the renderer (scenes.py draws at any size with the
same composition). The upscaler learns to go from the first to the second: sharp silhouettes,
windows, stars and rain back at display size, and the decoder's artefacts gone.

The pairs are made once per autoencoder checkpoint (the 768x1920 renders are the expensive part)
and kept under --state-dir; crops of them feed training. Resumable in sittings like the
autoencoder (sitting.py); a GPU, when present, only makes it sooner.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
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
from train import ae_losses, load_checkpoint, log, plan_scenes, to_tensor  # noqa: E402

# ---- settings (each one is a --flag) -----------------------------------------------------------
steps = 20_000
batch = 8
crop = (48, 64)           # input crop (native pixels); the target is 6x that
crops_per_scene = 4       # display-size crops kept per rendered pair
pairs = 1600              # scenes rendered at both sizes (about 1 s each at 768x1920 on one core)
val_pairs = 48
lr = 5e-4
warmup = 300
adv_weight = 0.3          # PatchGAN on the display-size output (0: off)
adv_from = 0.5
input_noise = 0.01        # a little noise on the input, as a generated picture is never exactly a reconstruction
data_seed = 20261207
scale = 6
# -------------------------------------------------------------------------------------------------


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = globals()
    for name in ("steps", "batch", "crops_per_scene", "pairs", "val_pairs", "lr", "warmup", "adv_weight",
                 "adv_from", "input_noise", "data_seed"):
        ap.add_argument("--" + name.replace("_", "-"), type=type(g[name]), default=g[name])
    ap.add_argument("--autoencoder", type=Path, default=HERE / "checkpoints" / "autoencoder.pt")
    ap.add_argument("--prepare-only", action="store_true",
                    help="render and encode the pairs into --state-dir, then stop (e.g. on a spare core "
                         "while another stage trains)")
    add_sitting_args(ap, HERE / "checkpoints" / "upscaler.pt")
    return ap.parse_args()


def _render_pair(job):
    """Native render + display-size crops of the same scene (in a worker process)."""
    seed, meta, boxes = job
    low = scenes.render(np.random.default_rng(seed), meta)
    high = scenes.render(np.random.default_rng(seed), meta, size=(scenes.H * scale, scenes.W * scale))
    ch, cw = crop
    return low, np.stack([high[y * scale:(y + ch) * scale, x * scale:(x + cw) * scale] for y, x in boxes])


def make_pairs(ae, n, seed, k, dev, procs):
    metas, seeds = plan_scenes(n, seed)
    rng = np.random.default_rng(seed)
    ch, cw = crop
    boxes = np.stack([rng.integers(0, scenes.H - ch + 1, (n, k)), rng.integers(0, scenes.W - cw + 1, (n, k))], -1)
    jobs = list(zip(seeds.tolist(), metas, boxes.tolist()))
    t = time.time()
    if procs > 1:
        with mp.get_context("fork").Pool(procs) as pool:
            out = pool.map(_render_pair, jobs, chunksize=4)
    else:
        out = [_render_pair(j) for j in jobs]
    lows = np.stack([o[0] for o in out])
    highs = np.stack([o[1] for o in out])
    log(f"rendered {n} pairs in {time.time() - t:.0f} s")
    recon = np.empty_like(lows)
    with torch.no_grad():
        for i in range(0, n, 16):
            x = to_tensor(lows[i:i + 16], dev)
            xr = ae.decode(ae.encode(x)[0]).clamp(-1, 1)
            recon[i:i + 16] = ((xr + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
    return recon, highs, boxes


def cached_pairs(a, ae, ae_step, n, seed, dev, procs):
    """Pairs for this autoencoder checkpoint and renderer, made once and kept in --state-dir."""
    path = a.state_dir / f"upscaler-pairs-{scenes.fingerprint()}-ae{ae_step}-{n}x{a.crops_per_scene}-{seed}.npz"
    if path.exists():
        d = np.load(path)
        return d["recon"], d["highs"], d["boxes"]
    recon, highs, boxes = make_pairs(ae, n, seed, a.crops_per_scene, dev, procs)
    a.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, recon=recon, highs=highs, boxes=boxes)
    os.replace(tmp, path)
    return recon, highs, boxes


def batch_of(rng, recon, highs, boxes, n):
    ch, cw = crop
    i = rng.integers(0, len(recon), n)
    j = rng.integers(0, highs.shape[1], n)
    x = np.stack([recon[a, y:y + ch, z:z + cw] for a, (y, z) in zip(i, boxes[i, j])])
    y = highs[i, j]
    flip = rng.uniform(size=n) < 0.5
    x[flip], y[flip] = x[flip, :, ::-1], y[flip, :, ::-1]
    return x, y


def psnr_pair(model, recon, highs, boxes, dev):
    """PSNR of the upscaler and of plain bilinear on held-out crops, in dB."""
    model.eval()
    mse_model, mse_bilinear = [], []
    with torch.no_grad():
        for i in range(len(recon)):
            for j in range(highs.shape[1]):
                y0, x0 = boxes[i, j]
                x = to_tensor(recon[i:i + 1, y0:y0 + crop[0], x0:x0 + crop[1]], dev)
                target = to_tensor(highs[i:i + 1, j], dev)
                out = model(x).clamp(-1, 1)
                lin = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
                mse_model.append(((out - target) / 2).pow(2).mean().item())
                mse_bilinear.append(((lin - target) / 2).pow(2).mean().item())
    model.train()
    return tuple(10 * math.log10(1 / max(np.mean(m), 1e-10)) for m in (mse_model, mse_bilinear))


def main():
    a = parse_args()
    dev, autocast, bf16 = device_and_autocast(a)
    ck = load_checkpoint(a.autoencoder)
    ae = models.Autoencoder(ck["extra"]["latent_channels"]).to(dev).eval()
    ae.load_state_dict({k: v.float() for k, v in ck["ae"].items()})

    if a.prepare_only:
        procs = max(1, min(a.threads, os.cpu_count() or 1))
        for n, seed in ((a.pairs, a.data_seed), (a.val_pairs, a.data_seed + 1)):
            cached_pairs(a, ae, ck["step"], n, seed, dev, procs)
        log(f"pairs ready in {a.state_dir} for autoencoder step {ck['step']}")
        return 0

    model = models.Upscaler(scale=scale).to(dev)
    disc = models.patch_discriminator().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.99), weight_decay=0.0)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=a.lr, betas=(0.5, 0.9))
    sit = Sitting("upscaler", a, {"upscaler": model, "disc": disc}, {"opt": opt, "opt_d": opt_d}, dev, bf16)
    if sit.step >= a.steps:
        log(f"already at step {sit.step} of {a.steps}: nothing to do")
        return
    procs = max(1, min(os.cpu_count() or 1, 16))
    recon, highs, boxes = cached_pairs(a, ae, ck["step"], a.pairs, a.data_seed, dev, procs)
    vrecon, vhighs, vboxes = cached_pairs(a, ae, ck["step"], a.val_pairs, a.data_seed + 1, dev, procs)
    log(f"device {dev}, {torch.get_num_threads()} threads, bf16 {'on' if bf16 else 'off'}; {len(recon)} pairs "
        f"(autoencoder step {ck['step']}); upscaler {models.nparams(model):,} params")
    val = psnr_pair(model, vrecon, vhighs, vboxes, dev)
    log(f"step {sit.step}/{a.steps}: val PSNR {val[0]:.2f} dB (bilinear {val[1]:.2f} dB)")

    rng = np.random.default_rng([a.data_seed, sit.step])
    progress = Progress(a.steps, sit.step)
    hist = []
    while sit.going(a.steps):
        frac = sit.step / a.steps
        for o in (opt, opt_d):
            for g in o.param_groups:
                g["lr"] = cosine_lr(sit.step, a.steps, a.lr, sit.warm_from, a.warmup)
        xb, yb = batch_of(rng, recon, highs, boxes, a.batch)
        x, target = to_tensor(xb, dev), to_tensor(yb, dev)
        x = x + a.input_noise * torch.randn_like(x)
        with autocast:
            out = model(x).float()
        l1, grad = ae_losses(out, target)
        loss = l1 + grad
        adversarial = a.adv_weight > 0 and frac >= a.adv_from
        lam = torch.zeros(())
        if adversarial:
            adv, lam = models.adversarial_loss(disc, out, l1 + grad, model.up.weight, a.adv_weight, autocast)
            loss = loss + adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        d_loss = torch.zeros(())
        if adversarial:
            d_loss = models.critic_step(disc, opt_d, target, out, autocast)
        sit.step += 1
        hist.append((l1.item(), grad.item(), d_loss.item(), lam.item()))
        if sit.due():
            val = psnr_pair(model, vrecon, vhighs, vboxes, dev)
            sit.save(val_psnr_db=val[0], bilinear_psnr_db=val[1], autoencoder_step=ck["step"])
        m = np.mean(hist[-100:], 0)
        adv = f" d-loss {m[2]:.3f} adv-w {m[3]:.3f}" if adversarial else ""
        progress.maybe(sit.step, f"l1w {m[0]:.4f} grad {m[1]:.4f}{adv} lr {opt.param_groups[0]['lr']:.1e}, "
                       f"last val PSNR {val[0]:.2f} dB (bilinear {val[1]:.2f})", a.batch, "crops")
    val = psnr_pair(model, vrecon, vhighs, vboxes, dev)
    sit.save(val_psnr_db=val[0], bilinear_psnr_db=val[1], autoencoder_step=ck["step"])
    log(f"stopped ({sit.why_stopped(a.steps)}) at step {sit.step}/{a.steps}: val PSNR {val[0]:.2f} dB "
        f"(bilinear {val[1]:.2f}); {sit.seconds / 3600:.2f} h trained in all; checkpoint {a.checkpoint}.part*")
    return 0 if sit.step >= a.steps else 75  # EX_TEMPFAIL: more sittings needed


if __name__ == "__main__":
    sys.exit(main())
