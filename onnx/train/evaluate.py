#!/usr/bin/env python3
"""Prompt adherence of an exported wallpaper model, measured by a scene classifier that has
only ever seen renderer output (never a generated image).

    onnx/.venv/bin/python onnx/train/evaluate.py [--model onnx/wallpaper-tiny] [--seeds 8] [--out docs/wallpaper-eval.json]

1. Renders a fresh labelled scene set (its own data seed, disjoint from training) and trains a
   small CNN to tell the 10 families and the 4 phases apart; reports its accuracy on held-out
   renders (the classifier must be good before it can judge the model).
2. Runs the held-out renders through the model's autoencoder alone and classifies them: the
   ceiling the autoencoder sets for any denoiser (fine texture it cannot carry is lost for both).
3. Generates every family x phase x {en, zh} canonical prompt x N seeds with the model's
   recommended scheduler, steps and guidance (onnxruntime, the same ONNX files the Rust engine
   runs), classifies each picture and reports family agreement, phase agreement, the mean
   luminance per phase, and the diversity between seeds (mean pixel distance between two
   seeds of the same prompt).

Build tooling only: nothing at run time or in cargo test runs this.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import scenes  # noqa: E402
import train  # noqa: E402


RENDER_SEED, VAL_SEED = 777001, 777002


def classifier_net():
    import torch.nn as nn

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(block(3, 24), block(24, 48), block(48, 64), block(64, 96), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(96, len(scenes.FAMILIES) + len(scenes.PHASES)))


def train_classifier(imgs, metas, steps, seed):
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    x = torch.tensor(np.asarray(imgs), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    x = nn.functional.interpolate(x, size=(64, 160), mode="area")
    yf = torch.tensor([scenes.FAMILIES.index(m["family"]) for m in metas])
    yp = torch.tensor([scenes.PHASES.index(m["phase"]) for m in metas])
    net = classifier_net()
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    rng = np.random.default_rng(seed)
    net.train()
    for _ in range(steps):
        idx = torch.tensor(rng.integers(0, len(x), 64))
        xb = x[idx]
        if rng.uniform() < 0.5:
            xb = xb.flip(3)
        out = net(xb)
        loss = nn.functional.cross_entropy(out[:, :10], yf[idx]) + nn.functional.cross_entropy(out[:, 10:], yp[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def classifier(renders, steps, seed, cache: Path | None = None):
    """predict(images) -> (family ids, phase ids), from a small CNN trained on `renders` fresh
    renders only. With `cache`, the trained weights are kept there and reused by a later run that
    asks for the same renders, steps and seed (training takes minutes on 2 cores)."""
    import torch
    import torch.nn as nn

    key = {"renders": renders, "render_seed": RENDER_SEED, "steps": steps, "seed": seed}
    net = None
    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=False)
        if saved.get("key") == key:
            net = classifier_net()
            net.load_state_dict(saved["net"])
            net.eval()
    if net is None:
        imgs, metas = train.render_set(renders, RENDER_SEED, 2)
        net = train_classifier(imgs, metas, steps, seed)
        if cache is not None:
            torch.save({"key": key, "net": net.state_dict()}, cache)

    def predict(images):
        with torch.no_grad():
            t = torch.tensor(np.asarray(images, np.float32))
            if np.asarray(images).dtype == np.uint8:
                t = t / 255.0
            t = nn.functional.interpolate(t.permute(0, 3, 1, 2), size=(64, 160), mode="area")
            out = torch.cat([net(t[i:i + 256]) for i in range(0, len(t), 256)])
        return out[:, :10].argmax(1).numpy(), out[:, 10:].argmax(1).numpy()

    return predict


def agreement(families, phases, metas):
    """Share of predicted family / phase ids that match the labels in `metas`."""
    return {
        "family": float(np.mean([scenes.FAMILIES[a] == m["family"] for a, m in zip(families, metas)])),
        "phase": float(np.mean([scenes.PHASES[a] == m["phase"] for a, m in zip(phases, metas)])),
    }


def autoencode(model: Path, imgs):
    """Renders (uint8) through the model's vae_encoder (posterior mean) and vae_decoder, as 0..1."""
    enc = train.ort_session(model / "vae_encoder" / "model.onnx")
    dec = train.ort_session(model / "vae_decoder" / "model.onnx")
    out = []
    for i in range(len(imgs)):
        x = (np.asarray(imgs[i:i + 1], np.float32) / 127.5 - 1).transpose(0, 3, 1, 2)
        par = enc.run(None, {"sample": x})[0]
        mean = par[:, :par.shape[1] // 2]
        y = dec.run(None, {"latent_sample": mean})[0][0]
        out.append(np.clip(y.transpose(1, 2, 0) / 2 + 0.5, 0, 1))
    return np.stack(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=train.ROOT / "onnx" / "wallpaper-tiny")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--renders", type=int, default=4000)
    ap.add_argument("--classifier-steps", type=int, default=1500)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--classifier-cache", type=Path, default=None,
                    help="keep the trained classifier here and reuse it on later runs")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    t0 = time.time()
    predict = classifier(args.renders, args.classifier_steps, 0, args.classifier_cache)
    val, val_metas = train.render_set(400, VAL_SEED, 2)
    pf, pp = predict(val)
    render_acc = agreement(pf, pp, val_metas)
    print(f"classifier on held-out renders: family {render_acc['family']:.3f}, phase {render_acc['phase']:.3f} "
          f"({time.time() - t0:.0f} s)", flush=True)

    # The autoencoder alone bounds what any denoiser can reach: renders through encoder + decoder.
    sf = json.loads((args.model / "vae_decoder" / "config.json").read_text()).get("scaling_factor", 1.0)
    roundtrip = autoencode(args.model, val)
    rf, rp = predict(roundtrip)
    ae_acc = agreement(rf, rp, val_metas) | {
        "psnr_db": float(10 * np.log10(1 / np.mean((roundtrip - val / 255.0) ** 2))),
    }
    print(f"classifier on autoencoded renders: family {ae_acc['family']:.3f}, phase {ae_acc['phase']:.3f}, "
          f"PSNR {ae_acc['psnr_db']:.2f} dB", flush=True)

    index = json.loads((args.model / "model_index.json").read_text())
    rec = index.get("cabin", {})
    kind, steps, guidance = rec.get("scheduler", "dpm++2m"), rec.get("steps", 10), rec.get("guidance", 4.0)
    tok = train.load_tokenizer(args.model / "tokenizer")
    pipe = train.OrtPipe(args.model, tok, sf)
    rows = []
    t1 = time.time()
    for lang in ("en", "zh"):
        for fam in scenes.FAMILIES:
            for ph in scenes.PHASES:
                meta = {"family": fam, "phase": ph, "styles": []}
                prompt = scenes.canonical(meta, lang)
                seeds = [90_000 + 13 * k for k in range(args.seeds)]
                out = pipe.decode(pipe.latents([prompt] * len(seeds), seeds, kind, steps, guidance))
                f, p = predict(out)
                for k in range(len(seeds)):
                    rows.append({"lang": lang, "family": fam, "phase": ph, "prompt": prompt,
                                 "pred_family": scenes.FAMILIES[f[k]], "pred_phase": scenes.PHASES[p[k]],
                                 "luma": float(scenes.luminance(out[k]).mean())})
                diff = float(np.mean([np.abs(out[a] - out[b]).mean() for a in range(len(out)) for b in range(a + 1, len(out))]))
                rows[-1]["seed_diversity"] = diff
    gen_s = time.time() - t1
    fam_acc = float(np.mean([r["pred_family"] == r["family"] for r in rows]))
    ph_acc = float(np.mean([r["pred_phase"] == r["phase"] for r in rows]))
    by = lambda key, val, what: float(np.mean([r["pred_" + what] == r[what] for r in rows if r[key] == val]))  # noqa: E731
    report = {
        "model": str(args.model), "scheduler": kind, "steps": steps, "guidance": guidance, "seeds": args.seeds,
        "images": len(rows), "classifier_on_renders": render_acc, "classifier_on_autoencoded_renders": ae_acc,
        "family_agreement": fam_acc, "phase_agreement": ph_acc,
        "family_agreement_by_lang": {l: by("lang", l, "family") for l in ("en", "zh")},
        "phase_agreement_by_lang": {l: by("lang", l, "phase") for l in ("en", "zh")},
        "family_agreement_by_family": {f: by("family", f, "family") for f in scenes.FAMILIES},
        "family_confusion": {f: {g: sum(1 for r in rows if r["family"] == f and r["pred_family"] == g)
                                 for g in scenes.FAMILIES if any(r["family"] == f and r["pred_family"] == g for r in rows)}
                             for f in scenes.FAMILIES},
        "phase_agreement_by_phase": {p: by("phase", p, "phase") for p in scenes.PHASES},
        "mean_luma_by_phase": {p: float(np.mean([r["luma"] for r in rows if r["phase"] == p])) for p in scenes.PHASES},
        "mean_seed_diversity": float(np.mean([r["seed_diversity"] for r in rows if "seed_diversity" in r])),
        "generation_seconds": round(gen_s, 1),
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
