#!/usr/bin/env python3
"""Prompt adherence of an exported wallpaper model, measured by a scene classifier that has
only ever seen renderer output (never a generated image).

    onnx/.venv/bin/python onnx/train/evaluate.py [--model onnx/wallpaper-tiny] [--seeds 8] [--out docs/wallpaper-eval.json]

1. Renders a fresh labelled scene set (its own data seed, disjoint from training) and trains a
   small CNN to tell the 10 families and the 4 phases apart; reports its accuracy on held-out
   renders (the classifier must be good before it can judge the model).
2. Generates every family x phase x {en, zh} canonical prompt x N seeds with the model's
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


def classifier(imgs, metas, steps, seed):
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    x = torch.tensor(np.asarray(imgs), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    x = nn.functional.interpolate(x, size=(64, 160), mode="area")
    yf = torch.tensor([scenes.FAMILIES.index(m["family"]) for m in metas])
    yp = torch.tensor([scenes.PHASES.index(m["phase"]) for m in metas])

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    net = nn.Sequential(block(3, 24), block(24, 48), block(48, 64), block(64, 96), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(96, len(scenes.FAMILIES) + len(scenes.PHASES)))
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
    net.eval()

    def predict(images):
        with torch.no_grad():
            t = torch.tensor(np.asarray(images, np.float32))
            if np.asarray(images).dtype == np.uint8:
                t = t / 255.0
            t = nn.functional.interpolate(t.permute(0, 3, 1, 2), size=(64, 160), mode="area")
            out = torch.cat([net(t[i:i + 256]) for i in range(0, len(t), 256)])
        return out[:, :10].argmax(1).numpy(), out[:, 10:].argmax(1).numpy()

    return predict


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=train.ROOT / "onnx" / "wallpaper-tiny")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--renders", type=int, default=4000)
    ap.add_argument("--classifier-steps", type=int, default=1500)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    t0 = time.time()
    imgs, metas = train.render_set(args.renders, 777001, 2)
    val, val_metas = train.render_set(400, 777002, 2)
    predict = classifier(imgs, metas, args.classifier_steps, 0)
    pf, pp = predict(val)
    render_acc = {
        "family": float(np.mean([scenes.FAMILIES[a] == m["family"] for a, m in zip(pf, val_metas)])),
        "phase": float(np.mean([scenes.PHASES[a] == m["phase"] for a, m in zip(pp, val_metas)])),
    }
    print(f"classifier on held-out renders: family {render_acc['family']:.3f}, phase {render_acc['phase']:.3f} "
          f"({time.time() - t0:.0f} s)", flush=True)

    index = json.loads((args.model / "model_index.json").read_text())
    rec = index.get("cabin", {})
    kind, steps, guidance = rec.get("scheduler", "dpm++2m"), rec.get("steps", 10), rec.get("guidance", 4.0)
    sf = json.loads((args.model / "vae_decoder" / "config.json").read_text()).get("scaling_factor", 1.0)
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
        "images": len(rows), "classifier_on_renders": render_acc,
        "family_agreement": fam_acc, "phase_agreement": ph_acc,
        "family_agreement_by_lang": {l: by("lang", l, "family") for l in ("en", "zh")},
        "phase_agreement_by_lang": {l: by("lang", l, "phase") for l in ("en", "zh")},
        "family_agreement_by_family": {f: by("family", f, "family") for f in scenes.FAMILIES},
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
