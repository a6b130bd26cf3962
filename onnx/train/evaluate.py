#!/usr/bin/env python3
"""How an exported wallpaper model looks on the car's 1920x720 display, judged against the
renderer (scenes.py) it learned from.

    taskset -c 1 nice -n 5 onnx/.venv/bin/python onnx/train/evaluate.py [--model onnx/wallpaper-tiny]
        [--seeds 4] [--threads 2] [--classifier-cache PATH] [--engine PATH/cabin-wallpaper]
        [--spot-sheet /tmp/spots.png] [--out docs/wallpaper-eval.json]

The display picture. Each generated picture is judged as the driver sees it: the decoded native
picture (128x320), clamped, goes through the model's upscaler (upscaler/model.onnx + config.json,
when the folder has one) or else a Lanczos3 resize (as display.rs does; --resize bilinear for a
plain one) until it covers 1920x720, is centre-cropped (x6 is 1920x768: 24 rows off the top and
the bottom) and ordered-dithered to 8 bits like the engine's output. Renders are drawn by
scenes.render with the same composition: at size (720, 1920), or (180, 480), 4x smaller.

What is measured, and the targets:
1. Adherence. A small CNN trained on renders only (drawn at 180x480, area-reduced to 60x160)
   tells the 10 families and 4 phases apart. Its accuracy on held-out renders says whether it can
   judge at all (~1.0); on held-out renders through the autoencoder + display stage, the ceiling
   the autoencoder sets for any denoiser. Generated display pictures (area-reduced 12x to 60x160)
   are classified for two prompt sets, each family x phase x {en, zh} x --seeds:
     canonical  scenes.canonical ("snowy mountains at dusk" / "黄昏的雪山")
     heldout    eval_prompts.json: template x subject x time, one per family x phase x seed,
                picked deterministically. Composed prompts equal to a training caption (of
                --captions sampled with scenes.caption over every family x phase x style) are
                dropped and counted (should be 0).
   Family and phase agreement overall, by language, by family (+ confusion), by phase, per set.
2. Display detail (target: generated / renders >= 0.6). Gray display picture, 3x3 median (so
   ordered dithering does not count) = M; detail = RMS(M - up(down(M, 6))) / std(M), down an area
   reduction by 6, up bilinear: the share of structure finer than a native pixel. A plain x6
   resize scores near 0. Renders: --detail-renders per family x phase drawn at 1920x720.
3. Edge spots (target: ~0 per 100 pictures, like renders). The 0.2 model's defect is a small
   rainbow-coloured spot by the left or right edge. On the picture reduced 4x (180x480): pixels
   whose chroma is far off the local background where several hues meet are joined into blobs;
   a spot is a blob of 0.12%-1% of the frame, centred in the outer 10% of the width, whose chroma
   deviations point in several directions (red, green and blue at once; a colour edge or a
   one-hue light points along one axis) and which sits alone on a smooth field (lit windows,
   petals and stars that mix hues come in crowds). Comparing the blob's mean hue with a ring
   around it was tried: it flags every lit window of a night city and no spot, so it is not used.
   Spots per 100 pictures for generated pictures and for renders (held-out, diversity and detail
   renders: the renders' rate is the false-alarm rate, ~1 per 100 from building corners on dusk
   skies and neon signs). --spot-sheet PNG draws flagged and unflagged pictures to check by eye.
4. Seed diversity (target: generated / renders >= 0.5): mean absolute pixel difference (0..1)
   between two seeds of the same canonical prompt (display pictures reduced 4x), against two
   renders of the same family x phase without style words.
5. Engine (only with --engine PATH to cabin-wallpaper): 3 runs of its `generate` at 1920x720
   with --threads 2; wall seconds and the child's peak RSS.

--classifier-cache keeps the trained classifier (minutes of CPU) for later runs with the same
settings and the same drawings (scenes.fingerprint()). --threads sets torch, onnxruntime and the
render processes: beside a training job, run with --threads 1 under taskset.

Build tooling only: nothing at run time or in cargo test runs this.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import scenes  # noqa: E402
import train  # noqa: E402

DISPLAY = (720, 1920)  # h, w of the car's display
SMALL = (180, 480)  # the display picture 4x smaller: renders for the classifier are drawn at this size
CLS_HW = (60, 160)  # classifier input: SMALL / 3 = DISPLAY / 12
RENDER_SEED, VAL_SEED, DIVERSITY_SEED, DETAIL_SEED = 777001, 777002, 777003, 777004
LANGS = ("en", "zh")
KINDS = ("canonical", "heldout")
BAYER8 = np.array([[0, 32, 8, 40, 2, 34, 10, 42], [48, 16, 56, 24, 50, 18, 58, 26],
                   [12, 44, 4, 36, 14, 46, 6, 38], [60, 28, 52, 20, 62, 30, 54, 22],
                   [3, 35, 11, 43, 1, 33, 9, 41], [51, 19, 59, 27, 49, 17, 57, 25],
                   [15, 47, 7, 39, 13, 45, 5, 37], [63, 31, 55, 23, 61, 29, 53, 21]], np.float32)


def shown(path: Path):
    """A path as the report shows it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(train.ROOT)) if path.is_relative_to(train.ROOT) else str(path)


def gen_seeds(n):
    return [90_000 + 13 * k for k in range(n)]


# ------------------------------------------------------------------------------------------------
# Pictures: reductions, resizes, the engine's display stage
# ------------------------------------------------------------------------------------------------
def to_float(img):
    x = np.asarray(img)
    return x.astype(np.float32) / 255 if x.dtype == np.uint8 else x.astype(np.float32, copy=False)


