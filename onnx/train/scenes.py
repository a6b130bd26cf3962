#!/usr/bin/env python3
"""Procedural wallpaper scenes for training the in-house wallpaper model (numpy only).

Ten scene families x four light phases (dawn, day, dusk, night) x optional style words
(warm, cool, misty, vivid), rendered at 128x320 (H x W) from layered silhouettes, gradients and
value-noise textures, with bilingual (English / Chinese) captions in many phrasings.

    from scenes import random_scene, render, caption
    meta = random_scene(rng)              # {"family", "phase", "styles"}
    img = render(rng, meta)               # uint8 [128, 320, 3]
    text = caption(rng, meta)             # e.g. "make me a wallpaper of snowy mountains at dusk"

Everything is driven by the numpy Generator handed in, so a fixed seed gives fixed images.
Run directly to write a contact sheet (`onnx/train/scene_samples.png`) and print timings:

    onnx/.venv/bin/python onnx/train/scenes.py [--seed 0] [--out onnx/train/scene_samples.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

H, W = 128, 320
FAMILIES = ("sea", "mountains", "stars", "city", "forest", "desert", "aurora", "lake", "rain", "blossom")
PHASES = ("dawn", "day", "dusk", "night")
STYLES = ("warm", "cool", "misty", "vivid")

_YY, _XX = np.mgrid[0:H, 0:W].astype(np.float32)
F32 = np.float32

# ------------------------------------------------------------------------------------------------
# Noise and drawing helpers
# ------------------------------------------------------------------------------------------------
_interp_cache: dict = {}


def _interp(n_out: int, n_in: int) -> np.ndarray:
    """Matrix resampling n_in grid values to n_out samples, smoothstep-interpolated."""
    key = (n_out, n_in)
    m = _interp_cache.get(key)
    if m is None:
        pos = np.linspace(0, n_in - 1, n_out)
        i0 = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
        t = pos - i0
        t = t * t * (3 - 2 * t)
        m = np.zeros((n_out, n_in), F32)
        m[np.arange(n_out), i0] = 1 - t
        m[np.arange(n_out), i0 + 1] += t
        _interp_cache[key] = m
    return m


def fbm2d(rng, cy, cx, octaves=4, gain=0.5, h=H, w=W):
    """Fractal value noise, roughly zero-mean, std ~0.5; (cy, cx) cells at the lowest octave."""
    out = np.zeros((h, w), F32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gy, gx = min(int(cy), h - 1) + 1, min(int(cx), w - 1) + 1
        g = rng.standard_normal((gy, gx)).astype(F32)
        out += amp * (_interp(h, gy) @ g @ _interp(w, gx).T)
        total += amp
        amp *= gain
        cy, cx = cy * 2, cx * 2
    return out / total


def fbm1d(rng, cells, octaves=4, gain=0.5, n=W):
    out = np.zeros(n, F32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        g = rng.standard_normal(min(int(cells), n - 1) + 1).astype(F32)
        out += amp * (_interp(n, len(g)) @ g)
        total += amp
        amp *= gain
        cells *= 2
    return out / total


def smoothstep(a, b, x):
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


def blur(a, passes=1):
    """[1 2 1]/4 separable blur (edges clamped), `passes` times; works on HxW or HxWxC."""
    for _ in range(passes):
        p = np.concatenate([a[:1], a, a[-1:]], 0)
        a = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
        p = np.concatenate([a[:, :1], a, a[:, -1:]], 1)
        a = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
    return a


def below(ridge):
    """Anti-aliased alpha of the region below a per-column ridge line (row coordinates)."""
    return np.clip(_YY - ridge[None, :] + 0.5, 0, 1)


def over(img, alpha, color):
    a = alpha[..., None]
    return img * (1 - a) + np.asarray(color, F32) * a


def lerp(a, b, t):
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    return a + (b - a) * t


def disc(cx, cy, r):
    return np.clip(r - np.hypot(_XX - cx, _YY - cy) + 0.5, 0, 1)


def jitter(rng, c, s=0.06):
    return np.clip(np.asarray(c, F32) * (1 + s * rng.standard_normal(3)).astype(F32), 0, 1.2)


def luminance(img):
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


# ------------------------------------------------------------------------------------------------
# Light phases
# ------------------------------------------------------------------------------------------------
PALETTES = {
    #          sky top              sky middle          horizon            sun / moon        ambient  light
    "dawn": [((0.24, 0.30, 0.56), (0.72, 0.58, 0.72), (1.00, 0.74, 0.56), (1.0, 0.92, 0.72), 0.60, (1.0, 0.84, 0.76)),
             ((0.30, 0.40, 0.66), (0.80, 0.70, 0.76), (1.00, 0.84, 0.66), (1.0, 0.95, 0.80), 0.65, (1.0, 0.90, 0.82)),
             ((0.20, 0.22, 0.45), (0.60, 0.46, 0.66), (0.98, 0.62, 0.54), (1.0, 0.85, 0.66), 0.55, (1.0, 0.80, 0.74))],
    "day": [((0.14, 0.40, 0.84), (0.40, 0.64, 0.93), (0.78, 0.88, 0.97), (1.0, 1.0, 0.95), 1.00, (1.0, 0.98, 0.94)),
            ((0.22, 0.50, 0.88), (0.50, 0.72, 0.95), (0.86, 0.92, 0.98), (1.0, 1.0, 0.96), 1.05, (1.0, 1.0, 0.97)),
            ((0.10, 0.34, 0.76), (0.34, 0.58, 0.88), (0.70, 0.82, 0.94), (1.0, 1.0, 0.92), 0.95, (1.0, 0.97, 0.90))],
    "dusk": [((0.14, 0.09, 0.30), (0.60, 0.28, 0.42), (1.00, 0.52, 0.20), (1.0, 0.62, 0.26), 0.42, (1.0, 0.62, 0.42)),
             ((0.10, 0.10, 0.28), (0.50, 0.24, 0.50), (0.98, 0.42, 0.30), (1.0, 0.55, 0.30), 0.38, (1.0, 0.56, 0.46)),
             ((0.18, 0.12, 0.26), (0.74, 0.36, 0.26), (1.00, 0.66, 0.26), (1.0, 0.74, 0.30), 0.46, (1.0, 0.70, 0.44))],
    "night": [((0.006, 0.010, 0.035), (0.018, 0.030, 0.080), (0.045, 0.070, 0.150), (0.92, 0.93, 1.0), 0.20, (0.55, 0.66, 1.0)),
              ((0.010, 0.008, 0.040), (0.025, 0.025, 0.090), (0.060, 0.060, 0.150), (0.95, 0.92, 0.85), 0.18, (0.62, 0.62, 0.95)),
              ((0.004, 0.012, 0.030), (0.012, 0.040, 0.070), (0.030, 0.090, 0.130), (0.90, 0.96, 1.0), 0.20, (0.50, 0.72, 0.95))],
}


class Light:
    """Per-image lighting drawn from a phase palette, with jitter."""

    def __init__(self, rng, phase):
        top, mid, hor, sun, amb, light = PALETTES[phase][rng.integers(len(PALETTES[phase]))]
        self.phase = phase
        self.night = phase == "night"
        b = F32(rng.uniform(0.88, 1.12))
        self.top, self.mid, self.hor = (jitter(rng, c) * b for c in (top, mid, hor))
        self.sun = jitter(rng, sun, 0.03)
        self.amb = F32(amb * rng.uniform(0.9, 1.1))
        self.light = jitter(rng, light, 0.04)
        self.stars = {"night": 1.0, "dusk": 0.35, "dawn": 0.25, "day": 0.0}[phase]

    def lit(self, material, extra=1.0):
        """A material colour under this light."""
        return np.asarray(material, F32) * self.light * self.amb * F32(extra)

    def haze(self, color, depth):
        """Atmospheric perspective: far layers fade to the horizon colour."""
        return lerp(color, self.hor * F32(0.92), depth)


def sky(rng, L: Light, hy, sun_xy=None, sun_r=None, moon_phase=None):
    """Gradient sky down to row `hy`, with sun (or moon) disc and glow. Returns (img, sun_xy)."""
    t = np.clip(_YY / max(hy, 1.0), 0, 1) ** F32(rng.uniform(0.8, 1.4))
    k = F32(rng.uniform(0.5, 0.7))
    lo = np.clip(t / k, 0, 1)[..., None]
    hi = np.clip((t - k) / (1 - k), 0, 1)[..., None]
    img = np.where(t[..., None] < k, lerp(L.top, L.mid, lo), lerp(L.mid, L.hor, hi)).astype(F32)
    if sun_xy is None:
        sx = rng.uniform(0.12, 0.88) * W
        if L.phase in ("dawn", "dusk"):
            sy = hy - rng.uniform(2, 16)
        elif L.phase == "day":
            sy = rng.uniform(0.10, 0.45) * hy
        else:
            sy = rng.uniform(0.12, 0.55) * hy
        sun_xy = (sx, sy)
    sx, sy = sun_xy
    d = np.hypot(_XX - sx, (_YY - sy) * 1.3)
    if L.night:
        r = sun_r or rng.uniform(4.0, 7.0)
        img = img + (np.exp(-d / (r * 3)) * 0.10)[..., None] * L.sun
        moon = disc(sx, sy, r)
        if moon_phase is None:
            moon_phase = rng.uniform(0, 1)
        if moon_phase < 0.5:  # crescent / gibbous: bite out a shifted disc
            off = r * (0.4 + 1.2 * moon_phase) * (1 if rng.uniform() < 0.5 else -1)
            moon = moon * (1 - disc(sx + off, sy - r * 0.2, r))
        img = over(img, moon, L.sun * 0.95)
    else:
        r = sun_r or (rng.uniform(5.0, 9.0) if L.phase != "day" else rng.uniform(4.0, 6.0))
        strength = {"day": 0.35, "dawn": 0.8, "dusk": 0.9}[L.phase]
        glow = np.exp(-d / F32(rng.uniform(25, 60))) * strength + np.exp(-d / (r * 1.8)) * 0.5
        img = img + glow[..., None] * (L.sun - img * 0.5) * 0.6
        img = over(img, disc(sx, sy, r), np.minimum(L.sun * 1.05, 1.0))
    above = (_YY < hy)[..., None]
    img = np.where(above, img, lerp(L.hor, L.mid, 0.2))
    return img.astype(F32), (sx, sy)


def add_stars(rng, img, L: Light, hy, density=1.0, milky=False):
    vis = L.stars * density
    if vis <= 0:
        return img
    n = int(rng.uniform(120, 320) * density)
    ys = rng.uniform(0, hy * 0.97, n).astype(int)
    xs = rng.integers(0, W, n)
    v = (rng.uniform(0, 1, n) ** 3 * 2.2 + 0.15).astype(F32)
    layer = np.zeros((H, W), F32)
    np.add.at(layer, (ys, xs), v)
    if milky:
        ang = rng.uniform(-0.5, 0.5)
        cx = rng.uniform(0.2, 0.8) * W
        dist = np.abs((_XX - cx) * np.cos(ang) + (_YY - hy * 0.5) * np.sin(ang) * 3) / W
        band = np.exp(-(dist / rng.uniform(0.06, 0.12)) ** 2) * (0.6 + 0.8 * fbm2d(rng, 4, 10, 4))
        band = np.clip(band, 0, None)
        m = 900
        ys2 = rng.uniform(0, hy * 0.97, m).astype(int)
        xs2 = rng.integers(0, W, m)
        keep = rng.uniform(0, 1, m) < band[ys2, xs2]
        np.add.at(layer, (ys2[keep], xs2[keep]), F32(0.6))
        glow = band * 0.10
    else:
        glow = 0
    layer = blur(layer, 1) * 1.6 + glow
    fade = np.clip(1 - _YY / max(hy, 1.0), 0, 1) ** (0.5 if L.night else 1.5)
    tint = np.array([0.9, 0.93, 1.0], F32)
    return img + (layer * fade * vis)[..., None] * tint


def clouds(rng, img, L: Light, hy, cover=None, sun_xy=None):
    cover = rng.uniform(0.0, 0.6) if cover is None else cover
    if cover <= 0.02:
        return img
    n = fbm2d(rng, rng.uniform(1.5, 3), rng.uniform(3, 7), 5)
    n = n + 0.15 * fbm2d(rng, 8, 30, 2)
    th = 0.45 - cover * 0.6
    a = smoothstep(th, th + 0.35, n) * smoothstep(hy, hy * 0.55, _YY) * F32(rng.uniform(0.6, 0.95))
    shade = smoothstep(-0.2, 0.6, n - th)  # thicker -> darker underside
    if L.phase == "day":
        base, dark = np.array([0.97, 0.97, 0.98], F32), np.array([0.70, 0.74, 0.80], F32)
    elif L.night:
        base, dark = L.mid * 2.2 + 0.02, L.top * 1.2
    else:
        base = lerp(L.sun, L.hor, 0.4) * 1.05
        dark = lerp(L.mid, L.top, 0.5)
    col = lerp(base, dark, shade[..., None] * 0.7)
    return over(img, a, 0) + a[..., None] * col


def ridge(rng, base, amp, cells, octaves=5, sharp=0.0):
    n = fbm1d(rng, cells, octaves)
    if sharp > 0:
        n = (1 - sharp) * n + sharp * (0.6 - np.abs(fbm1d(rng, cells * 1.5, octaves)) * 2.5)
    return base - amp * n


# ------------------------------------------------------------------------------------------------
# Scene families
# ------------------------------------------------------------------------------------------------
def scene_sea(rng, L):
    hy = rng.uniform(0.42, 0.62) * H
    img, (sx, sy) = sky(rng, L, hy)
    img = add_stars(rng, img, L, hy)
    img = clouds(rng, img, L, hy)
    # sea: reflected sky near the horizon, deep water below
    t = np.clip((_YY - hy) / (H - hy), 0, 1)[..., None]
    deep = L.lit((0.05, 0.22, 0.38), 1.2) if not L.night else L.top * 1.5 + 0.01
    water = lerp(L.hor * 0.85, deep, np.sqrt(t))
    waves = fbm2d(rng, 10, 3, 4) + 0.5 * fbm2d(rng, 30, 6, 2)
    persp = 0.2 + t[..., 0] * 1.2
    water = water * (1 + 0.10 * waves * persp)[..., None]
    # glitter path under the sun/moon
    wide = 4 + (_YY - hy) * rng.uniform(0.5, 1.2)
    path = np.exp(-((_XX - sx) / np.maximum(wide, 1)) ** 2) * smoothstep(0.0, 0.6, waves + 0.3)
    glint = 0.9 if L.phase in ("dawn", "dusk") else (0.5 if L.phase == "day" else 0.45)
    water = water + (path * glint)[..., None] * L.sun
    # surf lines near the bottom (a beach in some images)
    if rng.uniform() < 0.4:
        shore = H - rng.uniform(8, 24) - 6 * fbm1d(rng, 3, 3)
        sand = L.lit((0.80, 0.70, 0.52)) if not L.night else L.lit((0.5, 0.45, 0.4))
        water = over(water, below(shore), sand)
        foam = np.exp(-((_YY - shore[None, :]) / 1.5) ** 2) * 0.6
        water = water + foam[..., None] * L.lit((1, 1, 1))
    img = np.where((_YY >= hy)[..., None], water, img)
    if rng.uniform() < 0.35:  # a distant headland
        x0 = rng.uniform(-0.2, 0.7) * W
        hl = hy - np.clip(rng.uniform(5, 14) * (1 - ((_XX[0] - x0) / rng.uniform(40, 120)) ** 2), 0, None) \
            - 1.5 * fbm1d(rng, 12, 3)
        img = over(img, below(hl) * (_YY < hy + 1), L.haze(L.lit((0.15, 0.2, 0.18)), 0.55))
    return img


def scene_mountains(rng, L):
    hy = rng.uniform(0.55, 0.75) * H
    img, (sx, sy) = sky(rng, L, hy)
    img = add_stars(rng, img, L, hy)
    img = clouds(rng, img, L, hy, cover=rng.uniform(0, 0.35))
    layers = rng.integers(2, 4)
    for i in range(layers):
        depth = 1 - i / layers  # 1 = far
        base = hy - (0.32 - 0.12 * i) * H * rng.uniform(0.7, 1.2)
        r = ridge(rng, base, rng.uniform(14, 30) * (1.2 - 0.3 * i), rng.uniform(2, 5), 6, sharp=0.7)
        r = np.minimum(r, H - 6 - 6 * (layers - i))
        slope = np.convolve(np.gradient(r), np.ones(5, F32) / 5, mode="same")
        side = np.sign(sx - W / 2) if L.phase != "day" else (1 if rng.uniform() < 0.5 else -1)
        face = np.tanh(-slope * side * 0.5)
        d = np.clip(_YY - r[None, :], 0, None) * F32(rng.uniform(0.5, 0.9))
        xi = _XX.astype(int)
        f1 = face[np.clip(xi + d.astype(int), 0, W - 1)]
        f2 = face[np.clip(xi - d.astype(int), 0, W - 1)]
        shade = 0.78 + 0.3 * (0.5 * (f1 + f2)) * np.exp(-d / 40)
        rock = np.array([0.36, 0.36, 0.40], F32) * F32(rng.uniform(0.8, 1.2))
        tex = fbm2d(rng, 8, 20, 4)
        snowline = r[None, :] + rng.uniform(10, 30) + 10 * fbm2d(rng, 3, 12, 3) + 8 * tex
        snow = smoothstep(-2, 2, snowline - _YY) * smoothstep(-1, 4, tex * 6 + 2 + (snowline - _YY) * 0.2)
        mat = lerp(rock * (1 + 0.25 * tex[..., None]), np.array([0.95, 0.96, 1.0], F32), snow[..., None])
        col = L.lit(mat) * (shade[..., None] * (1 + 0.3 * (1 - depth)))
        col = lerp(col, L.hor * 0.9, F32(0.55 * depth ** 1.5))
        img = over(img, below(r), col)
    # foreground: dark pine line or meadow
    fg = H - rng.uniform(6, 18) - 4 * fbm1d(rng, 4, 3)
    if rng.uniform() < 0.6:
        fg = np.minimum(fg, tree_line(rng, fg, rng.uniform(6, 16), 60))
    img = over(img, below(fg), L.lit((0.06, 0.12, 0.08)))
    return img


def tree_line(rng, base, height, n):
    """Conifer silhouettes on top of a base line: min over triangles (rows grow downwards)."""
    xc = rng.uniform(-5, W + 5, n).astype(F32)
    h = (height * rng.uniform(0.5, 1.2, n)).astype(F32)
    w = (h * rng.uniform(0.22, 0.38, n)).astype(F32)
    dx = np.abs(_XX[0][None, :] - xc[:, None])
    saw = 1 + 0.18 * np.sin(dx * 1.7)  # a little jaggedness on the flanks
    top = base[None, :] - h[:, None] + dx / w[:, None] * h[:, None] * saw
    return np.minimum(top.min(0), base)


def scene_stars(rng, L):
    hy = rng.uniform(0.68, 0.85) * H
    img, (sx, sy) = sky(rng, L, hy)
    img = add_stars(rng, img, L, hy, density=rng.uniform(1.3, 2.0), milky=rng.uniform() < 0.7)
    if L.phase == "day":
        img = clouds(rng, img, L, hy, cover=rng.uniform(0.0, 0.25))
    hill = ridge(rng, hy, rng.uniform(4, 12), rng.uniform(1, 3), 4)
    sil = L.lit((0.05, 0.07, 0.06), 0.8 if L.phase != "day" else 1.6)
    img = over(img, below(hill), sil)
    if rng.uniform() < 0.6:  # a lone tree on the hill
        tx = rng.uniform(0.1, 0.9) * W
        ty = hill[int(np.clip(tx, 0, W - 1))]
        th = rng.uniform(14, 28)
        trunk = (np.abs(_XX - tx) < 1.2) & (_YY > ty - th * 0.6) & (_YY < ty + 1)
        canopy = fbm2d(rng, 6, 16, 3)
        cr = th * 0.45
        blob = np.clip(cr - np.hypot(_XX - tx, (_YY - (ty - th * 0.7)) * 1.3) + canopy * cr * 0.6, 0, 1)
        img = over(img, np.maximum(trunk.astype(F32), blob), sil)
    return img


def buildings(rng, hy, n_min, n_max, h_lo, h_hi):
    """Per-column building tops and ids for one skyline layer."""
    widths = rng.uniform(n_min, n_max, 64)
    edges = np.concatenate([[0], np.cumsum(widths)]) - rng.uniform(0, n_max)
    edges = edges[edges < W + n_max]
    ids = np.clip(np.searchsorted(edges, _XX[0], side="right") - 1, 0, len(edges) - 1)
    heights = rng.uniform(h_lo, h_hi, len(edges)) * (1 + 0.8 * (rng.uniform(0, 1, len(edges)) < 0.15))
    top = hy - heights[ids]
    # spires on a few tall ones
    centres = (edges[:-1] + edges[1:]) / 2
    for k in np.nonzero(heights[:-1] > np.percentile(heights, 80))[0][:3]:
        if rng.uniform() < 0.6:
            cx = centres[k]
            top = np.minimum(top, np.where(np.abs(_XX[0] - cx) < 1.0, hy - heights[k] - rng.uniform(5, 12), 1e9))
    return top.astype(F32), ids, edges


def windows(rng, ids, top, lit_p, px=(3, 5), py=(3, 5)):
    """Window grid mask and lit mask over the whole frame for a building layer."""
    nb = ids.max() + 1
    pxs = rng.integers(px[0], px[1] + 1, nb)[ids]
    pys = rng.integers(py[0], py[1] + 1, nb)[ids]
    offs = rng.integers(0, 7, nb)[ids]
    xx = (_XX + offs[None, :]).astype(int)
    yy = (_YY - top[None, :] - 3).astype(int)
    cell_x = xx // pxs[None, :]
    cell_y = yy // pys[None, :]
    win = ((xx % pxs[None, :]) < np.maximum(pxs - 1, 1)[None, :] - (pxs[None, :] > 3)) & \
        ((yy % pys[None, :]) < (pys[None, :] - 1)) & (yy >= 0)
    table = rng.uniform(0, 1, (97, 89))
    lit = table[cell_y % 97, (cell_x + ids[None, :] * 13) % 89] < lit_p
    return win, lit


def skyline(rng, img, L, hy, haze, dark, lit_p, n_range=(7, 22), h_range=(15, 45), neon=False):
    top, ids, _ = buildings(rng, hy, *n_range, *h_range)
    mask = below(top) * (_YY < hy + 0.5)
    facade = np.array([0.42, 0.44, 0.5], F32) * F32(rng.uniform(0.7, 1.2)) * \
        (1 + 0.25 * rng.uniform(-1, 1, ids.max() + 1)[ids])[None, :, None]
    col = L.lit(facade) * F32(dark)
    win, lit = windows(rng, ids, top, lit_p)
    if L.phase == "day":
        wcol = L.lit((0.55, 0.68, 0.82))
        col = np.where(win[..., None], wcol, col)
    else:
        warm = lerp((1.0, 0.82, 0.45), (0.9, 0.95, 1.0), rng.uniform(0, 1, (H, W))[..., None] ** 4 * 0.6)
        col = np.where((win & lit)[..., None], warm * F32(0.9 if L.night else 0.75), col)
        col = np.where((win & ~lit)[..., None], col * 0.8, col)
        if neon:
            nb = ids.max() + 1
            has = rng.uniform(0, 1, nb) < 0.35
            hue = rng.integers(0, 3, nb)
            palette = np.array([[1.0, 0.2, 0.6], [0.2, 0.9, 1.0], [1.0, 0.5, 0.1]], F32)
            sign_y = top + rng.uniform(4, 20, nb)[ids]
            sign = has[ids][None, :] & (np.abs(_YY - sign_y[None, :]) < 1.6) & \
                (np.abs(_XX - np.round(_XX / 14) * 14) < 5)
            col = np.where(sign[..., None], palette[hue[ids]][None, :, :], col)
    col = lerp(col, L.hor * 0.9, F32(haze))
    return over(img, mask, col), top


def scene_city(rng, L):
    hy = rng.uniform(0.72, 0.86) * H
    img, sun = sky(rng, L, hy)
    img = add_stars(rng, img, L, hy, density=0.5)
    img = clouds(rng, img, L, hy, cover=rng.uniform(0, 0.4))
    lit_p = {"night": 0.55, "dusk": 0.35, "dawn": 0.2, "day": 0.0}[L.phase] * rng.uniform(0.7, 1.3)
    img, _ = skyline(rng, img, L, hy, 0.45, 0.9, lit_p * 0.6, (10, 26), (25, 60))
    img, top = skyline(rng, img, L, hy, 0.0, 0.7, lit_p, (8, 24), (12, 40))
    if rng.uniform() < 0.5:  # harbour water with reflections of the lights
        src = np.clip(2 * hy - _YY, 0, H - 1).astype(int)
        wob = (2.5 * fbm2d(rng, 20, 4, 2)).astype(int)
        refl = img[src, np.clip(_XX.astype(int) + wob, 0, W - 1)] * 0.55
        water = lerp(refl, L.top * 0.8, 0.25)
        img = np.where((_YY >= hy)[..., None], water, img)
    else:
        ground = L.lit((0.18, 0.18, 0.2)) * (1 + 0.2 * fbm2d(rng, 4, 12, 3))[..., None]
        img = np.where((_YY >= hy)[..., None], ground, img)
        if L.phase != "day":  # a lit road
            road = np.exp(-((_YY - (hy + (H - hy) * 0.5)) / 1.5) ** 2)
            img = img + (road * 0.6)[..., None] * np.array([1.0, 0.7, 0.35], F32)
    return img


def scene_forest(rng, L):
    hy = rng.uniform(0.45, 0.65) * H
    img, (sx, sy) = sky(rng, L, hy)
    img = add_stars(rng, img, L, hy)
    img = clouds(rng, img, L, hy, cover=rng.uniform(0, 0.45))
    layers = rng.integers(3, 5)
    green = np.array([0.10, 0.30, 0.14], F32) * F32(rng.uniform(0.7, 1.3))
    autumn = rng.uniform() < 0.15
    for i in range(layers):
        depth = 1 - (i + 0.5) / layers
        base = hy + (H - hy) * (i / layers) * 0.85 + 3 * fbm1d(rng, 2, 3) + 4
        height = rng.uniform(10, 22) * (0.6 + 0.6 * i / layers) + 6
        top = tree_line(rng, base, height, int(rng.uniform(35, 70) * (1 - 0.3 * i / layers)))
        tex = fbm2d(rng, 12, 30, 3)
        mat = green * (1 + 0.35 * tex[..., None])
        if autumn:
            mat = lerp(mat, np.array([0.55, 0.30, 0.08], F32), (0.5 + 0.5 * np.clip(tex, -1, 1))[..., None] * 0.8)
        col = L.lit(mat) * F32(0.7 + 0.4 * i / layers)
        col = lerp(col, L.hor * 0.9, F32(0.75 * depth ** 1.2))
        img = over(img, below(top), col)
    if L.phase in ("day", "dawn") and rng.uniform() < 0.5:  # god rays
        ang = np.arctan2(_YY - sy, _XX - sx)
        rays = np.clip(fbm1d(rng, 24, 2, n=360)[((ang + np.pi) / (2 * np.pi) * 359).astype(int)], 0, None)
        img = img + (rays * 0.25 * smoothstep(H, 0, _YY))[..., None] * L.sun
    return img


def scene_desert(rng, L):
    hy = rng.uniform(0.50, 0.70) * H
    img, (sx, sy) = sky(rng, L, hy)
    img = add_stars(rng, img, L, hy)
    img = clouds(rng, img, L, hy, cover=rng.uniform(0, 0.25))
    sand = np.array([0.85, 0.62, 0.36], F32) * F32(rng.uniform(0.85, 1.1))
    if rng.uniform() < 0.4:  # mesas on the horizon
        x0 = rng.uniform(0, W)
        wd = rng.uniform(30, 90)
        prof = hy - rng.uniform(8, 20) * smoothstep(wd, wd * 0.75, np.abs(_XX[0] - x0))
        img = over(img, below(prof), L.haze(L.lit(sand * np.array([0.8, 0.55, 0.45], F32)), 0.5))
    layers = rng.integers(2, 5)
    side = np.sign(sx - W / 2) or 1.0
    for i in range(layers):
        depth = 1 - (i + 0.5) / layers
        base = hy + (H - hy) * (i / layers) * 0.8 + 2
        amp = rng.uniform(6, 16) * (0.6 + i / layers)
        ph = rng.uniform(0, 2 * np.pi)
        fr = rng.uniform(1.5, 4) * 2 * np.pi / W
        r = base - amp * (0.5 + 0.5 * np.sin(_XX[0] * fr + ph + 0.8 * fbm1d(rng, 2, 2))) ** 1.5
        slope = np.gradient(r)
        lit_side = 0.55 + 0.45 * smoothstep(-0.15, 0.15, -slope * side)
        below_crest = np.clip((_YY - r[None, :]) / 20, 0, 1)
        shade = lerp(lit_side[None, :], 0.8, below_crest)
        ripple = 1 + 0.05 * np.sin(_YY * rng.uniform(1.2, 2.0) + 6 * fbm2d(rng, 3, 10, 2))
        col = L.lit(sand) * (shade * ripple)[..., None]
        col = lerp(col, L.hor * 0.9, F32(0.5 * depth ** 1.5))
        img = over(img, below(r), col)
    if rng.uniform() < 0.3:  # a cactus
        cx, cy = rng.uniform(0.1, 0.9) * W, H - rng.uniform(3, 15)
        ch = rng.uniform(14, 28)
        body = (np.abs(_XX - cx) < 1.8) & (_YY > cy - ch) & (_YY < cy)
        arm = (np.abs(_XX - cx - 5) < 1.4) & (_YY > cy - ch * 0.75) & (_YY < cy - ch * 0.4)
        link = (np.abs(_YY - cy + ch * 0.42) < 1.4) & (_XX > cx) & (_XX < cx + 6)
        img = over(img, (body | arm | link).astype(F32), L.lit((0.12, 0.25, 0.12)))
    return img


def scene_aurora(rng, L):
    hy = rng.uniform(0.60, 0.78) * H
    img, sun = sky(rng, L, hy)
    img = add_stars(rng, img, L, hy, density=1.2)
    strength = {"night": 1.0, "dusk": 0.75, "dawn": 0.65, "day": 0.55}[L.phase]
    green = np.array([0.15, 1.0, 0.45], F32)
    pink = np.array([0.75, 0.25, 0.95], F32) if rng.uniform() < 0.6 else np.array([0.2, 0.6, 1.0], F32)
    curtain = np.zeros((H, W, 3), F32)
    for _ in range(rng.integers(1, 4)):
        yc = hy * rng.uniform(0.35, 0.7) + hy * 0.2 * fbm1d(rng, 2, 4)
        ext = hy * rng.uniform(0.25, 0.5)
        rays = np.clip(0.55 + fbm1d(rng, 40, 3) * 1.2, 0, 1.2) * np.clip(0.6 + fbm1d(rng, 3, 2) * 1.5, 0, 1)
        up = (yc[None, :] - _YY) / ext
        prof = np.where(up > 0, np.exp(-up * 2.2), np.exp(-((up * ext / 3) ** 2)))
        c = lerp(green, pink, np.clip(up, 0, 1)[..., None] ** 1.5)
        curtain += (prof * rays[None, :])[..., None] * c
    curtain = np.clip(curtain, 0, 1.3)
    if L.phase == "day":
        img = lerp(img, img * 0.55 + curtain * 0.6, np.clip(curtain.max(-1), 0, 1)[..., None] * strength)
    else:
        img = img + curtain * F32(0.55 * strength)
    mtn = ridge(rng, hy - rng.uniform(0, 6), rng.uniform(5, 14), rng.uniform(2, 5), 5, sharp=0.5)
    img = over(img, below(mtn), L.haze(L.lit((0.12, 0.14, 0.2)), 0.3))
    snow = lerp(np.array([0.85, 0.9, 1.0], F32), curtain.mean(1, keepdims=True).mean(0) * 0.5, 0.15)
    ground = L.lit(snow) * (0.85 + 0.15 * smoothstep(hy, H, _YY))[..., None] + curtain[::-1] * 0.08
    img = np.where((_YY >= hy + 2)[..., None], ground, img)
    trees = tree_line(rng, hy + 2 + rng.uniform(2, 8) + 0 * _XX[0], rng.uniform(5, 12), 30)
    img = over(img, below(trees) * (_YY < hy + 14), L.lit((0.03, 0.06, 0.05)))
    return img


def scene_lake(rng, L):
    wy = rng.uniform(0.50, 0.66) * H
    hy = wy - rng.uniform(0, 6)
    img, (sx, sy) = sky(rng, L, hy)
    img = add_stars(rng, img, L, hy)
    img = clouds(rng, img, L, hy, cover=rng.uniform(0, 0.5))
    if rng.uniform() < 0.5:  # far mountains
        r = ridge(rng, wy - rng.uniform(16, 34), rng.uniform(10, 22), rng.uniform(2, 4), 5, sharp=0.6)
        tex = fbm2d(rng, 6, 16, 3)
        snow = smoothstep(-1, 1, (r[None, :] + 10 + 6 * tex) - _YY)
        mat = lerp(np.array([0.3, 0.32, 0.36], F32), np.array([0.95, 0.96, 1.0], F32), snow[..., None])
        img = over(img, below(r), L.haze(L.lit(mat), 0.35))
    top = tree_line(rng, np.full(W, wy, F32) - 1, rng.uniform(6, 16), 70)
    img = over(img, below(top), L.lit(np.array([0.08, 0.2, 0.1], F32) * (1 + 0.3 * fbm2d(rng, 10, 30, 2))[..., None]))
    # mirror with ripples
    src_y = np.clip(2 * wy - _YY, 0, H - 1)
    wob = 2.0 * fbm2d(rng, 28, 4, 2) * smoothstep(wy, H, _YY) * rng.uniform(0.5, 2.0)
    src_x = np.clip(_XX + wob, 0, W - 1)
    refl = img[src_y.astype(int), src_x.astype(int)]
    tint = lerp(np.ones(3, F32), np.array([0.7, 0.85, 0.95], F32), 0.5)
    water = refl * tint * F32(rng.uniform(0.7, 0.85))
    streak = np.clip(fbm2d(rng, 40, 3, 2), 0, None) * 0.15
    water = water + streak[..., None] * L.hor
    img = np.where((_YY >= wy)[..., None], water, img)
    if rng.uniform() < 0.4:  # a pier or a near shore
        shore = H - rng.uniform(3, 12) - 4 * fbm1d(rng, 3, 3)
        img = over(img, below(shore), L.lit((0.16, 0.2, 0.12)))
    return img


def scene_rain(rng, L):
    hy = rng.uniform(0.62, 0.78) * H
    # overcast: pull the palette towards grey
    for name in ("top", "mid", "hor"):
        c = getattr(L, name)
        setattr(L, name, lerp(c, np.full(3, c.mean(), F32) * 0.85, 0.6))
    L.sun = lerp(L.sun, np.full(3, 0.8, F32), 0.5)
    img, sun = sky(rng, L, hy, sun_xy=(rng.uniform(0, W), -100.0), sun_r=1.0)
    img = clouds(rng, img, L, hy, cover=rng.uniform(0.5, 0.9))
    lit_p = {"night": 0.6, "dusk": 0.45, "dawn": 0.25, "day": 0.05}[L.phase] * rng.uniform(0.8, 1.2)
    img, _ = skyline(rng, img, L, hy, 0.55, 0.9, lit_p * 0.6, (10, 24), (20, 55))
    img, top = skyline(rng, img, L, hy, 0.2, 0.75, lit_p, (8, 20), (12, 36), neon=L.phase != "day")
    if L.phase != "day":  # city glow in the haze
        img = img + (smoothstep(hy * 0.3, hy, _YY) * 0.06)[..., None] * np.array([1.0, 0.5, 0.3], F32)
    # wet street: stretched, darkened reflections of the lights
    src_y = np.clip(2 * hy - _YY, 0, H - 1).astype(int)
    refl = img[src_y, _XX.astype(int)]
    refl = blur(refl, 2)
    refl = np.maximum(refl - 0.05, 0) * 0.8 + (refl ** 2) * 0.5
    street = L.lit((0.1, 0.1, 0.12)) + refl * 0.7
    img = np.where((_YY >= hy)[..., None], street, img)
    if L.phase != "day":  # street lamps
        n = rng.integers(3, 7)
        for k in range(n):
            lx = (k + rng.uniform(0.2, 0.8)) * W / n
            ly = hy - rng.uniform(6, 14)
            g = np.exp(-np.hypot(_XX - lx, _YY - ly) / 3.0)
            img = img + (g * 0.8)[..., None] * np.array([1.0, 0.8, 0.5], F32)
    # rain streaks
    drops = (rng.uniform(0, 1, (H, W)) < rng.uniform(0.006, 0.015)).astype(F32)
    ln = int(rng.integers(6, 12))
    slant = rng.choice([-1, 0, 1])
    streaks = np.zeros((H, W), F32)
    for k in range(ln):
        streaks += np.roll(np.roll(drops, k, 0), slant * (k // 3), 1)
    level = 0.22 if L.phase == "day" else 0.16
    img = img + (np.clip(streaks, 0, 1) * level)[..., None] * lerp(L.hor, np.ones(3, F32), 0.5)
    return img * F32(0.92)


def scene_blossom(rng, L):
    hy = rng.uniform(0.55, 0.75) * H
    img, (sx, sy) = sky(rng, L, hy)
    img = add_stars(rng, img, L, hy, density=0.6)
    img = clouds(rng, img, L, hy, cover=rng.uniform(0, 0.3))
    hill = ridge(rng, hy, rng.uniform(4, 14), 2, 4)
    img = over(img, below(hill), L.haze(L.lit((0.3, 0.45, 0.3)), 0.4))
    ground = hy + rng.uniform(4, 12) + 3 * fbm1d(rng, 3, 3)
    grass = np.array([0.35, 0.55, 0.25], F32) * (1 + 0.2 * fbm2d(rng, 6, 20, 3))[..., None]
    img = over(img, below(ground), L.lit(grass))
    pink = lerp(np.array([1.0, 0.62, 0.78], F32), np.array([1.0, 0.86, 0.92], F32), rng.uniform(0, 1))
    canopy = np.zeros((H, W), F32)
    trunks = np.zeros((H, W), F32)
    for _ in range(rng.integers(1, 4)):
        tx = rng.uniform(0.05, 0.95) * W
        base = ground[int(np.clip(tx, 0, W - 1))] + rng.uniform(2, 10)
        th = rng.uniform(0.45, 0.75) * H
        lean = rng.uniform(-0.3, 0.3)
        ty = base - th
        yy = np.clip((base - _YY) / th, 0, 1)
        trunk_x = tx + lean * (base - _YY) * 0.5
        tw = 2.5 * (1 - yy * 0.6)
        trunks = np.maximum(trunks, np.clip(tw - np.abs(_XX - trunk_x) + 0.5, 0, 1) * (_YY > ty + th * 0.3) * (_YY < base))
        cx, cy = tx + lean * th * 0.5, ty + th * 0.3
        rx, ry = th * rng.uniform(0.7, 1.1), th * 0.42
        d = np.hypot((_XX - cx) / rx, (_YY - cy) / ry)
        canopy = np.maximum(canopy, 1 - d)
    if rng.uniform() < 0.5:  # an overhanging branch along the top
        cy = rng.uniform(-10, 8)
        canopy = np.maximum(canopy, 0.6 - np.abs(_YY - cy - 10 * fbm1d(rng, 2, 3)[None, :]) / 22)
    tex = fbm2d(rng, 6, 16, 3)
    fine = fbm2d(rng, 24, 60, 2)
    blossom = smoothstep(0.0, 0.18, canopy + 0.12 * tex + 0.06 * fine)
    img = over(img, trunks, L.lit((0.22, 0.14, 0.12)))
    petal = lerp(pink * 0.72, pink * 1.12, smoothstep(-0.4, 0.4, fine + 0.5 * tex)[..., None])
    bright = 1.0 if not L.night else 1.6  # blossoms glow a little under lanterns and moon
    img = over(img, blossom, np.minimum(L.lit(petal, bright), 1.0))
    # falling petals
    pts = (rng.uniform(0, 1, (H, W)) < 0.004).astype(F32)
    pts = blur(pts, 1) * 3
    img = over(img, np.clip(pts, 0, 1) * 0.8, np.minimum(L.lit(pink, bright), 1.0))
    if L.night and rng.uniform() < 0.6:  # lanterns
        for _ in range(rng.integers(2, 6)):
            lx, ly = rng.uniform(0, W), rng.uniform(0.2, 0.6) * H
            g = np.exp(-np.hypot(_XX - lx, (_YY - ly) * 0.8) / 2.5)
            img = img + (g * 0.9)[..., None] * np.array([1.0, 0.45, 0.2], F32)
    return img


SCENES = {
    "sea": scene_sea, "mountains": scene_mountains, "stars": scene_stars, "city": scene_city,
    "forest": scene_forest, "desert": scene_desert, "aurora": scene_aurora, "lake": scene_lake,
    "rain": scene_rain, "blossom": scene_blossom,
}


# ------------------------------------------------------------------------------------------------
# Styles and the top-level renderer
# ------------------------------------------------------------------------------------------------
def apply_styles(rng, img, styles, L: Light):
    for s in styles:
        if s == "warm":
            img = img * np.array([1.12, 1.0, 0.80], F32) + np.array([0.03, 0.01, 0.0], F32) * L.amb
        elif s == "cool":
            img = img * np.array([0.82, 0.96, 1.15], F32) + np.array([0.0, 0.01, 0.03], F32) * L.amb
        elif s == "misty":
            fog = lerp(L.hor, np.full(3, L.hor.mean(), F32), 0.5) * (0.9 if not L.night else 0.8)
            amount = F32(rng.uniform(0.35, 0.55))
            prof = amount * (0.55 + 0.45 * smoothstep(0, H * 0.7, _YY)) * (0.85 + 0.3 * fbm2d(rng, 2, 5, 3))
            img = lerp(img, fog, np.clip(prof, 0, 0.8)[..., None])
        elif s == "vivid":
            lum = luminance(img)[..., None]
            img = lum + (img - lum) * F32(1.5)
            img = (img - 0.5) * F32(1.08) + 0.5 if not L.night else img * F32(1.1)
    return img


def render(rng, meta) -> np.ndarray:
    """Renders `meta` ({"family", "phase", "styles"}) to uint8 [H, W, 3]."""
    L = Light(rng, meta["phase"])
    img = SCENES[meta["family"]](rng, L)
    img = apply_styles(rng, np.asarray(img, F32), meta.get("styles", ()), L)
    if rng.uniform() < 0.5:
        img = img[:, ::-1]
    img = np.clip(img, 0, 1) ** F32(1 / 1.0)
    return (img * 255 + rng.uniform(0, 1, (H, W, 1))).astype(np.uint8)  # 1-level dither, no banding


def random_scene(rng, family=None, phase=None, styles=None):
    fam = family or FAMILIES[rng.integers(len(FAMILIES))]
    ph = phase or PHASES[rng.integers(len(PHASES))]
    if styles is None:
        u = rng.uniform()
        styles = []
        if u > 0.55:
            styles.append(STYLES[rng.integers(4)])
        if u > 0.9:
            extra = STYLES[rng.integers(4)]
            if extra not in styles and {extra, styles[0]} != {"warm", "cool"}:
                styles.append(extra)
    return {"family": fam, "phase": ph, "styles": list(styles)}


# ------------------------------------------------------------------------------------------------
# Captions
# ------------------------------------------------------------------------------------------------
NAMES_EN = {
    "sea": ["sea", "the sea", "ocean", "the ocean", "seaside", "ocean view", "seascape"],
    "mountains": ["snowy mountains", "snow mountains", "snow-capped peaks", "mountains with snow", "snowy peaks"],
    "stars": ["starry sky", "starry night", "stars", "a sky full of stars", "the milky way"],
    "city": ["city skyline", "skyline", "city", "downtown skyline", "skyscrapers", "the city"],
    "forest": ["forest", "pine forest", "woods", "woodland", "a forest"],
    "desert": ["desert", "sand dunes", "dunes", "desert dunes", "the desert"],
    "aurora": ["aurora", "northern lights", "aurora borealis", "polar lights", "the northern lights"],
    "lake": ["lake with reflections", "lake", "mirror lake", "calm lake", "lake reflection", "a lake"],
    "rain": ["rainy city", "city in the rain", "rainy street", "rain in the city", "rainy city street"],
    "blossom": ["cherry blossoms", "sakura", "cherry blossom trees", "blossoming cherry trees", "cherry trees in bloom"],
}
NAMES_ZH = {
    "sea": ["海", "大海", "海边", "海景", "海面"],
    "mountains": ["雪山", "雪峰", "雪山风景", "积雪的山峰"],
    "stars": ["星空", "满天星", "星夜", "银河", "满天繁星"],
    "city": ["城市天际线", "城市", "都市", "高楼", "城市风景"],
    "forest": ["森林", "树林", "松林", "林海"],
    "desert": ["沙漠", "沙丘", "大漠"],
    "aurora": ["极光", "北极光", "极光夜空"],
    "lake": ["湖", "湖泊", "湖面倒影", "倒影湖", "平静的湖面"],
    "rain": ["雨中的城市", "下雨的城市", "雨城", "雨中街道", "雨天的城市"],
    "blossom": ["樱花", "樱花树", "樱花盛开", "盛开的樱花"],
}
# phase-specific whole names (used sometimes instead of name + phase)
SPECIAL_EN = {("sea", "dusk"): ["sea sunset", "sunset over the sea", "ocean sunset"],
              ("sea", "dawn"): ["sunrise over the sea", "ocean sunrise"],
              ("stars", "night"): ["starry night"], ("rain", "night"): ["rainy night in the city"],
              ("desert", "dusk"): ["desert sunset"], ("city", "night"): ["city lights at night"]}
SPECIAL_ZH = {("sea", "dusk"): ["海上日落", "海边夕阳"], ("sea", "dawn"): ["海上日出"],
              ("rain", "night"): ["雨夜城市", "雨夜的街道"], ("desert", "dusk"): ["沙漠落日"],
              ("city", "night"): ["城市夜景"], ("stars", "night"): ["夜晚的星空"]}
PHASE_EN = {
    "dawn": (["at dawn", "at sunrise", "in the early morning", "at daybreak"], ["dawn", "sunrise", "early morning"]),
    "day": (["during the day", "at noon", "in daylight", "in the daytime", "on a sunny day"], ["daytime", "sunny", "midday"]),
    "dusk": (["at dusk", "at sunset", "in the evening", "at twilight"], ["dusk", "sunset", "evening"]),
    "night": (["at night", "at midnight", "by night", "in the night"], ["night", "midnight", "nighttime"]),
}
PHASE_ZH = {"dawn": ["黎明", "清晨", "日出时", "早晨", "拂晓"], "day": ["白天", "中午", "晴天", "白日"],
            "dusk": ["黄昏", "傍晚", "日落时", "夕阳下"], "night": ["夜晚", "晚上", "深夜", "夜里", "夜间"]}
STYLE_EN = {"warm": ["warm", "warm-toned", "golden"], "cool": ["cool", "cool-toned", "blue-toned"],
            "misty": ["misty", "foggy", "hazy"], "vivid": ["vivid", "colorful", "vibrant"]}
STYLE_ZH = {"warm": ["暖色调", "温暖的", "暖色的"], "cool": ["冷色调", "清冷的", "冷色的"],
            "misty": ["有雾的", "雾气弥漫的", "朦胧的", "起雾的"], "vivid": ["鲜艳的", "色彩鲜艳的", "绚丽的"]}
FILLER_EN = ["{}", "{}", "{}", "make me a wallpaper of {}", "a wallpaper of {}", "{} wallpaper", "show me {}",
             "i want {}", "change the wallpaper to {}", "a picture of {}", "generate {}", "draw {}",
             "can you make {}", "background with {}", "new wallpaper: {}", "set the background to {}",
             "give me {}", "please show {}", "a beautiful view of {}", "{}, wallpaper"]
FILLER_ZH = ["{}", "{}", "{}", "换一张{}的壁纸", "来个{}壁纸", "给我一张{}", "{}壁纸", "生成{}", "我想要{}",
             "画一张{}", "把壁纸换成{}", "来一张{}的图片", "换个{}的背景", "请生成{}的壁纸", "来点{}", "显示{}"]


def _pick(rng, xs):
    return xs[rng.integers(len(xs))]


def caption_en(rng, meta, with_phase=True):
    fam, ph, styles = meta["family"], meta["phase"], meta["styles"]
    st = " and ".join(_pick(rng, STYLE_EN[s]) for s in styles)
    special = SPECIAL_EN.get((fam, ph))
    if with_phase and special and rng.uniform() < 0.4:
        core = _pick(rng, special)
        core = f"{st} {core}" if st else core
    else:
        name = _pick(rng, NAMES_EN[fam])
        if not with_phase:
            core = f"{st} {name}" if st else name
        elif rng.uniform() < 0.65:
            core = f"{name} {_pick(rng, PHASE_EN[ph][0])}"
            if st:
                core = f"{st} {core}" if rng.uniform() < 0.5 else f"{core}, {st}"
        else:
            core = f"{_pick(rng, PHASE_EN[ph][1])} {name}"
            if st:
                core = f"{st} {core}" if rng.uniform() < 0.5 else f"{core}, {st}"
    text = _pick(rng, FILLER_EN).format(core)
    if rng.uniform() < 0.15:
        text = text.capitalize()
    return text


def caption_zh(rng, meta, with_phase=True):
    fam, ph, styles = meta["family"], meta["phase"], meta["styles"]
    st = "".join(_pick(rng, STYLE_ZH[s]) for s in styles)
    special = SPECIAL_ZH.get((fam, ph))
    if with_phase and special and rng.uniform() < 0.4:
        core = st + _pick(rng, special)
    else:
        name = _pick(rng, NAMES_ZH[fam])
        if not with_phase:
            core = st + name
        else:
            p = _pick(rng, PHASE_ZH[ph])
            form = rng.integers(3)
            if form == 0:
                core = f"{p}的{st}{name}"
            elif form == 1:
                core = f"{st}{name}的{p}" if not st or rng.uniform() < 0.5 else f"{name}的{p}，{st}"
            else:
                core = f"{p}{st}{name}"
    return _pick(rng, FILLER_ZH).format(core)


def caption(rng, meta, lang=None, phase_p=0.88):
    """A random caption for a rendered scene; the phase is left out with probability 1 - phase_p."""
    lang = lang or ("zh" if rng.uniform() < 0.45 else "en")
    with_phase = rng.uniform() < phase_p
    return (caption_zh if lang == "zh" else caption_en)(rng, meta, with_phase)


def canonical(meta, lang="en"):
    """The plain prompt used for sample sheets: 'snowy mountains at dusk' / '黄昏的雪山'."""
    fam, ph = meta["family"], meta["phase"]
    if lang == "en":
        return f"{NAMES_EN[fam][0]} {PHASE_EN[ph][0][0]}"
    return f"{PHASE_ZH[ph][0]}的{NAMES_ZH[fam][0]}"


def corpus(rng, n=20000):
    """Caption text for training a tokenizer: random captions of every kind."""
    out = []
    for _ in range(n):
        meta = random_scene(rng)
        out.append(caption(rng, meta))
    for fam in FAMILIES:
        for ph in PHASES:
            m = {"family": fam, "phase": ph, "styles": []}
            out += [canonical(m, "en"), canonical(m, "zh")]
    return out


# ------------------------------------------------------------------------------------------------
def contact_sheet(path: Path, seed=0):
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    rows = []
    t0 = time.perf_counter()
    n = 0
    stats = {p: [] for p in PHASES}
    for fam in FAMILIES:
        row = []
        for ph in PHASES:
            meta = random_scene(rng, fam, ph, styles=[])
            img = render(rng, meta)
            stats[ph].append(luminance(img.astype(F32) / 255).mean())
            row.append(img)
            n += 1
        # one extra column with a random style
        meta = random_scene(rng, fam, PHASES[rng.integers(4)], styles=[STYLES[rng.integers(4)]])
        row.append(render(rng, meta))
        rows.append((row, fam, meta))
        n += 1
    dt = (time.perf_counter() - t0) / n
    pad = 4
    sheet = Image.new("RGB", (5 * (W + pad) + pad, len(rows) * (H + pad + 12) + pad + 12), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(list(PHASES) + ["+style"]):
        draw.text((pad + j * (W + pad) + 4, 2), name, fill=(230, 230, 230))
    for i, (row, fam, meta) in enumerate(rows):
        y = 12 + pad + i * (H + pad + 12)
        draw.text((pad + 4, y), f"{fam}   (last: {meta['phase']}, {', '.join(meta['styles'])})", fill=(230, 230, 230))
        for j, img in enumerate(row):
            sheet.paste(Image.fromarray(img), (pad + j * (W + pad), y + 12))
    sheet.save(path)
    return dt, {p: float(np.mean(v)) for p, v in stats.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "scene_samples.png")
    a = ap.parse_args()
    dt, lum = contact_sheet(a.out, a.seed)
    print(f"wrote {a.out}; {dt * 1e3:.1f} ms per image; mean luminance by phase: "
          + ", ".join(f"{k} {v:.2f}" for k, v in lum.items()))
    rng = np.random.default_rng(a.seed + 1)
    t0 = time.perf_counter()
    for _ in range(100):
        render(rng, random_scene(rng))
    print(f"random scenes: {(time.perf_counter() - t0) * 10:.1f} ms per image")
    for _ in range(6):
        m = random_scene(rng)
        print(m, "|", caption(rng, m, "en"), "|", caption(rng, m, "zh"))


if __name__ == "__main__":
    main()