def reduce(img, f):
    """Area reduction by the integer factor f of [h, w] or [h, w, c], as float32 0..1."""
    x = to_float(img)
    h, w = x.shape[0] // f, x.shape[1] // f
    return x[:h * f, :w * f].reshape(h, f, w, f, *x.shape[2:]).mean((1, 3))


def resize(x, hw, method):
    """float32 [h, w] or [h, w, c] to hw with PIL ("lanczos3": a = 3, the engine's Lanczos3; or "bilinear")."""
    from PIL import Image

    filt = {"lanczos3": Image.LANCZOS, "bilinear": Image.BILINEAR}[method]
    if x.ndim == 2:
        return np.asarray(Image.fromarray(np.ascontiguousarray(x, np.float32)).resize((hw[1], hw[0]), filt))
    return np.stack([resize(x[..., c], hw, method) for c in range(x.shape[2])], -1)


def cover(img, hw, method):
    """Scales to cover hw and centre-crops, as display.rs cover_f32 does."""
    h, w = img.shape[:2]
    s = max(hw[1] / w, hw[0] / h)
    sh, sw = max(int(h * s + 0.5), hw[0]), max(int(w * s + 0.5), hw[1])
    if (sh, sw) != (h, w):
        img = resize(img, (sh, sw), method)
    y, x = (sh - hw[0]) // 2, (sw - hw[1]) // 2
    return img[y:y + hw[0], x:x + hw[1]]


def dither(img):
    """0..1 float [h, w, 3] to uint8 with the engine's 8x8 Bayer threshold (display.rs dither)."""
    h, w = img.shape[:2]
    t = (np.tile(BAYER8, (h // 8 + 1, w // 8 + 1))[:h, :w, None] + 0.5) / 64
    return np.minimum(np.floor(np.clip(img, 0, 1) * 255 + t), 255).astype(np.uint8)


class Display:
    """The engine's way from a decoder output to the picture on the screen."""

    def __init__(self, model: Path, threads: int, method: str):
        self.method, self.upscaler = method, None
        up = model / "upscaler"
        if (up / "model.onnx").exists():
            self.config = json.loads((up / "config.json").read_text())
            self.upscaler = train.ort_session(up / "model.onnx", threads)
        self.name = f"upscaler x{self.config['scale']}" if self.upscaler else f"{method} resize"

    def __call__(self, raw):
        """raw decoder output [3, h, w], about -1..1 -> uint8 [720, 1920, 3]."""
        if self.upscaler is not None:
            c = self.config
            raw = self.upscaler.run([c["output"]], {c["input"]: raw[None].astype(np.float32)})[0][0]
        img = np.clip(raw.transpose(1, 2, 0) / 2 + 0.5, 0, 1)  # the engine clamps before fitting
        return dither(cover(img, DISPLAY, self.method))


# ------------------------------------------------------------------------------------------------
# Renders
# ------------------------------------------------------------------------------------------------
def _render_job(job):
    size, f, items = job
    imgs = [scenes.render(np.random.default_rng(seed), meta, size=size) for seed, meta in items]
    return np.stack([reduce(i, f) for i in imgs] if f > 1 else imgs)


def render_many(seeds, metas, size, procs, reduce_by=1):
    """scenes.render(default_rng(seed), meta, size) for each pair: uint8 [n, h, w, 3], or float
    0..1 reduced by `reduce_by` inside the workers (keeps thousands of renders small in memory)."""
    items = list(zip([int(s) for s in seeds], metas))
    jobs = [(size, reduce_by, items[i:i + 16]) for i in range(0, len(items), 16)]
    if procs > 1:
        with mp.get_context("fork").Pool(procs) as pool:
            return np.concatenate(pool.map(_render_job, jobs, chunksize=1))
    return np.concatenate([_render_job(j) for j in jobs])


def plain_plan(per, seed):
    """`per` scenes without style words for every family x phase, each with its own render seed."""
    metas = [{"family": f, "phase": p, "styles": []} for f in scenes.FAMILIES for p in scenes.PHASES
             for _ in range(per)]
    return np.random.default_rng(seed).integers(0, 2**63 - 1, len(metas)), metas


# ------------------------------------------------------------------------------------------------
# Measures on display pictures
# ------------------------------------------------------------------------------------------------
MED9 = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3), (5, 8), (4, 7),
        (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))  # a median-of-9 sorting network


def median3(x):
    """3x3 median of [h, w] (edges repeated), by the 19 min / max pairs of MED9."""
    h, w = x.shape
    pad = np.pad(x, 1, mode="edge")
    p = [pad[i:i + h, j:j + w] for i in range(3) for j in range(3)]
    for a, b in MED9:
        p[a], p[b] = np.minimum(p[a], p[b]), np.maximum(p[a], p[b])
    return p[4]


def detail(u8):
    """RMS(M - up(down(M, 6))) / std(M) with M the 3x3 median of the gray picture."""
    m = median3(scenes.luminance(to_float(u8)))
    coarse = resize(reduce(m, 6), m.shape, "bilinear")
    return float(np.sqrt(np.mean((m - coarse) ** 2)) / (m.std() + 1e-4))


def opponent(x):
    """Chroma vector per pixel of float RGB: its angle is the hue, its length about max - min."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    return np.stack([r - (g + b) / 2, (np.sqrt(3) / 2) * (g - b)], -1)


def box(x, r):
    """Mean over a (2r+1)^2 window of [h, w, ...], windows cut at the picture's edges."""
    for axis in (0, 1):
        n = x.shape[axis]
        c = np.cumsum(np.insert(x, 0, 0, axis=axis), axis=axis)
        lo, hi = np.clip(np.arange(n) - r, 0, n), np.clip(np.arange(n) + r + 1, 0, n)
        shape = [1] * x.ndim
        shape[axis] = n
        x = (np.take(c, hi, axis) - np.take(c, lo, axis)) / (hi - lo).reshape(shape)
    return x


def components(mask):
    """8-connected components of a boolean [h, w] mask as a label image (0 = none) and a count.
    Runs of each row are joined with the overlapping runs of the row above (union-find)."""
    h, w = mask.shape
    d = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    starts, ends = np.argwhere(d == 1), np.argwhere(d == -1)  # row-major, so paired
    rows, s, e = starts[:, 0], starts[:, 1], ends[:, 1]
    parent = list(range(len(rows)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first = np.searchsorted(rows, np.arange(h + 1))
    for r in range(1, h):
        j = first[r - 1]
        for i in range(first[r], first[r + 1]):
            while j < first[r] and e[j] < s[i]:  # runs above that end before run i can touch it
                j += 1
            k = j
            while k < first[r] and s[k] <= e[i]:
                parent[root(i)] = root(k)
                k += 1
    roots = [root(i) for i in range(len(rows))]
    ids = {r: n + 1 for n, r in enumerate(dict.fromkeys(roots))}
    labels = np.zeros((h, w), np.int32)
    for i, r in enumerate(roots):
        labels[rows[i], s[i]:e[i]] = ids[r]
    return labels, len(ids)


# Edge-spot detector, tuned by eye on 200 pictures of the 0.2.1 model and 560 renders (night
# cities, rain, aurora, blossom). Sizes are pixels of the picture reduced 4x (180x480).
SPOT = {
    "background_r": 10,  # local background: mean chroma over a 21x21 window
    "deviation": 0.08,  # a marked pixel's chroma is this far off the background ...
    "local_r": 3, "local_spread": 0.03,  # ... where the chroma of its 7x7 window varies along two axes
    "join_r": 2,  # marked pixels this close form one blob
    "min_area": 1.2e-3, "max_area": 1e-2,  # blob size, share of the frame (the 0.2 spot: ~0.3%)
    "edge": 0.10,  # blob centre within this share of the width from the left or right edge
    "peak": 0.2,  # the strongest chroma deviation inside the blob
    "spread": 0.1,  # minor / major axis of the blob's deviations: ~0 for one hue or one colour edge
    "ring_grad": 0.032,  # mean luminance gradient around the blob: the spot sits on a smooth field
    "busy": 0.01,  # share of multi-hue pixels in a wide ring: petals, windows, stars come in crowds
}


def local_spread(opp, r):
    """Per pixel, the RMS chroma spread along the minor axis of a (2r+1)^2 window: ~0 on smooth
    gradients and on edges between two colours, high where several hues meet."""
    a, b = opp[..., 0], opp[..., 1]
    ma, mb = box(a, r), box(b, r)
    saa, sbb, sab = box(a * a, r) - ma * ma, box(b * b, r) - mb * mb, box(a * b, r) - ma * mb
    minor = (saa + sbb - np.sqrt((saa - sbb) ** 2 + 4 * sab ** 2)) / 2
    return np.sqrt(np.maximum(minor, 0))


def around(labels, k, yy, xx, pad):
    """Window of `pad` pixels around blob k and the mask of its pixels clear of the blob's halo."""
    win = (slice(max(0, yy.min() - pad), yy.max() + 1 + pad), slice(max(0, xx.min() - pad), xx.max() + 1 + pad))
    return win, box((labels[win] == k).astype(np.float32), 3) == 0


def edge_spots(small):
    """Rainbow spots by the left / right edge of a picture reduced 4x (float 0..1 or uint8 [h, w, 3]).

    A spot is a small blob of pixels whose chroma is far off the local background in several
    directions at once (red next to green next to blue), alone on a smooth field. A colour edge
    (sky against ground) or a one-hue light deviates along one axis only (spread ~0); lit windows,
    petals and stars that do mix hues come in crowds on busy ground (ring_grad, busy). Comparing
    the blob's mean hue with its ring, the other test one could think of, flags every lit window
    of a night city and no spot, so it is not used. Returns one dict per spot: centre (share of
    width / height), area (share of the frame), peak and spread."""
    x = to_float(small)
    h, w = x.shape[:2]
    opp = opponent(x)
    dev = opp - box(opp, SPOT["background_r"])
    mag = np.linalg.norm(dev, axis=-1)
    multi = local_spread(opp, SPOT["local_r"]) >= SPOT["local_spread"]
    core = (mag >= SPOT["deviation"]) & multi
    if not core.any():
        return []
    labels, n = components(box(core.astype(np.float32), SPOT["join_r"]) > 0)
    area = np.bincount(labels.ravel(), minlength=n + 1)
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    cx = np.bincount(lab, xs, n + 1) / np.maximum(area, 1)
    cy = np.bincount(lab, ys, n + 1) / np.maximum(area, 1)
    grad = np.zeros((h, w), np.float32)  # |d/dy| + |d/dx| of luminance
    lum = x.mean(-1)
    grad[:-1, :-1] = np.abs(np.diff(lum, axis=0))[:, :-1] + np.abs(np.diff(lum, axis=1))[:-1]
    spots = []
    for k in range(1, n + 1):
        share = area[k] / (h * w)
        if not (min(cx[k], w - 1 - cx[k]) < SPOT["edge"] * w and SPOT["min_area"] <= share <= SPOT["max_area"]):
            continue
        sel = lab == k
        yy, xx = ys[sel], xs[sel]
        keep = core[yy, xx]
        v, peak = dev[yy, xx][keep], float(mag[yy, xx][keep].max())
        minor, major = np.linalg.eigvalsh(v.T @ v)
        spread = float(minor / max(major, 1e-9))
        if peak < SPOT["peak"] or spread < SPOT["spread"]:
            continue
        side = np.sqrt(area[k])
        win, ring = around(labels, k, yy, xx, max(4, int(side)))
        wide, far = around(labels, k, yy, xx, int(3 * side))
        if ring.any() and grad[win][ring].mean() > SPOT["ring_grad"]:
            continue
        if far.any() and multi[wide][far].mean() > SPOT["busy"]:
            continue
        spots.append({"x": float(cx[k] / w), "y": float(cy[k] / h), "area": float(share),
                      "peak": peak, "spread": spread})
    return spots


def diversity(smalls):
    """Mean absolute pixel difference over all pairs of pictures (float 0..1)."""
    n = len(smalls)
    return float(np.mean([np.abs(to_float(smalls[a]) - to_float(smalls[b])).mean()
                          for a in range(n) for b in range(a + 1, n)]))


# ------------------------------------------------------------------------------------------------
# Adherence classifier
# ------------------------------------------------------------------------------------------------
def classifier_net():
    import torch.nn as nn

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    c = (3, 16, 32, 64, 96)  # thin first layers: the full-resolution ones cost the most on a CPU
    return nn.Sequential(*[block(c[i], c[i + 1]) for i in range(4)], nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(c[-1], len(scenes.FAMILIES) + len(scenes.PHASES)))


def train_classifier(x, metas, steps, seed):
    """x: float [n, 60, 160, 3] renders; trains family and phase heads together."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    yf = torch.tensor([scenes.FAMILIES.index(m["family"]) for m in metas])
    yp = torch.tensor([scenes.PHASES.index(m["phase"]) for m in metas])
    net = classifier_net()
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
    rng = np.random.default_rng(seed)
    nf = len(scenes.FAMILIES)
    net.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(x), 32))
        xb = x[idx]
        if rng.uniform() < 0.5:
            xb = xb.flip(3)  # scenes are drawn mirrored half the time anyway
        out = net(xb)
        loss = nn.functional.cross_entropy(out[:, :nf], yf[idx]) + nn.functional.cross_entropy(out[:, nf:], yp[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def classifier(renders, steps, seed, procs, cache: Path | None = None):
    """predict(x [n, 60, 160, 3] float 0..1) -> (family ids, phase ids), from a CNN trained on
    `renders` fresh renders only. With `cache`, the weights are kept and reused while the settings
    and the renderer's drawings stay the same."""
    import torch

    key = {"renders": renders, "render_seed": RENDER_SEED, "steps": steps, "seed": seed, "size": SMALL,
           "input": CLS_HW, "net": "c16-32-64-96", "scenes": scenes.fingerprint()}  # new drawings, new judge
    net = None
    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=False)
        if saved.get("key") == key:
            net = classifier_net()
            net.load_state_dict(saved["net"])
            net.eval()
    if net is None:
        metas, seeds = train.plan_scenes(renders, RENDER_SEED)
        x = render_many(seeds, metas, SMALL, procs, reduce_by=SMALL[0] // CLS_HW[0])
        net = train_classifier(x, metas, steps, seed)
        if cache is not None:
            torch.save({"key": key, "net": net.state_dict()}, cache)

    def predict(x):
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).permute(0, 3, 1, 2)
            out = torch.cat([net(t[i:i + 128]) for i in range(0, len(t), 128)])
        nf = len(scenes.FAMILIES)
        return out[:, :nf].argmax(1).numpy(), out[:, nf:].argmax(1).numpy()

    return predict


def agreement(families, phases, metas):
    """Share of predicted family / phase ids that match the labels in `metas`."""
    return {
        "family": float(np.mean([scenes.FAMILIES[a] == m["family"] for a, m in zip(families, metas)])),
        "phase": float(np.mean([scenes.PHASES[a] == m["phase"] for a, m in zip(phases, metas)])),
    }


# ------------------------------------------------------------------------------------------------
# Prompts
# ------------------------------------------------------------------------------------------------
def heldout_prompts(path: Path):
    """{(lang, family, phase): [every template x subject x time of eval_prompts.json]}."""
    spec = json.loads(path.read_text())
    return {(lang, fam, ph): [t.format(subject=s, time=tm) for t in spec[lang]["templates"]
                              for s in spec[lang]["subjects"][fam] for tm in spec[lang]["times"][ph]]
            for lang in LANGS for fam in scenes.FAMILIES for ph in scenes.PHASES}


def normal(text):
    return " ".join(text.lower().split())


def training_captions(n):
    """Normalised captions from scenes.caption(default_rng(s), meta), s < n, cycling through every
    family x phase x style set that training draws."""
    sets = [[]] + [[s] for s in scenes.STYLES] + [[a, b] for a in scenes.STYLES for b in scenes.STYLES
                                                   if a != b and {a, b} != {"warm", "cool"}]
    metas = [{"family": f, "phase": p, "styles": st} for f in scenes.FAMILIES for p in scenes.PHASES for st in sets]
    return {normal(scenes.caption(np.random.default_rng(s), metas[s % len(metas)])) for s in range(n)}


def drop_collisions(heldout, captions):
    """Removes composed prompts that equal a training caption (after lower-casing and spaces)."""
    hits = sorted({p for ps in heldout.values() for p in ps if normal(p) in captions})
    kept = {k: [p for p in ps if normal(p) not in captions] for k, ps in heldout.items()}
    return kept, hits


def pick_prompts(heldout, lang, fam, ph, n):
    """n held-out prompts for one family x phase x language, the same on every run."""
    ps = heldout[(lang, fam, ph)]
    rng = np.random.default_rng([LANGS.index(lang), scenes.FAMILIES.index(fam), scenes.PHASES.index(ph)])
    order = rng.permutation(len(ps))
    return [ps[order[k % len(ps)]] for k in range(n)]


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------
class Pipe(train.OrtPipe):
    """train.OrtPipe on `threads` threads that hands back the raw decoder output."""

    def __init__(self, model: Path, tok, sf, threads):
        super().__init__(model, tok, sf)
        self.s = {n: train.ort_session(model / n / "model.onnx", threads) for n in self.s}

    def decode_raw(self, lat):
        dec = self.s["vae_decoder"]
        return [dec.run(None, {"latent_sample": lat[i:i + 1] / self.sf})[0][0] for i in range(len(lat))]


def judge(pic):
    """Measures of one uint8 display picture; 'small' is the picture reduced 4x (float)."""
    small = reduce(pic, 4)
    return {"small": small, "cls": reduce(small, 3), "detail": detail(pic), "spots": edge_spots(small),
            "luma": float(scenes.luminance(small).mean())}


def generate(pipe, display, predict, heldout, sched, n_seeds, keep_smalls):
    """Every prompt set x language x family x phase x seed, judged on its display picture: one row
    each, the seed diversity of each canonical prompt and (keep_smalls) the 4x-reduced pictures."""
    kind, steps, guidance = sched
    seeds = gen_seeds(n_seeds)
    rows, div, smalls = [], [], []
    for pk in KINDS:
        for lang in LANGS:
            t0 = time.time()
            for fam in scenes.FAMILIES:
                for ph in scenes.PHASES:
                    meta = {"family": fam, "phase": ph, "styles": []}
                    prompts = ([scenes.canonical(meta, lang)] * n_seeds if pk == "canonical"
                               else pick_prompts(heldout, lang, fam, ph, n_seeds))
                    raws = pipe.decode_raw(pipe.latents(prompts, seeds, kind, steps, guidance))
                    judged = [judge(display(raw)) for raw in raws]
                    f, p = predict(np.stack([j["cls"] for j in judged]))
                    for k, j in enumerate(judged):
                        rows.append({"kind": pk, "lang": lang, "family": fam, "phase": ph, "seed": seeds[k],
                                     "prompt": prompts[k], "pred_family": scenes.FAMILIES[f[k]],
                                     "pred_phase": scenes.PHASES[p[k]], "detail": j["detail"], "spots": j["spots"],
                                     "luma": j["luma"]})
                        if keep_smalls:
                            smalls.append(np.round(j["small"] * 255).astype(np.uint8))
                    if pk == "canonical" and n_seeds > 1:
                        div.append(diversity([j["small"] for j in judged]))
            print(f"  generated {pk} {lang}: {len(scenes.FAMILIES) * len(scenes.PHASES) * n_seeds} pictures "
                  f"in {time.time() - t0:.0f} s", flush=True)
    return rows, div, smalls


def autoencoded(model: Path, display, seeds, metas, procs, threads):
    """Renders at the native size through vae_encoder (posterior mean) + vae_decoder + the display
    stage: classifier inputs [n, 60, 160, 3] and the native PSNR."""
    native = render_many(seeds, metas, (scenes.H, scenes.W), procs)
    enc = train.ort_session(model / "vae_encoder" / "model.onnx", threads)
    dec = train.ort_session(model / "vae_decoder" / "model.onnx", threads)
    cls, se = [], []
    for img in native:
        x = (img.astype(np.float32) / 127.5 - 1).transpose(2, 0, 1)[None]
        par = enc.run(None, {"sample": x})[0]
        raw = dec.run(None, {"latent_sample": par[:, :par.shape[1] // 2]})[0][0]
        se.append(np.mean((np.clip(raw / 2 + 0.5, 0, 1) - x[0] / 2 - 0.5) ** 2))
        cls.append(reduce(display(raw), DISPLAY[0] // CLS_HW[0]))
    return np.stack(cls), float(10 * np.log10(1 / np.mean(se)))


# ------------------------------------------------------------------------------------------------
# The Rust engine's own time and memory
# ------------------------------------------------------------------------------------------------
def engine_runs(engine: Path, model: Path, runs=3):
    """`engine generate` at 1920x720 `runs` times: wall seconds and the engine's peak RSS (as it
    reports it; else wait4's, which includes this process's own high-water mark from the fork)."""
    helptext = subprocess.run([str(engine), "generate", "--help"], capture_output=True, text=True).stdout
    walls, rss, log = [], [], ""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(engine), "generate", "--model", str(model), "--prompt", "snowy mountains at dusk",
               "--out", str(Path(tmp) / "x.png"), "--threads", "2"]
        if "--size" in helptext:
            cmd += ["--size", "1920x720"]
        elif "--width" in helptext:
            cmd += ["--width", "1920", "--height", "720"]
        if "--allow-unverified" in helptext and not (model / "manifest.json").exists():
            cmd.append("--allow-unverified")
        for _ in range(runs):
            with tempfile.TemporaryFile() as err:
                t0 = time.perf_counter()
                p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
                _, status, usage = os.wait4(p.pid, 0)
                walls.append(round(time.perf_counter() - t0, 3))
                p.returncode = os.waitstatus_to_exitcode(status)
                err.seek(0)
                log = err.read().decode(errors="replace")
            if p.returncode != 0:
                return {"command": cmd, "error": f"exit {p.returncode}", "stderr": log[-2000:]}
            # The engine's own VmHWM when it prints one: a child forked from this (large) Python
            # process carries its high-water mark across exec, so wait4's ru_maxrss overstates.
            own = re.search(r"peak RSS ([0-9.]+) MiB", log)
            rss.append(float(own.group(1)) if own else round(usage.ru_maxrss / 1024, 1))  # KiB on Linux
    return {"command": cmd, "wall_s": walls, "mean_wall_s": round(float(np.mean(walls)), 3),
            "peak_rss_mib": max(rss), "stderr_last": log.strip().splitlines()[-2:]}


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def adherence(rows):
    """Family and phase agreement overall, by language, family (with confusion) and phase."""
    def share(sel, what):
        return float(np.mean([r["pred_" + what] == r[what] for r in sel])) if sel else None

    return {
        "images": len(rows),
        "family": share(rows, "family"), "phase": share(rows, "phase"),
        "by_lang": {l: {w: share([r for r in rows if r["lang"] == l], w) for w in ("family", "phase")} for l in LANGS},
        "family_by_family": {f: share([r for r in rows if r["family"] == f], "family") for f in scenes.FAMILIES},
        "family_confusion": {f: {g: n for g in scenes.FAMILIES
                                 if (n := sum(r["family"] == f and r["pred_family"] == g for r in rows))}
                             for f in scenes.FAMILIES},
        "phase_by_phase": {p: share([r for r in rows if r["phase"] == p], "phase") for p in scenes.PHASES},
    }


def spot_rate(spot_lists):
    n = len(spot_lists)
    return {"per_100": 100 * sum(map(len, spot_lists)) / max(n, 1),
            "pictures_flagged": sum(1 for s in spot_lists if s), "pictures": n}


def spot_sheet(path: Path, smalls, labels, spot_lists, n=24):
    """Flagged pictures (spots circled) then as many unflagged ones, 4 to a row, for a look by eye."""
    from PIL import Image, ImageDraw

    def spaced(idx):  # n spread over the whole run, so every family and phase can show up
        return idx[::max(1, len(idx) // n)][:n]

    order = spaced([i for i, s in enumerate(spot_lists) if s]) + spaced([i for i, s in enumerate(spot_lists) if not s])
    h, w = smalls[0].shape[:2]
    cols = 4
    sheet = Image.new("RGB", (cols * (w + 4) + 4, -(-len(order) // cols) * (h + 16) + 4), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for j, i in enumerate(order):
        x0, y0 = 4 + (j % cols) * (w + 4), 4 + (j // cols) * (h + 16)
        tile = Image.fromarray(smalls[i])
        for s in spot_lists[i]:  # circled on the tile, so a circle never spills onto a neighbour
            cx, cy, r = s["x"] * w, s["y"] * h, 4 + (s["area"] * h * w) ** 0.5
            ImageDraw.Draw(tile).ellipse((cx - r, cy - r, cx + r, cy + r), outline=(255, 255, 0))
        sheet.paste(tile, (x0, y0 + 12))
        draw.text((x0, y0), ("SPOT " if spot_lists[i] else "") + labels[i], fill=(230, 230, 230))
    sheet.save(path)


def render_measures(detail_per, div_per, val, procs):
    """The renderer's own scores for the picture measures: detail of 1920x720 drawings, seed
    diversity of 180x480 ones (the display picture 4x smaller), edge spots on all of them."""
    det_seeds, det_metas = plain_plan(detail_per, DETAIL_SEED)
    big = render_many(det_seeds, det_metas, DISPLAY, procs)
    details = [detail(b) for b in big]
    small = [reduce(b, 4) for b in big]
    del big
    div_seeds, div_metas = plain_plan(div_per, DIVERSITY_SEED)
    div = render_many(div_seeds, div_metas, SMALL, procs)
    return {"detail": details, "detail_metas": det_metas,
            "diversity": [diversity(div[i:i + div_per]) for i in range(0, len(div), div_per)],
            "spots": [edge_spots(x) for x in list(val) + list(div) + small]}


def adherence_report(rows):
    """Agreement of all pictures under the keys earlier reports used, and per prompt set."""
    a = adherence(rows)
    return {"family_agreement": a["family"], "phase_agreement": a["phase"],
            "family_agreement_by_lang": {l: v["family"] for l, v in a["by_lang"].items()},
            "phase_agreement_by_lang": {l: v["phase"] for l, v in a["by_lang"].items()},
            "family_agreement_by_family": a["family_by_family"], "family_confusion": a["family_confusion"],
            "phase_agreement_by_phase": a["phase_by_phase"],
            "by_prompt_kind": {k: adherence([r for r in rows if r["kind"] == k]) for k in KINDS}}


def picture_report(rows, gen_div, renders):
    """Luma, display detail, edge spots and seed diversity, generated against renders."""
    def mean(xs):
        xs = list(xs)
        return float(np.mean(xs)) if xs else None

    g_det, r_det = mean(r["detail"] for r in rows), mean(renders["detail"])
    g_div, r_div = mean(gen_div), mean(renders["diversity"])
    return {
        "mean_luma_by_phase": {p: mean(r["luma"] for r in rows if r["phase"] == p) for p in scenes.PHASES},
        "display_detail": {
            "generated": g_det, "renders": r_det, "ratio": g_det / r_det, "target_ratio": 0.6,
            "generated_by_phase": {p: mean(r["detail"] for r in rows if r["phase"] == p) for p in scenes.PHASES},
            "renders_by_phase": {p: mean(d for d, m in zip(renders["detail"], renders["detail_metas"])
                                         if m["phase"] == p) for p in scenes.PHASES},
            "renders_n": len(renders["detail"])},
        "edge_spots": {
            "generated": spot_rate([r["spots"] for r in rows]), "renders": spot_rate(renders["spots"]),
            "generated_by_family": {f: spot_rate([r["spots"] for r in rows if r["family"] == f])["per_100"]
                                    for f in scenes.FAMILIES},
            "generated_by_side": {side: sum(1 for r in rows for sp in r["spots"] if (sp["x"] < 0.5) == (side == "left"))
                                  for side in ("left", "right")},
            "detector": SPOT},
        "seed_diversity": {"generated": g_div, "renders": r_div, "ratio": g_div / r_div if g_div else None,
                           "target_ratio": 0.5},
        "mean_seed_diversity": g_div,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=train.ROOT / "onnx" / "wallpaper-tiny")
    ap.add_argument("--seeds", type=int, default=4, help="seeds per prompt set x language x family x phase")
    ap.add_argument("--renders", type=int, default=4000, help="renders the classifier is trained on")
    ap.add_argument("--classifier-steps", type=int, default=2000)
    ap.add_argument("--val-renders", type=int, default=400)
    ap.add_argument("--detail-renders", type=int, default=2, help="1920x720 renders per family x phase")
    ap.add_argument("--captions", type=int, default=200_000, help="training captions checked against held-out prompts")
    ap.add_argument("--prompts", type=Path, default=HERE / "eval_prompts.json",
                    help="held-out prompts: eval_prompts.json (the test set) or dev_prompts.json (for choices)")
    ap.add_argument("--guidance", type=float, default=None, help="instead of the model's recommended guidance")
    ap.add_argument("--steps", type=int, default=None, help="instead of the model's recommended steps")
    ap.add_argument("--scheduler", choices=("ddim", "dpm++2m"), default=None,
                    help="instead of the model's recommended scheduler")
    ap.add_argument("--resize", choices=("lanczos3", "bilinear"), default="lanczos3",
                    help="display resize without an upscaler (the engine uses Lanczos3)")
    ap.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads and render processes")
    ap.add_argument("--engine", type=Path, default=None, help="cabin-wallpaper binary: time and memory of `generate`")
    ap.add_argument("--spot-sheet", type=Path, default=None, help="PNG of flagged and unflagged pictures")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--card", type=Path, default=None,
                    help="MODEL_CARD.md whose '## Evaluation at 1920x720' section gets these figures")
    ap.add_argument("--classifier-cache", type=Path, default=None,
                    help="keep the trained classifier here and reuse it on later runs")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    procs = args.threads
    t_start = time.time()
    engine = engine_runs(args.engine, args.model) if args.engine else None

    # 1. The judge: trained on renders, checked on held-out renders and on the autoencoder's copies.
    predict = classifier(args.renders, args.classifier_steps, 0, procs, args.classifier_cache)
    val_metas, val_seeds = train.plan_scenes(args.val_renders, VAL_SEED)
    val = render_many(val_seeds, val_metas, SMALL, procs)
    render_acc = agreement(*predict(np.stack([reduce(v, 3) for v in val])), val_metas)
    print(f"classifier on held-out renders: family {render_acc['family']:.3f}, phase {render_acc['phase']:.3f} "
          f"({time.time() - t_start:.0f} s)", flush=True)
    display = Display(args.model, args.threads, args.resize)
    ae_cls, psnr = autoencoded(args.model, display, val_seeds, val_metas, procs, args.threads)
    ae_acc = agreement(*predict(ae_cls), val_metas) | {"psnr_db": psnr}
    print(f"classifier on autoencoded renders ({display.name}): family {ae_acc['family']:.3f}, "
          f"phase {ae_acc['phase']:.3f}, native PSNR {psnr:.2f} dB", flush=True)

    renders = render_measures(args.detail_renders, max(args.seeds, 2), val, procs)

    # 2. Prompts: held-out wordings must not be training captions.
    heldout = heldout_prompts(args.prompts)
    heldout, hits = drop_collisions(heldout, training_captions(args.captions))
    print(f"held-out prompts: {sum(map(len, heldout.values()))} composed, {len(hits)} equal a training caption "
          f"(dropped)", flush=True)

    # 3. Generation, judged on display pictures.
    index = json.loads((args.model / "model_index.json").read_text())
    rec = index.get("cabin", {})
    sched = (args.scheduler or rec.get("scheduler", "dpm++2m"), args.steps or rec.get("steps", 10),
             args.guidance if args.guidance is not None else rec.get("guidance", 4.0))
    sf = json.loads((args.model / "vae_decoder" / "config.json").read_text()).get("scaling_factor", 1.0)
    pipe = Pipe(args.model, train.load_tokenizer(args.model / "tokenizer"), sf, args.threads)
    t_gen = time.time()
    rows, gen_div, smalls = generate(pipe, display, predict, heldout, sched, args.seeds, args.spot_sheet is not None)
    gen_s = time.time() - t_gen
    if args.spot_sheet:
        spot_sheet(args.spot_sheet, smalls, [f"{r['family']} {r['phase']} {r['lang']} {r['seed']}" for r in rows],
                   [r["spots"] for r in rows])

    report = {"model": shown(args.model), "scheduler": sched[0], "steps": sched[1], "guidance": sched[2],
              "seeds": args.seeds, "images": len(rows),
              "display": {"size": [DISPLAY[1], DISPLAY[0]], "stage": display.name,
                          "classifier_input": [CLS_HW[1], CLS_HW[0]]},
              "classifier_on_renders": render_acc | {"images": len(val)},
              "classifier_on_autoencoded_renders": ae_acc}
    report |= adherence_report(rows)
    report["prompts"] = {
        "heldout_file": shown(args.prompts), "heldout_composed": sum(map(len, heldout.values())) + len(hits),
        "training_captions_checked": args.captions, "collisions": len(hits), "colliding": hits[:20],
        "used": {k: sorted({r["prompt"] for r in rows if r["kind"] == k}) for k in KINDS}}
    report |= picture_report(rows, gen_div, renders)
    report |= {"engine": engine, "generation_seconds": round(gen_s, 1),
               "run_seconds": round(time.time() - t_start, 1), "threads": args.threads}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print_summary(report)
    if args.card:
        write_card_section(args.card, report, args.out)


def card_section(r, out):
    """The model card's evaluation section: each figure beside the target it is held to."""
    ok = lambda good: "yes" if good else "**no**"  # noqa: E731
    kinds = r["by_prompt_kind"]
    fam = r["family_agreement_by_family"]
    d, s, e = r["display_detail"], r["seed_diversity"], r["edge_spots"]
    lines = [f"{r['images']} pictures at 1920x720 ({r['display']['stage']}), {r['scheduler']} {r['steps']} steps, "
             f"guidance {r['guidance']}, {r['seeds']} seeds per prompt; judged by a classifier trained on renders only "
             f"(held-out renders: family {r['classifier_on_renders']['family']:.3f}, phase "
             f"{r['classifier_on_renders']['phase']:.3f}; the autoencoder's copies of them: family "
             f"{r['classifier_on_autoencoded_renders']['family']:.3f}). Held-out prompts are worded apart from the "
             f"training captions ({r['prompts']['collisions']} collisions).", "",
             "| measure | figure | target | met |", "|---|---|---|---|"]
    for k, v in kinds.items():
        for lang, x in v["by_lang"].items():
            lines.append(f"| family, {k} prompts, {lang} | {x['family']:.3f} | >= 0.92 | {ok(x['family'] >= 0.92)} |")
            lines.append(f"| phase, {k} prompts, {lang} | {x['phase']:.3f} | >= 0.95 | {ok(x['phase'] >= 0.95)} |")
    worst = min(fam, key=fam.get)
    lines.append(f"| weakest family ({worst}) | {fam[worst]:.3f} | >= 0.80 | {ok(fam[worst] >= 0.80)} |")
    lines.append(f"| display detail / renders' | {d['ratio']:.2f} | >= 0.6 | {ok(d['ratio'] >= 0.6)} |")
    lines.append(f"| pictures with an edge spot | {e['generated']['pictures_flagged']} of {e['generated']['pictures']} "
                 f"(renders: {e['renders']['pictures_flagged']} of {e['renders']['pictures']}) | 0 | "
                 f"{ok(e['generated']['pictures_flagged'] == 0)} |")
    if s["ratio"] is not None:
        lines.append(f"| seed diversity / renders' | {s['ratio']:.2f} | >= 0.5 | {ok(s['ratio'] >= 0.5)} |")
    eng = r.get("engine") or {}
    if "mean_wall_s" in eng:
        threads = eng["command"][eng["command"].index("--threads") + 1] if "--threads" in eng["command"] else "?"
        lines.append(f"| `cabin-wallpaper generate`, load included, {threads} threads | {eng['mean_wall_s']:.2f} s | "
                     f"<= 1.5 s | {ok(eng['mean_wall_s'] <= 1.5)} |")
        lines.append(f"| its peak RSS | {eng['peak_rss_mib']:.0f} MiB | <= 400 MiB | {ok(eng['peak_rss_mib'] <= 400)} |")
        stage = [x for x in eng.get("stderr_last", []) if "display stage" in x]
        if stage:
            lines.append(f"| where the time goes | {stage[0]} | | |")
    lines += ["", f"By family: " + ", ".join(f"{k} {v:.2f}" for k, v in fam.items()) + "."]
    if out:
        lines += ["", f"In full: `{shown(out)}`."]
    return lines


def write_card_section(card, report, out):
    """Replaces the card's '## Evaluation at 1920x720' section (up to the next heading)."""
    text = card.read_text().split("\n")
    head = "## Evaluation at 1920x720"
    if head not in text:
        text += ["", head, ""]
    i = text.index(head)
    j = next((k for k in range(i + 1, len(text)) if text[k].startswith("## ")), len(text))
    new = text[:i + 1] + [""] + card_section(report, out) + [""] + text[j:]
    card.write_text("\n".join(new).rstrip("\n") + "\n")
    print(f"wrote the evaluation section of {card}")


def print_summary(r):
    c, a = r["classifier_on_renders"], r["classifier_on_autoencoded_renders"]
    print(f"\n{r['model']} at 1920x720 ({r['display']['stage']}), {r['images']} pictures, "
          f"{r['scheduler']} {r['steps']} steps, guidance {r['guidance']}")
    print(f"  classifier on renders        family {c['family']:.3f}  phase {c['phase']:.3f}")
    print(f"  on autoencoded renders       family {a['family']:.3f}  phase {a['phase']:.3f}  "
          f"(PSNR {a['psnr_db']:.2f} dB)")
    for k, v in r["by_prompt_kind"].items():
        langs = "  ".join(f"{l} {x['family']:.3f}/{x['phase']:.3f}" for l, x in v["by_lang"].items())
        print(f"  {k:<10} family {v['family']:.3f}  phase {v['phase']:.3f}   (family/phase: {langs})")
    weak = {f: round(x, 2) for f, x in r["family_agreement_by_family"].items() if x < 0.75}
    print(f"  families below 0.75: {weak or 'none'};  held-out prompts equal to a training caption: "
          f"{r['prompts']['collisions']}")
    d, s, e = r["display_detail"], r["seed_diversity"], r["edge_spots"]
    print(f"  display detail               {d['generated']:.3f} vs renders {d['renders']:.3f}: "
          f"ratio {d['ratio']:.2f} (target >= 0.6)")
    print(f"  edge spots per 100 pictures  {e['generated']['per_100']:.1f} vs renders {e['renders']['per_100']:.1f} "
          f"({e['generated']['pictures_flagged']}/{e['generated']['pictures']} pictures flagged)")
    if s["ratio"] is not None:
        print(f"  seed diversity               {s['generated']:.4f} vs renders {s['renders']:.4f}: "
              f"ratio {s['ratio']:.2f} (target >= 0.5)")
    if r["engine"]:
        eng = r["engine"]
        said = (eng["error"] if "error" in eng
                else f"{eng['mean_wall_s']:.2f} s a picture, peak RSS {eng['peak_rss_mib']:.0f} MiB")
        print(f"  engine                       {said}")
    print(f"  run {r['run_seconds']:.0f} s (generation {r['generation_seconds']:.0f} s, {r['threads']} threads)")


if __name__ == "__main__":
    main()
