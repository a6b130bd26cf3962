#!/usr/bin/env python3
"""Procedural wallpaper scenes for training the in-house wallpaper model (numpy only).

Ten scene families x four light phases (dawn, day, dusk, night) x optional style words
(warm, cool, misty, vivid), drawn from layered silhouettes, gradients and value-noise textures,
with bilingual (English / Chinese) captions in many phrasings.

    from scenes import random_scene, render, caption
    meta = random_scene(rng)                         # {"family", "phase", "styles"}
    img = render(np.random.default_rng(7), meta)     # uint8 [128, 320, 3]
    big = render(np.random.default_rng(7), meta, size=(720, 1920))  # the same scene, drawn at 720x1920
    text = caption(rng, meta)                        # e.g. "make me a wallpaper of snowy mountains at dusk"

Sizes. All geometry is in reference units: pixels of the 128x320 (H x W) frame the model trains
on. `render(rng, meta, size=(h, w))` scales that frame uniformly until it covers h x w (factor
max(w / 320, h / 128)) and crops the overflow evenly, as the display engine does, so 1920x720 is
the 1920x768 drawing less 24 rows at the top and bottom. Every output pixel is drawn at its own
position in the frame, not upscaled: edges are anti-aliased over one output pixel, value noise is
interpolated from random grids whose size never depends on the output, and stars, petals, rain
streaks and windows are objects with their own randomness and sizes in reference units. The rng
is consumed identically at every size, so the same seed and meta give the same scene at any size.

Captions. `caption(rng, meta)` (`caption_en` / `caption_zh` for one language) writes what people
type or say to the car: a subject from the family's lexicon (names, synonyms, adjectives, "X with
Y", and indirect words that belong nearest it: ski slope, camels, arctic, 冰岛, 丁达尔效应), the
phase before or after it or around the whole request ("at dusk", "sunset ...", "雪山的日落",
"黄昏的时候，…") or a phrase that carries it ("sea sunset", "日照金山"), style words likewise
("misty", "in warm tones", "make it vivid", "暖色调一点"), inside one of 85-120 request wordings
per language (commands, wishes, questions, car screens, bare subjects). About a third are speech
transcripts: lowercase, no punctuation, fillers (um, like, 嗯, 那个), a stutter, a misheard word
(dessert, 深林), a wake word; some Chinese requests carry an English word ("来一张 sunset 的海").
A family's general lists never name a phase or a style, so a caption does not contradict its
picture, and over-long draws are redrawn so the text encoder's 30 tokens hold the whole caption.
All choices come from `rng`. `canonical(meta, lang)` is the fixed prompt of sample sheets.

Everything is driven by the numpy Generator handed in. The command line seeds each file on its
own with `scene_rng(seed, family, phase)`; sizes there are WIDTHxHEIGHT:

    python3 onnx/train/scenes.py [--seed 0] [--out onnx/train/scene_samples.png] [--size 320x128]
        contact sheet (one row per family) and timings
    python3 onnx/train/scenes.py --family city --phase night --seeds 0-7 --size 1920x720 --out-dir DIR
        DIR/city-night-0.png ... DIR/city-night-7.png; --family and --phase take a name, a comma
        list or `all`; --seeds `0-7`, `3` or `1,4,9`; --styles warm,misty (default none, `random`
        draws them as training does; styles other than none go into the file name)
    python3 onnx/train/scenes.py --list
        {"families": [...], "phases": [...], "styles": [...]}
    python3 onnx/train/scenes.py --check-distinct 8
        renders 8 per family x phase at 128x320 and prints the family / phase accuracy of a ridge
        classifier on thumbnail colours and gradient histograms (trained on half, tested on half)
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np

H, W = 128, 320  # the reference frame: training size and the unit of all geometry
FAMILIES = ("sea", "mountains", "stars", "city", "forest", "desert", "aurora", "lake", "rain", "blossom")
PHASES = ("dawn", "day", "dusk", "night")
STYLES = ("warm", "cool", "misty", "vivid")

F32 = np.float32


# ------------------------------------------------------------------------------------------------
# Output grid, noise and drawing helpers
# ------------------------------------------------------------------------------------------------
def _cell(pos, n):
    """Left grid index and smoothstep weight of fractional positions on an n-point grid (clamped)."""
    pos = np.clip(pos, 0, n - 1)
    i0 = np.minimum(pos.astype(np.int64), n - 2)
    t = (pos - i0).astype(F32)
    return i0, t * t * (3 - 2 * t)


class Grid:
    """Output pixel centres in reference units: `y` per row, `x` per column, `YY` / `XX` per pixel,
    and `px`, the size of one output pixel. `band` cuts out rows as a grid of their own, so work
    confined to part of the frame (water, a skyline) is done only there."""

    def __init__(self, y, x, px, rows=slice(None)):
        self.y, self.x, self.px, self.rows = y, x, px, rows
        self.h, self.w = len(y), len(x)
        self.YY, self.XX = np.meshgrid(y, x, indexing="ij")
        self._cells = {}

    def band(self, y0, y1=np.inf):
        """Rows from reference row y0 to y1, plus a pixel on each side for anti-aliased edges;
        `rows` is their slice of this grid, for pasting back."""
        m = max(1.0, float(self.px))
        i, j = np.searchsorted(self.y, [y0 - m, y1 + m])
        return Grid(self.y[i:j], self.x, self.px, slice(int(i), int(j)))

    def cells(self, axis, n):
        """Grid index and weight of every output row (axis 0) or column (axis 1) on an n-point noise
        grid spanning the reference frame."""
        key = (axis, n)
        if key not in self._cells:
            coord, extent = (self.y, H) if axis == 0 else (self.x, W)
            self._cells[key] = _cell(coord / (extent - 1) * (n - 1), n)
        return self._cells[key]


@functools.lru_cache(maxsize=4)
def grid(h, w) -> Grid:
    """The grid of an h x w output: the reference frame scaled to cover it, the overflow cropped
    evenly. At 128x320 pixel centres sit on integer coordinates, as the scene geometry assumes."""
    scale = max(w / W, h / H)  # output pixels per reference unit
    y = ((np.arange(h) + 0.5 - h / 2) / scale + (H - 1) / 2).astype(F32)
    x = ((np.arange(w) + 0.5 - w / 2) / scale + (W - 1) / 2).astype(F32)
    return Grid(y, x, F32(1 / scale))


def _fractal(rng, cells, octaves, gain, caps):
    """Random value grids, one per octave, cells doubling each time (capped at the reference
    pixels): they depend only on the arguments, so every output size samples the same noise."""
    layers, amp, total = [], 1.0, 0.0
    cells = np.asarray(cells, float)
    for _ in range(octaves):
        shape = tuple(min(int(c), cap - 1) + 1 for c, cap in zip(cells, caps))
        layers.append((amp, rng.standard_normal(shape).astype(F32)))
        total += amp
        amp *= gain
        cells = cells * 2
    return [(F32(a / total), v) for a, v in layers]


class Noise2:
    """Fractal value noise over the frame, roughly zero-mean, std ~0.5; (cy, cx) cells at the
    lowest octave. `grid(g)` samples it at every output pixel, `at(y, x)` at given points."""

    def __init__(self, rng, cy, cx, octaves=4, gain=0.5):
        self.layers = _fractal(rng, (cy, cx), octaves, gain, (H, W))

    def grid(self, g: Grid):
        # separable and sparse: interpolate each grid along x, then gather rows. No matmul: BLAS
        # threads oversubscribe the CPU when several renderers run at once
        out = np.zeros((g.h, g.w), F32)
        for a, v in self.layers:
            ix, tx = g.cells(1, v.shape[1])
            t = a * (v[:, ix] + tx * (v[:, ix + 1] - v[:, ix]))
            iy, ty = g.cells(0, v.shape[0])
            step = np.diff(t, axis=0)[iy]
            step *= ty[:, None]
            out += t[iy]
            out += step
        return out

    def at(self, y, x):
        out = 0
        for a, v in self.layers:
            iy, ty = _cell(y / (H - 1) * (v.shape[0] - 1), v.shape[0])
            ix, tx = _cell(x / (W - 1) * (v.shape[1] - 1), v.shape[1])
            top = v[iy, ix] * (1 - tx) + v[iy, ix + 1] * tx
            bottom = v[iy + 1, ix] * (1 - tx) + v[iy + 1, ix + 1] * tx
            out = out + a * (top * (1 - ty) + bottom * ty)
        return out


class Noise1:
    """Fractal value noise along x (reference columns), callable at any positions."""

    def __init__(self, rng, cells, octaves=4, gain=0.5):
        self.layers = _fractal(rng, (cells,), octaves, gain, (W,))

    def __call__(self, x):
        out = 0
        for a, v in self.layers:
            i0, t = _cell(np.asarray(x, F32) / (W - 1) * (len(v) - 1), len(v))
            out = out + a * (v[i0] * (1 - t) + v[i0 + 1] * t)
        return out


def fbm2d(rng, g, cy, cx, octaves=4, gain=0.5):
    return Noise2(rng, cy, cx, octaves, gain).grid(g)


def fbm1d(rng, x, cells, octaves=4, gain=0.5):
    return Noise1(rng, cells, octaves, gain)(x)


def smoothstep(a, b, x):
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


def inside(g, sd):
    """Anti-aliased alpha where the signed distance `sd` (reference units) is negative; the edge is
    one output pixel wide at any size."""
    return np.clip(0.5 - sd / g.px, 0, 1)


def below(g, line):
    """Alpha of the region below a line: a row, or one row per output column."""
    return inside(g, line - g.YY)


def within(g, d, half):
    """Alpha where |d| < half: bars, window panes, streaks."""
    return inside(g, np.abs(d) - half)


def disc(g, cx, cy, r):
    return inside(g, np.hypot(g.XX - cx, g.YY - cy) - r)


def over(img, alpha, color):
    out = np.asarray(color, F32) - img  # in place from here: these run on full-size images
    out *= alpha[..., None]
    out += img
    return out


def lerp(a, b, t):
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    out = (b - a) * t
    out += a
    return out


def jitter(rng, c, s=0.06):
    return np.clip(np.asarray(c, F32) * (1 + s * rng.standard_normal(3)).astype(F32), 0, 1.2)


def luminance(img):
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def splat(g, cy, cx, reach_y, reach_x, weight, shear=0.0):
    """Sums small objects (stars, petals, streaks, glows) into an [h, w] layer, visiting only the
    output pixels near each: object i covers rows cy[i] +- reach_y[i] and, on each row, columns
    cx[i] + shear * dy +- reach_x[i] (reference units). weight(dy, dx) gives the value from the
    offsets to that centre, broadcast to [n, rows, cols]; pass per-object parameters as [n, 1, 1]."""
    cy, cx, reach_y, reach_x = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, F32))
                                                     for v in (cy, cx, reach_y, reach_x)))
    if cy.size == 0:
        return np.zeros((g.h, g.w), F32)
    ky = int(np.ceil(2 * reach_y.max() / g.px)) + 2
    kx = int(np.ceil(2 * reach_x.max() / g.px)) + 2
    rows = np.floor((cy - reach_y - g.y[0]) / g.px).astype(np.int64)[:, None] + np.arange(ky)
    dy = g.y[0] + rows * g.px - cy[:, None]
    xc = cx[:, None] + F32(shear) * dy
    cols = np.floor((xc - reach_x[:, None] - g.x[0]) / g.px).astype(np.int64)[..., None] + np.arange(kx)
    dx = g.x[0] + cols * g.px - xc[..., None]
    val = np.broadcast_to(weight(dy[..., None], dx), cols.shape)
    ok = (rows[..., None] >= 0) & (rows[..., None] < g.h) & (cols >= 0) & (cols < g.w) & (val != 0)
    idx = (rows[..., None] * g.w + cols)[ok]
    return np.bincount(idx, val[ok], g.h * g.w).reshape(g.h, g.w).astype(F32)


def blur(g, a, sigma_y, sigma_x):
    """Gaussian-like blur, sigmas in reference units, edges clamped; HxW or HxWxC. Three passes of
    an extended box (odd width plus fractional end taps) per axis match the variance at any size."""
    for axis, sigma in ((0, sigma_y), (1, sigma_x)):
        var = (sigma / g.px) ** 2 / 3  # per pass, in output pixels
        if var <= 0:
            continue
        r = int((np.sqrt(12 * var + 1) - 1) / 2)  # widest plain box (variance r(r+1)/3) that fits
        f = F32(((2 * r + 1) * var - r * (r + 1) * (2 * r + 1) / 3) / (2 * ((r + 1) ** 2 - var)))
        a = np.moveaxis(a, axis, 0)
        n = a.shape[0]
        for _ in range(3):
            p = np.concatenate([a[:1]] * (r + 1) + [a] + [a[-1:]] * (r + 1))
            c = np.concatenate([np.zeros_like(p[:1]), np.cumsum(p, 0, dtype=F32)])
            box = c[2 * r + 2:2 * r + 2 + n] - c[1:1 + n]
            a = (box + f * (p[:n] + p[2 * r + 2:2 * r + 2 + n])) / (2 * r + 1 + 2 * f)
        a = np.moveaxis(a, 0, axis)
    return a


def reflect(g, s, img, axis, wob=0.0):
    """`img` (on grid g) mirrored about row `axis` and sampled at the pixels of grid s (a band
    below the axis), sources shifted by `wob` columns; bilinear, so neither the mirror line nor
    the shift need fall on output pixels."""
    fy = np.clip((2 * axis - s.y - g.y[0]) / g.px, 0, g.h - 1)
    y0 = np.minimum(fy.astype(np.int64), g.h - 2)
    ty = (fy - y0)[:, None, None]
    rows = img[y0] * (1 - ty) + img[y0 + 1] * ty
    fx = np.clip((s.XX + wob - g.x[0]) / g.px, 0, g.w - 1)
    x0 = np.minimum(fx.astype(np.int64), g.w - 2)[..., None]
    tx = (fx[..., None] - x0).astype(F32)
    return np.take_along_axis(rows, x0, 1) * (1 - tx) + np.take_along_axis(rows, x0 + 1, 1) * tx


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


def sky(rng, g, L: Light, hy, sun_xy=None, sun_r=None, moon_phase=None):
    """Gradient sky down to row `hy`, with sun (or moon) disc and glow. Returns (img, sun_xy)."""
    t = np.clip(g.YY / max(hy, 1.0), 0, 1) ** F32(rng.uniform(0.8, 1.4))
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
    d = np.hypot(g.XX - sx, (g.YY - sy) * 1.3)
    if L.night:
        r = sun_r or rng.uniform(4.0, 7.0)
        img = img + (np.exp(-d / (r * 3)) * 0.10)[..., None] * L.sun
        moon = disc(g, sx, sy, r)
        if moon_phase is None:
            moon_phase = rng.uniform(0, 1)
        if moon_phase < 0.5:  # crescent / gibbous: bite out a shifted disc
            off = r * (0.4 + 1.2 * moon_phase) * (1 if rng.uniform() < 0.5 else -1)
            moon = moon * (1 - disc(g, sx + off, sy - r * 0.2, r))
        img = over(img, moon, L.sun * 0.95)
    else:
        r = sun_r or (rng.uniform(5.0, 9.0) if L.phase != "day" else rng.uniform(4.0, 6.0))
        strength = {"day": 0.35, "dawn": 0.8, "dusk": 0.9}[L.phase]
        glow = np.exp(-d / F32(rng.uniform(25, 60))) * strength + np.exp(-d / (r * 1.8)) * 0.5
        img = img + glow[..., None] * (L.sun - img * 0.5) * 0.6
        img = over(img, disc(g, sx, sy, r), np.minimum(L.sun * 1.05, 1.0))
    img = over(img, below(g, hy), lerp(L.hor, L.mid, 0.2))
    return img.astype(F32), (sx, sy)


def star_dots(g, ys, xs, radius, peak):
    """Gaussian dots with `radius` (half maximum) and `peak` in reference units / brightness. The
    output pixel's footprint widens the dot, keeping each star's light equal at every size."""
    var = (np.asarray(radius, F32) / F32(1.18)) ** 2
    eff = var + g.px ** 2 / 12
    amp, eff3 = (np.asarray(peak, F32) * var / eff)[:, None, None], eff[:, None, None]
    reach = 3 * np.sqrt(eff)
    return splat(g, ys, xs, reach, reach, lambda dy, dx: amp * np.exp(-(dy * dy + dx * dx) / (2 * eff3)))


def add_stars(rng, g, img, L: Light, hy, density=1.0, milky=False):
    vis = L.stars * density
    if vis <= 0:
        return img
    n = int(rng.uniform(100, 260) * density)
    ys, xs = rng.uniform(0, hy * 0.97, n), rng.uniform(-0.5, W - 0.5, n)
    b = rng.uniform(0, 1, n) ** 3  # many faint stars, a few big bright ones
    radius, peak = 0.6 + 0.6 * b, 0.3 + 0.8 * b
    glow = 0
    if milky:
        ang = rng.uniform(-0.5, 0.5)
        cx = rng.uniform(0.2, 0.8) * W
        width = rng.uniform(0.06, 0.12)
        noise = Noise2(rng, 4, 10, 4)

        def milky_way(y, x, nz):
            dist = np.abs((x - cx) * np.cos(ang) + (y - hy * 0.5) * np.sin(ang) * 3) / W
            return np.clip(np.exp(-(dist / width) ** 2) * (0.6 + 0.8 * nz), 0, None)

        m = 900
        y2, x2 = rng.uniform(0, hy * 0.97, m), rng.uniform(-0.5, W - 0.5, m)
        keep = rng.uniform(0, 1, m) < milky_way(y2, x2, noise.at(y2, x2))
        ys, xs = np.concatenate([ys, y2[keep]]), np.concatenate([xs, x2[keep]])
        radius = np.concatenate([radius, np.full(keep.sum(), 0.5)])
        peak = np.concatenate([peak, np.full(keep.sum(), 0.35)])
        glow = milky_way(g.YY, g.XX, noise.grid(g)) * 0.10
    layer = star_dots(g, ys, xs, radius, peak) + glow
    fade = np.clip(1 - g.YY / max(hy, 1.0), 0, 1) ** (0.5 if L.night else 1.5)
    tint = np.array([0.9, 0.93, 1.0], F32)
    return img + (layer * fade * vis)[..., None] * tint


def clouds(rng, g, img, L: Light, hy, cover=None):
    cover = rng.uniform(0.0, 0.6) if cover is None else cover
    if cover <= 0.02:
        return img
    n = fbm2d(rng, g, rng.uniform(1.5, 3), rng.uniform(3, 7), 5)
    n = n + 0.15 * fbm2d(rng, g, 8, 30, 2)
    th = 0.45 - cover * 0.6
    a = smoothstep(th, th + 0.35, n) * smoothstep(hy, hy * 0.55, g.YY) * F32(rng.uniform(0.6, 0.95))
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
    """A ridge line: its row as a function of x (reference units)."""
    n = Noise1(rng, cells, octaves)
    if sharp > 0:
        m = Noise1(rng, cells * 1.5, octaves)
        return lambda x: base - amp * ((1 - sharp) * n(x) + sharp * (0.6 - np.abs(m(x)) * 2.5))
    return lambda x: base - amp * n(x)


def tree_line(rng, g, base, height, n):
    """Conifer silhouettes on top of a base line: min over triangles (rows grow downwards)."""
    base = np.broadcast_to(np.asarray(base, F32), g.x.shape)
    xc = rng.uniform(-5, W + 5, n).astype(F32)
    h = (height * rng.uniform(0.5, 1.2, n)).astype(F32)
    w = (h * rng.uniform(0.22, 0.38, n)).astype(F32)
    dx = np.abs(g.x[None, :] - xc[:, None])
    saw = 1 + 0.18 * np.sin(dx * 1.7)  # a little jaggedness on the flanks
    top = base[None, :] - h[:, None] + dx / w[:, None] * h[:, None] * saw
    return np.minimum(top.min(0), base)


# ------------------------------------------------------------------------------------------------
# Scene families
# ------------------------------------------------------------------------------------------------
def scene_sea(rng, g, L):
    hy = rng.uniform(0.42, 0.62) * H
    img, (sx, sy) = sky(rng, g, L, hy)
    img = add_stars(rng, g, img, L, hy)
    img = clouds(rng, g, img, L, hy)
    # sea: reflected sky near the horizon, deep water below
    s = g.band(hy)
    t = np.clip((s.YY - hy) / (H - hy), 0, 1)[..., None]
    deep = L.lit((0.05, 0.22, 0.38), 1.2) if not L.night else L.top * 1.5 + 0.01
    water = lerp(L.hor * 0.85, deep, np.sqrt(t))
    waves = fbm2d(rng, s, 10, 3, 4) + 0.5 * fbm2d(rng, s, 30, 6, 2)
    persp = 0.2 + t[..., 0] * 1.2
    water = water * (1 + 0.10 * waves * persp)[..., None]
    # glitter path under the sun/moon
    wide = 4 + (s.YY - hy) * rng.uniform(0.5, 1.2)
    path = np.exp(-((s.XX - sx) / np.maximum(wide, 1)) ** 2) * smoothstep(0.0, 0.6, waves + 0.3)
    glint = 0.9 if L.phase in ("dawn", "dusk") else (0.5 if L.phase == "day" else 0.45)
    water = water + (path * glint)[..., None] * L.sun
    # surf lines near the bottom (a beach in some images)
    if rng.uniform() < 0.4:
        shore = H - rng.uniform(8, 24) - 6 * fbm1d(rng, s.x, 3, 3)
        sand = L.lit((0.80, 0.70, 0.52)) if not L.night else L.lit((0.5, 0.45, 0.4))
        water = over(water, below(s, shore), sand)
        foam = np.exp(-((s.YY - shore) / 1.5) ** 2) * 0.6
        water = water + foam[..., None] * L.lit((1, 1, 1))
    img[s.rows] = over(img[s.rows], below(s, hy), water)
    if rng.uniform() < 0.35:  # a distant headland
        x0 = rng.uniform(-0.2, 0.7) * W
        hl = hy - np.clip(rng.uniform(5, 14) * (1 - ((g.x - x0) / rng.uniform(40, 120)) ** 2), 0, None) \
            - 1.5 * fbm1d(rng, g.x, 12, 3)
        img = over(img, below(g, hl) * (1 - below(g, hy + 1)), L.haze(L.lit((0.15, 0.2, 0.18)), 0.55))
    return img


def scene_mountains(rng, g, L):
    hy = rng.uniform(0.55, 0.75) * H
    img, (sx, sy) = sky(rng, g, L, hy)
    img = add_stars(rng, g, img, L, hy)
    img = clouds(rng, g, img, L, hy, cover=rng.uniform(0, 0.35))
    layers = rng.integers(2, 4)
    xs = np.arange(-16, W + 16, 0.5, dtype=F32)  # fixed sampling of the slopes: same shading at any size
    for i in range(layers):
        depth = 1 - i / layers  # 1 = far
        base = hy - (0.32 - 0.12 * i) * H * rng.uniform(0.7, 1.2)
        line = ridge(rng, base, rng.uniform(14, 30) * (1.2 - 0.3 * i), rng.uniform(2, 5), 6, sharp=0.7)
        cap = H - 6 - 6 * (layers - i)
        r = np.minimum(line(g.x), cap)
        slope = np.convolve(np.gradient(np.minimum(line(xs), cap), 0.5), np.ones(10, F32) / 10, mode="same")
        side = np.sign(sx - W / 2) if L.phase != "day" else (1 if rng.uniform() < 0.5 else -1)
        face = np.tanh(-slope * side * 0.5)
        s = g.band(r.min())
        # a face takes the light of the ridge slope above it, looked up along both diagonals
        d = np.clip(s.YY - r, 0, None) * F32(rng.uniform(0.5, 0.9))
        f = np.interp(s.XX + d, xs, face) + np.interp(s.XX - d, xs, face)
        shade = 0.78 + 0.15 * f * np.exp(-d / 40)
        rock = np.array([0.36, 0.36, 0.40], F32) * F32(rng.uniform(0.8, 1.2))
        tex = fbm2d(rng, s, 8, 20, 4)
        snowline = r + rng.uniform(10, 30) + 10 * fbm2d(rng, s, 3, 12, 3) + 8 * tex
        snow = smoothstep(-2, 2, snowline - s.YY) * smoothstep(-1, 4, tex * 6 + 2 + (snowline - s.YY) * 0.2)
        mat = lerp(rock * (1 + 0.25 * tex[..., None]), np.array([0.95, 0.96, 1.0], F32), snow[..., None])
        col = L.lit(mat) * (shade[..., None] * (1 + 0.3 * (1 - depth)))
        col = lerp(col, L.hor * 0.9, F32(0.55 * depth ** 1.5))
        img[s.rows] = over(img[s.rows], below(s, r), col)
    # foreground: dark pine line or meadow
    fg = H - rng.uniform(6, 18) - 4 * fbm1d(rng, g.x, 4, 3)
    if rng.uniform() < 0.6:
        fg = np.minimum(fg, tree_line(rng, g, fg, rng.uniform(6, 16), 60))
    img = over(img, below(g, fg), L.lit((0.06, 0.12, 0.08)))
    return img


def scene_stars(rng, g, L):
    hy = rng.uniform(0.68, 0.85) * H
    img, (sx, sy) = sky(rng, g, L, hy)
    img = add_stars(rng, g, img, L, hy, density=rng.uniform(1.3, 2.0), milky=rng.uniform() < 0.7)
    if L.phase == "day":
        img = clouds(rng, g, img, L, hy, cover=rng.uniform(0.0, 0.25))
    hill = ridge(rng, hy, rng.uniform(4, 12), rng.uniform(1, 3), 4)
    sil = L.lit((0.05, 0.07, 0.06), 0.8 if L.phase != "day" else 1.6)
    img = over(img, below(g, hill(g.x)), sil)
    if rng.uniform() < 0.6:  # a lone tree on the hill
        tx = rng.uniform(0.1, 0.9) * W
        ty = float(hill(np.float32(tx)))
        th = rng.uniform(14, 28)
        trunk = within(g, g.XX - tx, 1.2) * within(g, g.YY - (ty - th * 0.3 + 0.5), th * 0.3 + 0.5)
        canopy = fbm2d(rng, g, 6, 16, 3)
        cr = th * 0.45
        blob = inside(g, np.hypot(g.XX - tx, (g.YY - (ty - th * 0.7)) * 1.3) - cr - canopy * cr * 0.6)
        img = over(img, np.maximum(trunk, blob), sil)
    return img


def buildings(rng, g, hy, w_range, h_range):
    """One skyline layer: the roof row of each output column, its building index, and each
    building's left edge, width and main roof row (reference units)."""
    widths = rng.uniform(*w_range, 40)
    edges = np.concatenate([[0], np.cumsum(widths)]) - rng.uniform(0, w_range[1])
    edges = edges[edges < W + w_range[1]]
    n = len(edges) - 1
    left, width = edges[:-1], np.diff(edges)
    heights = rng.uniform(*h_range, n) * (1 + 0.6 * (rng.uniform(0, 1, n) < 0.15))
    ids = np.clip(np.searchsorted(edges, g.x, side="right") - 1, 0, n - 1)
    roof = hy - heights
    # setbacks: some roofs step down near both sides, which reads as a skyline even when blurred
    step = rng.uniform(0, 1, n) < 0.4
    inset = width * rng.uniform(0.15, 0.3, n)
    drop = rng.uniform(4, 12, n)
    from_side = np.minimum(g.x - left[ids], left[ids] + width[ids] - g.x)
    top = roof[ids] + np.where(step[ids] & (from_side < inset[ids]), drop[ids], 0)
    for k in np.argsort(heights)[-3:]:  # masts on the tallest
        if rng.uniform() < 0.6:
            mast = np.abs(g.x - (left[k] + width[k] / 2)) < 1.0
            top = np.where(mast, np.minimum(top, roof[k] - rng.uniform(6, 14)), top)
    return top.astype(F32), ids, left, width, roof


def windows(rng, g, ids, left, width, roof):
    """Window panes on a grid aligned to each building: alpha, lit draw and warmth draw per pane.
    Panes are 3-6 px in 5.5-8 px cells so they survive the model's 8x autoencoder."""
    n = len(left)
    cw = rng.uniform(5.5, 8.0, n)
    ww = cw * rng.uniform(0.5, 0.72, n)
    ch = rng.uniform(6.0, 9.0, n)
    wh = ch * rng.uniform(0.45, 0.65, n)
    ncol = np.floor(np.maximum(width - 3, 0) / cw)
    x0 = left + (width - ncol * cw) / 2
    u = (g.x - x0[ids]) / cw[ids]
    col = np.floor(u)
    alpha_x = within(g, (u - col - 0.5) * cw[ids], ww[ids] / 2) * ((col >= 0) & (col < ncol[ids]))
    v = (g.YY - (roof[ids] + 3)) / ch[ids]
    row = np.floor(v)
    alpha = within(g, (v - row - 0.5) * ch[ids], wh[ids] / 2) * (row >= 0) * alpha_x
    table = rng.uniform(0, 1, (2, 97, 89))  # per-pane randomness, indexed by pane, not by pixel
    pane = (row.astype(np.int64) % 97, (col.astype(np.int64) + ids * 13) % 89)
    return alpha.astype(F32), table[0][pane], table[1][pane]


def skyline(rng, g, img, L, hy, haze, dark, lit_p, w_range, h_range, neon=False):
    top, ids, left, width, roof = buildings(rng, g, hy, w_range, h_range)
    n = len(left)
    s = g.band(top.min(), hy)  # the rows between the highest roof and the horizon
    tone = 1 + 0.25 * rng.uniform(-1, 1, n)
    facade = np.array([0.42, 0.44, 0.5], F32) * F32(rng.uniform(0.7, 1.2)) * tone[ids][None, :, None]
    col = L.lit(facade) * F32(dark)
    alpha, lit, warmth = windows(rng, s, ids, left, width, roof)
    if L.phase == "day":
        col = lerp(col, L.lit((0.55, 0.68, 0.82)), alpha[..., None])
    else:
        warm = lerp((1.0, 0.82, 0.45), (0.9, 0.95, 1.0), warmth[..., None] ** 4 * 0.6) * F32(0.9 if L.night else 0.75)
        col = lerp(col, np.where((lit < lit_p)[..., None], warm, col * 0.8), alpha[..., None])
        if neon:
            has = rng.uniform(0, 1, n) < 0.35
            hue = rng.integers(0, 3, n)
            palette = np.array([[1.0, 0.2, 0.6], [0.2, 0.9, 1.0], [1.0, 0.5, 0.1]], F32)
            sign_y = roof + rng.uniform(4, 20, n)
            sign = within(s, s.YY - sign_y[ids], 1.6) * (within(s, (s.x + 7) % 14 - 7, 5) * has[ids])
            col = lerp(col, palette[hue[ids]][None, :, :], sign[..., None])
    col = lerp(col, L.hor * 0.9, F32(haze))
    img[s.rows] = over(img[s.rows], below(s, top), col)
    return img


def scene_city(rng, g, L):
    hy = rng.uniform(0.74, 0.86) * H
    img, _ = sky(rng, g, L, hy)
    img = add_stars(rng, g, img, L, hy, density=0.5)
    img = clouds(rng, g, img, L, hy, cover=rng.uniform(0, 0.4))
    if L.phase != "day":  # light pollution behind the skyline keeps the silhouette readable
        img = img + (smoothstep(hy * 0.4, hy, g.YY) * 0.1)[..., None] * np.array([1.0, 0.6, 0.35], F32)
    lit_p = {"night": 0.55, "dusk": 0.35, "dawn": 0.2, "day": 0.0}[L.phase] * rng.uniform(0.7, 1.3)
    img = skyline(rng, g, img, L, hy, 0.45, 0.9, lit_p * 0.6, (14, 30), (30, 64))
    img = skyline(rng, g, img, L, hy, 0.0, 0.7, lit_p, (16, 36), (14, 44))
    s = g.band(hy)
    if rng.uniform() < 0.5:  # harbour water with rippled reflections of the lights
        refl = blur(s, reflect(g, s, img, hy, 2.5 * fbm2d(rng, s, 40, 5, 2)), 1.5, 0.3) * 0.55
        ground = lerp(refl, L.top * 0.8, 0.25)
    else:
        ground = L.lit((0.18, 0.18, 0.2)) * (1 + 0.2 * fbm2d(rng, s, 4, 12, 3))[..., None]
        if L.phase != "day":  # a lit road
            road = np.exp(-((s.YY - (hy + (H - hy) * 0.5)) / 1.5) ** 2)
            ground = ground + (road * 0.6)[..., None] * np.array([1.0, 0.7, 0.35], F32)
    img[s.rows] = over(img[s.rows], below(s, hy), ground)
    return img


def scene_forest(rng, g, L):
    hy = rng.uniform(0.45, 0.65) * H
    img, (sx, sy) = sky(rng, g, L, hy)
    img = add_stars(rng, g, img, L, hy)
    img = clouds(rng, g, img, L, hy, cover=rng.uniform(0, 0.45))
    layers = rng.integers(3, 5)
    green = np.array([0.10, 0.30, 0.14], F32) * F32(rng.uniform(0.7, 1.3))
    autumn = rng.uniform() < 0.15
    for i in range(layers):
        depth = 1 - (i + 0.5) / layers
        base = hy + (H - hy) * (i / layers) * 0.85 + 3 * fbm1d(rng, g.x, 2, 3) + 4
        height = rng.uniform(10, 22) * (0.6 + 0.6 * i / layers) + 6
        top = tree_line(rng, g, base, height, int(rng.uniform(35, 70) * (1 - 0.3 * i / layers)))
        s = g.band(top.min())
        tex = fbm2d(rng, s, 12, 30, 3)
        mat = green * (1 + 0.35 * tex[..., None])
        if autumn:
            mat = lerp(mat, np.array([0.55, 0.30, 0.08], F32), (0.5 + 0.5 * np.clip(tex, -1, 1))[..., None] * 0.8)
        col = L.lit(mat) * F32(0.7 + 0.4 * i / layers)
        col = lerp(col, L.hor * 0.9, F32(0.75 * depth ** 1.2))
        img[s.rows] = over(img[s.rows], below(s, top), col)
    if L.phase in ("day", "dawn") and rng.uniform() < 0.5:  # god rays: noise over the angle from the sun
        ang = np.arctan2(g.YY - sy, g.XX - sx)
        rays = np.clip(fbm1d(rng, (ang + np.pi) / (2 * np.pi) * (W - 1), 24, 2), 0, None)
        img = img + (rays * 0.25 * smoothstep(H, 0, g.YY))[..., None] * L.sun
    return img


def scene_desert(rng, g, L):
    hy = rng.uniform(0.50, 0.70) * H
    img, (sx, sy) = sky(rng, g, L, hy)
    img = add_stars(rng, g, img, L, hy)
    img = clouds(rng, g, img, L, hy, cover=rng.uniform(0, 0.25))
    sand = np.array([0.85, 0.62, 0.36], F32) * F32(rng.uniform(0.85, 1.1))
    if rng.uniform() < 0.4:  # mesas on the horizon
        x0 = rng.uniform(0, W)
        wd = rng.uniform(30, 90)
        prof = hy - rng.uniform(8, 20) * smoothstep(wd, wd * 0.75, np.abs(g.x - x0))
        img = over(img, below(g, prof), L.haze(L.lit(sand * np.array([0.8, 0.55, 0.45], F32)), 0.5))
    layers = rng.integers(2, 5)
    side = np.sign(sx - W / 2) or 1.0
    for i in range(layers):
        depth = 1 - (i + 0.5) / layers
        base = hy + (H - hy) * (i / layers) * 0.8 + 2
        amp = rng.uniform(6, 16) * (0.6 + i / layers)
        ph = rng.uniform(0, 2 * np.pi)
        fr = rng.uniform(1.5, 4) * 2 * np.pi / W
        r = base - amp * (0.5 + 0.5 * np.sin(g.x * fr + ph + 0.8 * fbm1d(rng, g.x, 2, 2))) ** 1.5
        lit_side = 0.55 + 0.45 * smoothstep(-0.15, 0.15, -np.gradient(r, g.x) * side)
        s = g.band(r.min())
        below_crest = np.clip((s.YY - r) / 20, 0, 1)
        shade = lerp(lit_side[None, :], 0.8, below_crest)
        ripple = 1 + 0.05 * np.sin(s.YY * rng.uniform(1.2, 2.0) + 6 * fbm2d(rng, s, 3, 10, 2))
        col = L.lit(sand) * (shade * ripple)[..., None]
        col = lerp(col, L.hor * 0.9, F32(0.5 * depth ** 1.5))
        img[s.rows] = over(img[s.rows], below(s, r), col)
    if rng.uniform() < 0.3:  # a cactus
        cx, cy = rng.uniform(0.1, 0.9) * W, H - rng.uniform(3, 15)
        ch = rng.uniform(14, 28)
        body = within(g, g.XX - cx, 1.8) * within(g, g.YY - (cy - ch / 2), ch / 2)
        arm = within(g, g.XX - cx - 5, 1.4) * within(g, g.YY - (cy - ch * 0.575), ch * 0.175)
        link = within(g, g.YY - (cy - ch * 0.42), 1.4) * within(g, g.XX - (cx + 3), 3)
        img = over(img, np.maximum(np.maximum(body, arm), link), L.lit((0.12, 0.25, 0.12)))
    return img


def scene_aurora(rng, g, L):
    hy = rng.uniform(0.60, 0.78) * H
    img, _ = sky(rng, g, L, hy)
    img = add_stars(rng, g, img, L, hy, density=1.2)
    strength = {"night": 1.0, "dusk": 0.85, "dawn": 0.8, "day": 0.7}[L.phase]
    green = np.array([0.15, 1.0, 0.45], F32)
    pink = np.array([0.75, 0.25, 0.95], F32) if rng.uniform() < 0.6 else np.array([0.2, 0.6, 1.0], F32)
    curtain = np.zeros((g.h, g.w, 3), F32)
    for _ in range(rng.integers(2, 4)):
        yc = hy * rng.uniform(0.35, 0.7) + hy * 0.2 * fbm1d(rng, g.x, 2, 4)
        ext = hy * rng.uniform(0.25, 0.5)
        rays = np.clip(0.55 + fbm1d(rng, g.x, 40, 3) * 1.2, 0, 1.2) * np.clip(0.6 + fbm1d(rng, g.x, 3, 2) * 1.5, 0, 1)
        up = (yc - g.YY) / ext
        prof = np.where(up > 0, np.exp(-up * 2.2), np.exp(-((up * ext / 3) ** 2)))
        c = lerp(green, pink, np.clip(up, 0, 1)[..., None] ** 1.5)
        curtain += (prof * rays)[..., None] * c
    curtain = np.clip(curtain, 0, 1.3)
    if L.phase == "day":
        img = lerp(img, img * 0.55 + curtain * 0.6, np.clip(curtain.max(-1), 0, 1)[..., None] * strength)
    else:
        img = img + curtain * F32(0.55 * strength)
    mtn = ridge(rng, hy - rng.uniform(0, 6), rng.uniform(5, 14), rng.uniform(2, 5), 5, sharp=0.5)
    img = over(img, below(g, mtn(g.x)), L.haze(L.lit((0.12, 0.14, 0.2)), 0.3))
    snow = lerp(np.array([0.85, 0.9, 1.0], F32), curtain.mean((0, 1)) * 0.5, 0.15)
    # the crop is symmetric, so flipping the rows mirrors the frame about its middle at any size
    ground = L.lit(snow) * (0.85 + 0.15 * smoothstep(hy, H, g.YY))[..., None] + curtain[::-1] * 0.08
    img = over(img, below(g, hy + 2), ground)
    trees = tree_line(rng, g, hy + 2 + rng.uniform(2, 8), rng.uniform(5, 12), 30)
    img = over(img, below(g, trees) * (1 - below(g, hy + 14)), L.lit((0.03, 0.06, 0.05)))
    return img


def scene_lake(rng, g, L):
    wy = rng.uniform(0.50, 0.66) * H
    hy = wy - rng.uniform(0, 6)
    img, (sx, sy) = sky(rng, g, L, hy)
    img = add_stars(rng, g, img, L, hy)
    img = clouds(rng, g, img, L, hy, cover=rng.uniform(0, 0.5))
    if rng.uniform() < 0.5:  # far mountains
        r = ridge(rng, wy - rng.uniform(16, 34), rng.uniform(10, 22), rng.uniform(2, 4), 5, sharp=0.6)(g.x)
        tex = fbm2d(rng, g, 6, 16, 3)
        snow = smoothstep(-1, 1, (r + 10 + 6 * tex) - g.YY)
        mat = lerp(np.array([0.3, 0.32, 0.36], F32), np.array([0.95, 0.96, 1.0], F32), snow[..., None])
        img = over(img, below(g, r), L.haze(L.lit(mat), 0.35))
    top = tree_line(rng, g, wy - 1, rng.uniform(6, 16), 70)
    forest = np.array([0.08, 0.2, 0.1], F32) * (1 + 0.3 * fbm2d(rng, g, 10, 30, 2))[..., None]
    img = over(img, below(g, top), L.lit(forest))
    # mirror with ripples
    s = g.band(wy)
    wob = 2.0 * fbm2d(rng, s, 28, 4, 2) * smoothstep(wy, H, s.YY) * rng.uniform(0.5, 2.0)
    tint = lerp(np.ones(3, F32), np.array([0.7, 0.85, 0.95], F32), 0.5)
    water = reflect(g, s, img, wy, wob) * tint * F32(rng.uniform(0.78, 0.9))
    streak = np.clip(fbm2d(rng, s, 40, 3, 2), 0, None) * 0.15
    water = water + streak[..., None] * L.hor
    img[s.rows] = over(img[s.rows], below(s, wy), water)
    if rng.uniform() < 0.4:  # a pier or a near shore
        shore = H - rng.uniform(3, 12) - 4 * fbm1d(rng, g.x, 3, 3)
        img = over(img, below(g, shore), L.lit((0.16, 0.2, 0.12)))
    return img


def scene_rain(rng, g, L):
    hy = rng.uniform(0.62, 0.76) * H
    # overcast: pull the palette towards grey
    for name in ("top", "mid", "hor"):
        c = getattr(L, name)
        setattr(L, name, lerp(c, np.full(3, c.mean(), F32) * 0.85, 0.6))
    L.sun = lerp(L.sun, np.full(3, 0.8, F32), 0.5)
    img, _ = sky(rng, g, L, hy, sun_xy=(rng.uniform(0, W), -100.0), sun_r=1.0)
    img = clouds(rng, g, img, L, hy, cover=rng.uniform(0.5, 0.9))
    lit_p = {"night": 0.6, "dusk": 0.45, "dawn": 0.25, "day": 0.05}[L.phase] * rng.uniform(0.8, 1.2)
    img = skyline(rng, g, img, L, hy, 0.55, 0.9, lit_p * 0.6, (14, 30), (22, 56))
    img = skyline(rng, g, img, L, hy, 0.2, 0.75, lit_p, (16, 34), (12, 38), neon=L.phase != "day")
    if L.phase != "day":  # city glow in the haze
        img = img + (smoothstep(hy * 0.3, hy, g.YY) * 0.06)[..., None] * np.array([1.0, 0.5, 0.3], F32)
    # wet street: the lights mirrored and smeared into long vertical trails
    s = g.band(hy)
    refl = blur(s, reflect(g, s, img, hy), 3.0, 0.6)
    refl = np.maximum(refl - 0.05, 0) * 0.8 + refl ** 2 * 0.5
    street = L.lit((0.1, 0.1, 0.12)) + refl * 0.8
    img[s.rows] = over(img[s.rows], below(s, hy), street)
    if L.phase != "day":  # street lamps: posts, halos and their trails on the wet street
        n = int(rng.integers(3, 7))
        lx = (np.arange(n) + rng.uniform(0.2, 0.8, n)) * W / n
        ly = hy - rng.uniform(8, 16, n)
        half = ((hy - ly) / 2)[:, None, None]
        posts = splat(g, (ly + hy) / 2, lx, (hy - ly) / 2 + 1, 1.5,
                      lambda dy, dx: within(g, dy, half) * within(g, dx, 0.6))
        img = over(img, np.minimum(posts, 1), L.lit((0.05, 0.05, 0.06)))
        halo = splat(g, ly, lx, 18, 18, lambda dy, dx: 0.8 * np.exp(-np.hypot(dx, dy) / 3.0))
        lamp = np.array([1.0, 0.8, 0.5], F32)
        img = img + halo[..., None] * lamp
        trail = np.exp(-np.abs(s.x[None, :] - lx[:, None]) / 1.5).sum(0) * np.exp(-(s.YY - hy) / 30) * below(s, hy)
        img[s.rows] += (0.45 * trail)[..., None] * lamp
    # rain: slanted streaks 14-26 px long, about 1 px wide, drawn as objects so they match at any size
    n = int(rng.uniform(160, 320))
    sy, sx = rng.uniform(-10, H + 10, n), rng.uniform(-10, W + 10, n)
    ln, wd = rng.uniform(14, 26, n), rng.uniform(0.9, 1.5, n)
    slant = rng.choice([-1, 0, 1]) * rng.uniform(0.15, 0.35)
    ln3, wd3 = ln[:, None, None], wd[:, None, None]
    streaks = splat(g, sy, sx, ln / 2 + 1, wd / 2 + 1, shear=slant,
                    weight=lambda dy, dx: within(g, dy, ln3 / 2) * within(g, dx, wd3 / 2) * (0.9 + 0.6 * dy / ln3))
    level = 0.26 if L.phase == "day" else 0.2
    img = img + (np.clip(streaks, 0, 1) * level)[..., None] * lerp(L.hor, np.ones(3, F32), 0.5)
    return img * F32(0.92)


def scene_blossom(rng, g, L):
    hy = rng.uniform(0.55, 0.75) * H
    img, (sx, sy) = sky(rng, g, L, hy)
    img = add_stars(rng, g, img, L, hy, density=0.6)
    img = clouds(rng, g, img, L, hy, cover=rng.uniform(0, 0.3))
    hill = ridge(rng, hy, rng.uniform(4, 14), 2, 4)
    img = over(img, below(g, hill(g.x)), L.haze(L.lit((0.3, 0.45, 0.3)), 0.4))
    ground = ridge(rng, hy + rng.uniform(4, 12), -3, 3, 3)
    grass = np.array([0.35, 0.55, 0.25], F32) * (1 + 0.2 * fbm2d(rng, g, 6, 20, 3))[..., None]
    img = over(img, below(g, ground(g.x)), L.lit(grass))
    pink = lerp(np.array([1.0, 0.62, 0.78], F32), np.array([1.0, 0.86, 0.92], F32), rng.uniform(0, 1))
    canopy = np.zeros((g.h, g.w), F32)
    trunks = np.zeros((g.h, g.w), F32)
    for _ in range(rng.integers(1, 4)):
        tx = rng.uniform(0.05, 0.95) * W
        base = float(ground(np.float32(tx))) + rng.uniform(2, 10)
        th = rng.uniform(0.45, 0.75) * H
        lean = rng.uniform(-0.3, 0.3)
        ty = base - th
        yy = np.clip((base - g.YY) / th, 0, 1)
        trunk_x = tx + lean * (base - g.YY) * 0.5
        tw = 2.5 * (1 - yy * 0.6)
        trunk = within(g, g.XX - trunk_x, tw) * below(g, ty + th * 0.3) * (1 - below(g, base))
        trunks = np.maximum(trunks, trunk)
        cx, cy = tx + lean * th * 0.5, ty + th * 0.3
        rx, ry = th * rng.uniform(0.7, 1.1), th * 0.42
        canopy = np.maximum(canopy, 1 - np.hypot((g.XX - cx) / rx, (g.YY - cy) / ry))
    if rng.uniform() < 0.5:  # an overhanging branch along the top
        cy = rng.uniform(-10, 8)
        canopy = np.maximum(canopy, 0.6 - np.abs(g.YY - cy - 10 * fbm1d(rng, g.x, 2, 3)) / 22)
    tex = fbm2d(rng, g, 6, 16, 3)
    fine = fbm2d(rng, g, 24, 60, 2)
    blossom = smoothstep(0.0, 0.18, canopy + 0.12 * tex + 0.06 * fine)
    img = over(img, trunks, L.lit((0.22, 0.14, 0.12)))
    petal = lerp(pink * 0.72, pink * 1.12, smoothstep(-0.4, 0.4, fine + 0.5 * tex)[..., None])
    bright = 1.0 if not L.night else 1.6  # blossoms glow a little under lanterns and moon
    img = over(img, blossom, np.minimum(L.lit(petal, bright), 1.0))
    # falling petals: little ellipses
    m = int(0.004 * H * W)
    py, px = rng.uniform(-2, H + 2, m), rng.uniform(-2, W + 2, m)
    pr = rng.uniform(0.8, 1.5, m)
    pr3 = pr[:, None, None]
    pts = splat(g, py, px, pr + 1, pr * 1.4 + 1, lambda dy, dx: inside(g, np.hypot(dx / 1.4, dy) - pr3))
    img = over(img, np.clip(pts, 0, 1) * 0.8, np.minimum(L.lit(pink, bright), 1.0))
    if L.night and rng.uniform() < 0.6:  # lanterns
        k = int(rng.integers(2, 6))
        lx, ly = rng.uniform(0, W, k), rng.uniform(0.2, 0.6, k) * H
        glow = splat(g, ly, lx, 20, 16, lambda dy, dx: 0.9 * np.exp(-np.hypot(dx, dy * 0.8) / 2.5))
        img = img + glow[..., None] * np.array([1.0, 0.45, 0.2], F32)
    return img


SCENES = {
    "sea": scene_sea, "mountains": scene_mountains, "stars": scene_stars, "city": scene_city,
    "forest": scene_forest, "desert": scene_desert, "aurora": scene_aurora, "lake": scene_lake,
    "rain": scene_rain, "blossom": scene_blossom,
}


# ------------------------------------------------------------------------------------------------
# Styles and the top-level renderer
# ------------------------------------------------------------------------------------------------
def apply_styles(rng, g, img, styles, L: Light):
    for s in styles:
        if s == "warm":
            img = img * np.array([1.12, 1.0, 0.80], F32) + np.array([0.03, 0.01, 0.0], F32) * L.amb
        elif s == "cool":
            img = img * np.array([0.82, 0.96, 1.15], F32) + np.array([0.0, 0.01, 0.03], F32) * L.amb
        elif s == "misty":
            fog = lerp(L.hor, np.full(3, L.hor.mean(), F32), 0.5) * (0.9 if not L.night else 0.8)
            amount = F32(rng.uniform(0.35, 0.55))
            prof = amount * (0.55 + 0.45 * smoothstep(0, H * 0.7, g.YY)) * (0.85 + 0.3 * fbm2d(rng, g, 2, 5, 3))
            img = lerp(img, fog, np.clip(prof, 0, 0.8)[..., None])
        elif s == "vivid":
            lum = luminance(img)[..., None]
            img = lum + (img - lum) * F32(1.5)
            img = (img - 0.5) * F32(1.08) + 0.5 if not L.night else img * F32(1.1)
    return img


def render(rng, meta, size=(H, W)) -> np.ndarray:
    """Renders `meta` ({"family", "phase", "styles"}) to uint8 [h, w, 3] for size = (h, w): the
    128x320 reference frame scaled to cover it and centre-cropped (see the module docstring)."""
    g = grid(*size)
    L = Light(rng, meta["phase"])
    img = SCENES[meta["family"]](rng, g, L)
    img = apply_styles(rng, g, np.asarray(img, F32), meta.get("styles", ()), L)
    if rng.uniform() < 0.5:
        img = img[:, ::-1]
    # 1-level dither against banding, from its own stream so `rng` advances alike at every size
    dither = np.random.default_rng(rng.integers(2**63)).random((g.h, g.w, 1), dtype=F32)
    return (np.clip(img, 0, 1) * 255 + dither).astype(np.uint8)


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


def fingerprint() -> str:
    """A short hash of what the renderer draws (a few fixed scenes of every family): caches of rendered
    data key on it, so a caption edit keeps them and a drawing change renews them."""
    import hashlib

    h = hashlib.sha256()
    for k, fam in enumerate(FAMILIES):
        for ph in PHASES:
            h.update(render(scene_rng(k, fam, ph), {"family": fam, "phase": ph, "styles": []}, (32, 80)).tobytes())
    return h.hexdigest()[:12]


def scene_rng(seed, family, phase):
    """The generator behind one command-line image: each (seed, family, phase) is its own scene."""
    return np.random.default_rng([seed, FAMILIES.index(family), PHASES.index(phase)])


# ------------------------------------------------------------------------------------------------
# Captions
# ------------------------------------------------------------------------------------------------
#
# Everything is data. Each list runs from the most to the least common phrasing: names and phase
# words are drawn leaning towards the front (`_Draw.common`), so the plain forms stay frequent and
# the first entry of NAMES_* and PHASE_* is the canonical word (canonical() and sample sheets use
# it). A family's general lists go with every phase and style, so they never name a light phase
# ("starry night", "夜景") or a style ("misty", "golden"): phase-bound phrases live in SPECIAL_*.
# RELATED_* are indirect subjects (ski slope, camels, arctic) that should land on the nearest
# family; WITH_* are things a scene may have ("mountains with glaciers", "有灯塔的海边").
NAMES_EN = {
    "sea": ["sea", "the sea", "ocean", "the ocean", "seaside", "ocean view", "seascape", "beach", "sea view",
            "the beach", "coast", "waves", "ocean waves", "the coast", "shore", "coastline", "open sea",
            "the seaside", "sandy beach", "sea and sky", "the open ocean", "a beach", "an ocean view",
            "beach and waves", "the sea horizon", "waves on the shore"],
    "mountains": ["snowy mountains", "snow mountains", "snow-capped peaks", "mountains with snow", "snowy peaks",
                  "mountains", "the mountains", "mountain peaks", "peaks", "a mountain range", "snowcapped mountains",
                  "mountain view", "alpine peaks", "mountain landscape", "high mountains", "a snowy mountain",
                  "mountain scenery", "snow-covered mountains", "a snow-covered ridge", "the summit",
                  "a range of snowy peaks"],
    "stars": ["starry sky", "stars", "a sky full of stars", "the milky way", "the stars", "a starry sky",
              "the starry sky", "milky way", "stars in the sky", "star sky", "a field of stars", "starscape",
              "the galaxy", "twinkling stars", "countless stars", "sky of stars", "star field",
              "the sky full of stars", "stars above a hill"],
    "city": ["city skyline", "skyline", "city", "downtown skyline", "skyscrapers", "the city", "cityscape",
             "the skyline", "downtown", "tall buildings", "a big city", "city view", "urban skyline", "high-rises",
             "a modern city", "the city center", "metropolis", "office towers", "city towers",
             "the downtown skyline", "urban view", "buildings"],
    "forest": ["forest", "pine forest", "woods", "woodland", "a forest", "the forest", "trees", "the woods",
               "pine trees", "a pine forest", "forest landscape", "dense forest", "deep forest", "evergreen forest",
               "tall trees", "conifer forest", "a forest of pines", "the woodland", "a grove of trees",
               "forest scenery", "pines"],
    "desert": ["desert", "sand dunes", "dunes", "desert dunes", "the desert", "a desert", "sand",
               "desert landscape", "the dunes", "rolling dunes", "sandy desert", "desert sands", "endless dunes",
               "dune field", "arid desert", "desert plains", "desert scenery"],
    "aurora": ["aurora", "northern lights", "aurora borealis", "polar lights", "the northern lights",
               "the aurora", "auroras", "aurora sky", "green aurora", "aurora lights", "the aurora borealis",
               "northern lights sky", "southern lights", "aurora australis", "aurora over the snow",
               "dancing lights in the sky", "green lights in the sky", "the polar lights"],
    "lake": ["lake with reflections", "lake", "mirror lake", "calm lake", "lake reflection", "a lake", "the lake",
             "lakeside", "lake view", "a calm lake", "still lake", "lakeshore", "a mountain lake",
             "reflections on the lake", "a quiet lake", "lake scenery", "the lake shore", "lake water",
             "mirror-like lake", "a lake with a reflection"],
    "rain": ["rainy city", "city in the rain", "rainy street", "rain in the city", "rainy city street",
             "rain", "rainy streets", "city rain", "a rainy city", "the city in the rain", "rainy downtown",
             "wet city streets", "a rainy street", "streets in the rain", "rainy weather in the city",
             "rain falling on the city", "rainy skyline", "downpour in the city", "a city in the rain"],
    "blossom": ["cherry blossoms", "sakura", "cherry blossom trees", "blossoming cherry trees",
                "cherry trees in bloom", "cherry blossom", "blossoms", "sakura trees", "pink blossoms",
                "cherry trees", "sakura in bloom", "blooming sakura", "flowering trees", "a cherry tree",
                "cherry blossom season", "pink cherry blossoms", "blossom trees", "sakura petals",
                "a cherry tree in full bloom"],
}
ADJ_EN = {
    "sea": ["calm", "endless", "open", "wide", "gentle", "quiet", "rolling", "deep", "vast", "peaceful", "wild",
            "tropical", "empty"],
    "mountains": ["tall", "high", "majestic", "towering", "rugged", "jagged", "distant", "alpine", "huge", "steep",
                  "rocky", "remote", "massive", "icy"],
    "stars": ["countless", "twinkling", "endless", "clear", "deep", "infinite", "sparkling", "silent", "peaceful"],
    "city": ["big", "busy", "modern", "sprawling", "bustling", "tall", "huge", "futuristic", "crowded", "quiet"],
    "forest": ["deep", "dense", "quiet", "old", "wild", "tall", "lush", "silent", "ancient", "thick", "green"],
    "desert": ["endless", "vast", "empty", "dry", "rolling", "lonely", "sandy", "hot", "silent", "arid", "remote",
               "windswept"],
    "aurora": ["dancing", "glowing", "swirling", "shimmering", "green", "magical", "flowing", "rippling",
               "mysterious", "wavy"],
    "lake": ["calm", "still", "quiet", "peaceful", "tranquil", "clear", "glassy", "serene", "smooth", "silent",
             "small", "hidden"],
    "rain": ["gloomy", "wet", "moody", "lonely", "quiet", "busy", "cozy", "melancholy", "soaked"],
    "blossom": ["pink", "blooming", "soft pink", "delicate", "full-bloom", "romantic", "fluffy", "pale pink",
                "gentle"],
}
ADJ_ANY_EN = ["beautiful", "pretty", "lovely", "nice", "stunning", "gorgeous", "scenic", "peaceful", "relaxing",
              "quiet", "simple", "minimalist", "breathtaking"]
RELATED_EN = {
    "sea": ["a lighthouse by the sea", "harbour", "the harbor", "surf", "surfing waves", "a bay", "a quiet cove",
            "the tide", "an island", "a tropical island", "seagulls over the water", "a sailboat on the water",
            "a seaside cliff", "salt water", "the maldives", "hawaii", "bali", "the pacific", "the mediterranean",
            "a beach vacation", "seashells on the sand", "the tide coming in", "a lighthouse"],
    "mountains": ["the alps", "the himalayas", "the rockies", "mount everest", "switzerland", "a ski slope",
                  "ski resort", "skiing", "a glacier", "glaciers", "a summit", "hiking in the mountains",
                  "a mountain pass", "a snowfield", "an alpine valley", "the top of the world", "mountaineering",
                  "a mountain cabin", "snow and rock", "fresh powder on the slopes"],
    "stars": ["galaxy", "constellations", "the cosmos", "the universe", "outer space", "space",
              "shooting stars", "a meteor shower", "stargazing", "a nebula", "the big dipper", "orion",
              "astronomy", "a galaxy far away", "deep space", "the heavens"],
    "city": ["new york", "manhattan", "tokyo", "hong kong", "shanghai skyline", "chicago", "singapore", "dubai",
             "a harbor city", "a city by the water", "rooftops", "the financial district", "a skyscraper",
             "towers and bridges", "urban life", "office buildings", "the view from a rooftop",
             "a waterfront skyline", "the big city"],
    "forest": ["jungle", "a pine", "evergreens", "a hiking trail in the woods", "camping in the woods",
               "a cabin in the woods", "treetops", "fir trees", "spruce trees", "redwoods", "the black forest",
               "taiga", "a walk in the woods", "moss and ferns", "nature", "wilderness", "the amazon"],
    "desert": ["camels", "a camel caravan", "the sahara", "sahara", "the gobi", "a cactus", "cactus", "mesas",
               "a canyon", "the grand canyon", "an oasis", "the wild west", "arizona", "death valley",
               "the badlands", "tumbleweeds", "a road trip through the desert", "sand and rock"],
    "aurora": ["arctic", "the arctic", "arctic sky", "polar", "a polar sky", "iceland", "norway", "lapland",
               "finland", "alaska", "tromso", "the north pole", "the far north", "an arctic winter",
               "a polar winter", "a snowy plain in the far north", "snow and pines up north"],
    "lake": ["a pond", "pond", "reflection", "reflections", "still water", "a mirror of water", "a wooden pier",
             "a dock on the lake", "a boat on the lake", "a reservoir", "lake tahoe", "lake como", "a canoe",
             "a fishing pier", "a quiet river", "calm water", "glassy water"],
    "rain": ["umbrellas", "an umbrella", "storm", "a storm over the city", "thunderstorm", "wet streets",
             "puddles", "raindrops", "drizzle", "a downpour", "heavy rain", "a rainstorm", "london", "seattle",
             "a wet road", "rain on the window", "rainy weather", "street lamps in the rain",
             "people with umbrellas", "rain"],
    "blossom": ["hanami", "spring", "springtime", "spring flowers", "pink petals", "petals in the wind",
                "falling petals", "kyoto", "japan in spring", "a japanese garden in spring", "plum blossoms",
                "peach blossoms", "a spring park", "flower viewing", "pink trees", "a park full of pink trees"],
}
WITH_EN = {
    "sea": ["a lighthouse", "waves", "a sandy beach", "seagulls", "a sailboat", "an island", "a headland",
            "crashing waves", "gentle waves", "rocks", "surf"],
    "mountains": ["a pine forest below", "snow", "glaciers", "a valley", "pine trees", "a meadow",
                  "sharp ridges", "snowy ridges"],
    "stars": ["a lone tree", "a hill", "the milky way", "shooting stars", "a tree silhouette", "a quiet hill"],
    "city": ["skyscrapers", "tall towers", "a harbor", "a river", "a road", "antenna masts", "a bridge"],
    "forest": ["tall pines", "a clearing", "ferns", "moss", "a winding trail", "dark trunks"],
    "desert": ["camels", "a cactus", "mesas", "rolling dunes", "rocky mesas", "a lone cactus",
               "ripples in the sand"],
    "aurora": ["snow", "pine trees", "a snowy plain", "mountains", "snowy hills", "green curtains of light"],
    "lake": ["reflections", "a wooden pier", "mountains behind it", "a reflection of the sky", "ripples",
             "a dock", "a near shore"],
    "rain": ["umbrellas", "puddles", "wet streets", "street lamps", "raindrops", "reflections on the street",
             "heavy rain"],
    "blossom": ["falling petals", "a branch overhead", "pink petals", "petals in the air", "a petal shower"],
}
NAMES_ZH = {
    "sea": ["海", "大海", "海边", "海景", "海面", "沙滩", "海浪", "海滩", "海岸", "一片海", "海岸线", "一片大海",
            "海边风景", "海天一色", "海平面", "海水", "浪花", "海边沙滩", "大海的风景", "蓝色大海"],
    "mountains": ["雪山", "雪峰", "雪山风景", "积雪的山峰", "山峰", "高山", "群山", "一座雪山", "山脉", "几座雪山",
                  "雪山群", "大山", "山景", "白雪覆盖的山", "雪岭", "山顶", "高山雪景", "连绵的雪山", "远处的雪山"],
    "stars": ["星空", "满天星", "银河", "满天繁星", "星星", "繁星", "星河", "一片星空", "满天的星星", "天上的星星",
              "璀璨星空", "星辰", "满天星斗", "星光", "漫天繁星"],
    "city": ["城市天际线", "城市", "都市", "高楼", "城市风景", "天际线", "高楼大厦", "摩天大楼", "市中心",
             "城市全景", "一座城市", "大城市", "现代都市", "城市建筑", "楼群", "都市风光", "城市远景", "市区", "CBD"],
    "forest": ["森林", "树林", "松林", "林海", "一片森林", "树木", "松树林", "林子", "大森林", "原始森林", "密林",
               "森林风景", "树林深处", "针叶林", "一片树林", "丛林", "林间"],
    "desert": ["沙漠", "沙丘", "大漠", "一片沙漠", "沙漠风光", "茫茫沙漠", "戈壁", "荒漠", "连绵的沙丘", "沙漠景色",
               "黄沙", "大漠风光", "沙地", "无边的沙丘"],
    "aurora": ["极光", "北极光", "绿色极光", "欧若拉", "一场极光", "漫天极光", "南极光", "天空中的极光",
               "极光雪原", "北极光风景", "一片极光"],
    "lake": ["湖", "湖泊", "湖面倒影", "倒影湖", "平静的湖面", "湖面", "湖水", "湖边", "湖畔", "一个湖", "一汪湖水",
             "镜湖", "湖景", "湖光山色", "湖中倒影", "山间湖泊", "高山湖泊", "湖边风景"],
    "rain": ["雨中的城市", "下雨的城市", "雨城", "雨中街道", "雨天的城市", "雨中的街道", "城市雨景", "雨景", "雨天",
             "下雨的街道", "雨中都市", "下着雨的城市", "大雨中的城市", "雨里的街景", "下雨天", "雨中的高楼"],
    "blossom": ["樱花", "樱花树", "樱花盛开", "盛开的樱花", "樱花林", "一树樱花", "一片樱花", "樱花满开",
                "粉色樱花", "樱花季", "满树樱花", "樱花大道", "樱花飘落", "樱花雨", "漫天樱花"],
}
ADJ_ZH = {
    "sea": ["平静的", "辽阔的", "一望无际的", "宁静的", "广阔的", "无边无际的", "安静的", "壮阔的", "汹涌的"],
    "mountains": ["高耸的", "巍峨的", "连绵的", "壮观的", "白雪皑皑的", "远处的", "雄伟的", "险峻的", "壮丽的"],
    "stars": ["璀璨的", "闪烁的", "浩瀚的", "密密麻麻的", "无边的", "宁静的", "深邃的", "神秘的"],
    "city": ["繁华的", "现代的", "热闹的", "宏伟的", "安静的", "巨大的", "未来感的", "忙碌的"],
    "forest": ["茂密的", "幽静的", "深深的", "原始的", "宁静的", "安静的", "古老的", "神秘的", "绿色的", "高大的"],
    "desert": ["一望无际的", "广袤的", "荒凉的", "无边的", "寂静的", "干旱的", "炎热的", "孤独的", "辽阔的"],
    "aurora": ["梦幻的", "舞动的", "流动的", "神奇的", "绿色的", "飘动的", "神秘的", "壮观的"],
    "lake": ["平静的", "宁静的", "清澈的", "如镜的", "安静的", "静谧的", "波光粼粼的", "小小的"],
    "rain": ["湿漉漉的", "阴沉的", "安静的", "孤独的", "忧郁的", "冷清的", "热闹的"],
    "blossom": ["粉色的", "盛开的", "粉粉的", "浪漫的", "满开的", "娇嫩的", "梦幻的"],
}
ADJ_ANY_ZH = ["美丽的", "好看的", "漂亮的", "唯美的", "安静的", "宁静的", "治愈的", "绝美的", "简约的"]
RELATED_ZH = {
    "sea": ["灯塔", "海边的灯塔", "海港", "港湾", "海湾", "冲浪", "海岛", "小岛", "海鸥", "潮汐", "帆船", "三亚",
            "马尔代夫", "夏威夷", "海南", "海边度假", "赶海", "浪花拍岸", "潮起潮落"],
    "mountains": ["阿尔卑斯山", "喜马拉雅", "珠穆朗玛峰", "珠峰", "瑞士", "玉龙雪山", "梅里雪山", "滑雪", "滑雪场",
                  "冰川", "登山", "雪线", "山谷", "雪坡", "高原雪山", "爬雪山"],
    "stars": ["宇宙", "银河系", "星系", "星座", "流星", "流星雨", "太空", "星云", "北斗七星", "猎户座", "观星",
              "看星星", "天文", "外太空"],
    "city": ["香港", "纽约", "东京", "陆家嘴", "深圳", "曼哈顿", "迪拜", "新加坡", "外滩", "港口城市", "城市屋顶",
             "写字楼", "金融中心", "大都市", "城市的楼顶"],
    "forest": ["松树", "林间小路", "森林小屋", "露营", "徒步", "大兴安岭", "西双版纳", "黑森林", "杉树", "松柏",
               "参天大树", "树梢", "苔藓", "大自然", "野外"],
    "desert": ["骆驼", "驼队", "撒哈拉", "撒哈拉沙漠", "敦煌", "鸣沙山", "戈壁滩", "仙人掌", "绿洲", "峡谷",
               "丝绸之路", "塔克拉玛干", "西部荒野", "大漠孤烟"],
    "aurora": ["北极", "北极圈", "冰岛", "挪威", "芬兰", "漠河", "极地", "南极", "阿拉斯加", "雪原", "北欧",
               "拉普兰", "冰天雪地", "极寒之地"],
    "lake": ["池塘", "倒影", "镜面", "水面如镜", "静水", "西湖", "天池", "九寨沟", "湖边码头", "小船", "木栈道",
             "水中倒影", "一潭静水", "河湾", "湖上的小船"],
    "rain": ["雨伞", "打伞", "暴雨", "雷雨", "大雨", "小雨", "毛毛雨", "雨滴", "积水的街道", "湿漉漉的街道", "伦敦",
             "雨季", "梅雨", "路灯和雨", "雨中的路灯", "下雨了"],
    "blossom": ["春天", "春日", "花瓣", "粉色花瓣", "赏樱", "赏花", "花见", "京都", "武汉大学", "桃花", "花开",
                "落花", "春暖花开", "日本的春天", "粉色的树"],
}
WITH_ZH = {
    "sea": ["灯塔", "海鸥", "帆船", "小岛", "沙滩", "礁石", "浪花", "岬角"],
    "mountains": ["松林", "冰川", "山谷", "草甸", "松树", "雪坡"],
    "stars": ["一棵孤树", "小山坡", "银河", "流星", "山丘"],
    "city": ["高楼", "摩天楼", "港口", "河流", "大桥", "公路", "天线塔"],
    "forest": ["高大的松树", "林间空地", "小路", "苔藓", "蕨类"],
    "desert": ["骆驼", "仙人掌", "沙丘", "岩石山", "沙纹"],
    "aurora": ["雪原", "松树", "雪山", "雪地", "森林"],
    "lake": ["倒影", "远山", "木栈道", "码头", "小船", "涟漪"],
    "rain": ["雨伞", "积水", "路灯", "行人打伞", "雨丝", "湿漉漉的路面"],
    "blossom": ["花瓣", "落花", "树枝", "飘落的花瓣", "粉色花瓣"],
}
# phrases that carry their own phase (used sometimes instead of subject + phase word)
SPECIAL_EN = {
    ("sea", "dusk"): ["sea sunset", "sunset over the sea", "ocean sunset", "beach sunset", "sunset at the beach",
                      "sunset by the sea", "the sun setting over the ocean", "golden hour at the beach"],
    ("sea", "dawn"): ["sunrise over the sea", "ocean sunrise", "sunrise at the beach", "dawn on the coast",
                      "beach at daybreak"],
    ("sea", "day"): ["sunny beach", "a sunny day at the beach", "sea under a clear sky"],
    ("sea", "night"): ["moonlit sea", "the sea under the moon", "moonlight on the ocean", "night beach"],
    ("mountains", "dawn"): ["sunrise over the mountains", "first light on the peaks", "alpenglow at sunrise"],
    ("mountains", "dusk"): ["sunset over the mountains", "mountain sunset", "alpenglow"],
    ("mountains", "day"): ["sunny alps", "snowy peaks under a blue sky"],
    ("mountains", "night"): ["moonlit peaks", "mountains under the moon"],
    ("stars", "night"): ["starry night", "night sky", "a night sky full of stars", "the milky way at night",
                         "night sky full of stars", "stargazing at night"],
    ("stars", "dusk"): ["first stars at twilight", "twilight sky with stars"],
    ("stars", "dawn"): ["the last stars before dawn"],
    ("city", "night"): ["city lights at night", "city lights", "night skyline", "the city at night",
                        "the city lit up at night", "night city"],
    ("city", "dusk"): ["sunset skyline", "the city at golden hour", "sunset over the city"],
    ("city", "dawn"): ["sunrise over the city", "the city waking up at dawn"],
    ("forest", "dawn"): ["morning light in the forest", "sunrise in the woods"],
    ("forest", "day"): ["sunlight through the trees", "sunbeams in the forest", "sun rays through the pines"],
    ("forest", "dusk"): ["sunset through the trees", "forest at sundown"],
    ("forest", "night"): ["the forest under the moon", "moonlit woods"],
    ("desert", "dusk"): ["desert sunset", "sunset over the dunes"],
    ("desert", "dawn"): ["desert sunrise", "sunrise over the dunes"],
    ("desert", "day"): ["sunny desert", "blazing desert sun", "scorching desert"],
    ("desert", "night"): ["desert night sky", "moonlit dunes", "the desert under the moon"],
    ("aurora", "night"): ["aurora at night", "northern lights night sky", "arctic night"],
    ("lake", "dawn"): ["sunrise over the lake", "morning at the lake"],
    ("lake", "dusk"): ["lake sunset", "sunset over the lake", "sunset reflection on the lake"],
    ("lake", "night"): ["moonlit lake", "the moon on the lake"],
    ("rain", "night"): ["rainy night in the city", "rainy night", "a rainy night downtown",
                        "city lights in the rain", "neon in the rain", "neon lights in the rain"],
    ("rain", "dusk"): ["rainy evening in the city", "a wet evening downtown"],
    ("rain", "dawn"): ["a rainy morning in the city"],
    ("rain", "day"): ["a rainy day in the city", "rainy afternoon downtown", "a grey rainy day"],
    ("blossom", "night"): ["cherry blossoms at night with lanterns", "night sakura", "lanterns and cherry blossoms",
                           "yozakura"],
    ("blossom", "day"): ["a hanami picnic", "sunny cherry blossoms"],
    ("blossom", "dawn"): ["a spring morning with cherry blossoms"],
    ("blossom", "dusk"): ["sakura at sunset"],
}
SPECIAL_ZH = {
    ("sea", "dusk"): ["海上日落", "海边夕阳", "海边的日落", "夕阳下的海边", "落日余晖下的大海", "海边看日落"],
    ("sea", "dawn"): ["海上日出", "海边日出", "看日出的海边"],
    ("sea", "day"): ["阳光沙滩", "晴天的海边"],
    ("sea", "night"): ["月光下的海", "夜晚的海边", "夜海"],
    ("mountains", "dawn"): ["日照金山", "雪山日出"],
    ("mountains", "dusk"): ["雪山日落", "日照金山"],
    ("mountains", "day"): ["蓝天雪山", "晴天的雪山"],
    ("mountains", "night"): ["星空下的雪山", "月光下的雪山"],
    ("stars", "night"): ["夜晚的星空", "星夜", "夜空", "满天星斗的夜晚", "星光璀璨的夜空", "繁星点点的夜晚"],
    ("stars", "dusk"): ["黄昏的星空"],
    ("stars", "dawn"): ["黎明前的星空"],
    ("city", "night"): ["城市夜景", "夜景", "万家灯火", "灯火通明的城市", "都市夜景", "璀璨的夜景"],
    ("city", "dusk"): ["日落时的城市", "夕阳下的高楼"],
    ("city", "dawn"): ["清晨的城市", "日出时的高楼"],
    ("forest", "dawn"): ["晨光中的森林", "林间的晨光"],
    ("forest", "day"): ["阳光穿过树林", "阳光透过树叶", "林间光束", "丁达尔效应"],
    ("forest", "dusk"): ["夕阳下的树林"],
    ("forest", "night"): ["月光下的森林"],
    ("desert", "dusk"): ["沙漠落日", "大漠落日", "沙漠日落", "长河落日"],
    ("desert", "dawn"): ["沙漠日出"],
    ("desert", "day"): ["烈日下的沙漠", "炎炎烈日下的沙漠"],
    ("desert", "night"): ["沙漠星空", "星空下的沙漠"],
    ("aurora", "night"): ["极光夜空", "夜空中的极光", "极光之夜"],
    ("lake", "dusk"): ["湖边日落", "夕阳下的湖面", "湖上落日"],
    ("lake", "dawn"): ["湖上日出", "清晨的湖面"],
    ("lake", "night"): ["月光下的湖", "湖中月", "星空倒映的湖面"],
    ("rain", "night"): ["雨夜城市", "雨夜的街道", "雨夜", "下雨的夜晚", "雨夜霓虹", "夜雨"],
    ("rain", "dusk"): ["傍晚下雨的街道"],
    ("rain", "dawn"): ["下雨的早晨"],
    ("rain", "day"): ["阴雨天的城市"],
    ("blossom", "night"): ["夜樱", "夜晚的樱花", "灯笼和樱花"],
    ("blossom", "day"): ["阳光下的樱花", "赏樱的午后"],
    ("blossom", "dusk"): ["夕阳下的樱花"],
}
# English phase words: (after the subject: "at dusk", before it: "dusk")
PHASE_EN = {
    "dawn": (["at dawn", "at sunrise", "in the early morning", "at daybreak", "in the morning", "at first light",
              "early in the morning", "as the sun rises", "at the break of dawn", "in the morning light"],
             ["dawn", "sunrise", "early morning", "morning", "daybreak"]),
    "day": (["during the day", "at noon", "in daylight", "in the daytime", "on a sunny day", "in the afternoon",
             "at midday", "in broad daylight", "under a blue sky", "under clear skies", "in the sun"],
            ["daytime", "sunny", "midday", "afternoon", "noon"]),
    "dusk": (["at dusk", "at sunset", "in the evening", "at twilight", "at golden hour", "at sundown",
              "as the sun goes down", "in the evening light", "during sunset", "at the end of the day"],
             ["dusk", "sunset", "evening", "twilight", "golden hour", "sundown"]),
    "night": (["at night", "at midnight", "by night", "in the night", "after dark", "late at night",
               "under the moon", "in the moonlight", "in the dead of night", "tonight"],
              ["night", "midnight", "nighttime", "late-night", "moonlit", "night-time"]),
}
# Chinese phase words: (times of day, which also open a request: "黄昏的时候，…"; scene words, which
# also follow the subject: "雪山的日落"; modifiers, before the subject only: "夕阳下的雪山")
PHASE_ZH = {
    "dawn": (["黎明", "清晨", "早晨", "拂晓", "早上", "一大早"],
             ["日出", "晨曦", "朝霞", "清晨", "黎明"],
             ["日出时", "天刚亮时", "太阳升起时", "朝阳下", "晨光中", "黎明时分", "破晓时分"]),
    "day": (["白天", "中午", "白日", "午后", "下午", "正午", "大白天"],
            ["午后", "正午", "白天", "晴天"],
            ["晴天", "阳光明媚的", "蓝天下", "阳光下", "晴朗的", "白天里", "正午时分"]),
    "dusk": (["黄昏", "傍晚", "薄暮"],
             ["日落", "夕阳", "落日", "晚霞", "黄昏", "傍晚"],
             ["日落时", "夕阳下", "太阳下山时", "落日余晖下", "晚霞中", "傍晚时分"]),
    "night": (["夜晚", "晚上", "深夜", "夜里", "夜间", "半夜", "午夜"],
              ["夜晚", "夜色", "深夜", "午夜"],
              ["夜色中", "月光下", "入夜后", "星光下", "深夜里"]),
}
# phase words that contradict a family's picture (its rain is always overcast)
CLASH = {"rain": ("sunny", "blue sky", "clear sk", "in the sun", "moon", "sunshine", "sunlit", "sun is", "sun's",
                  "stars", "starlit", "bright", "clear", "晴", "阳光", "蓝天", "月", "星", "艳阳", "烈日", "日光", "太阳",
                  "日头")}
# style words
STYLE_EN = {  # (before the subject, after it, at the end of the request)
    "warm": (["warm", "warm-toned", "golden", "amber", "warm-colored"],
             ["in warm tones", "with warm colors", "in golden tones", "with a warm glow", "in warm colors"],
             ["make it warm", "warmer colors please", "use warm colors", "warm tones", "warm tones please"]),
    "cool": (["cool", "cool-toned", "blue-toned", "bluish", "cold-toned", "icy blue"],
             ["in cool tones", "with cool colors", "in blue tones", "with a cold blue tint", "in cold colors"],
             ["make it cool", "cooler colors please", "go for cool blue tones", "cool tones", "cool tones please"]),
    "misty": (["misty", "foggy", "hazy", "mist-covered", "fog-covered"],
              ["in the fog", "in the mist", "with mist", "shrouded in mist", "covered in fog", "with some haze"],
              ["add some fog", "make it misty", "with a bit of haze", "foggy please", "add a little mist"]),
    "vivid": (["vivid", "colorful", "vibrant", "saturated", "colourful", "bright-colored"],
              ["in vivid colors", "with vibrant colors", "full of color", "in bright colors"],
              ["make it vivid", "more colorful please", "make the colors pop", "boost the saturation",
               "super colorful"]),
}
STYLE_ZH = {  # (before the subject, after it or at the end of the request)
    "warm": (["暖色调的", "温暖的", "暖色的", "金色的", "暖暖的", "暖黄色的", "暖色系的"],
             ["暖色调", "暖色调一点", "偏暖色", "色调暖一些", "暖一点", "要暖色的", "暖色系"]),
    "cool": (["冷色调的", "清冷的", "冷色的", "蓝色调的", "冷冷的", "冷色系的", "冰蓝色的"],
             ["冷色调", "冷色调一点", "偏冷色", "色调冷一些", "冷一点", "要冷色的", "蓝调一点"]),
    "misty": (["有雾的", "雾气弥漫的", "朦胧的", "起雾的", "雾蒙蒙的", "薄雾笼罩的", "云雾缭绕的", "雾中的"],
              ["有雾", "起雾了", "朦胧一点", "加点雾", "雾蒙蒙的感觉", "带点薄雾", "雾气重一点"]),
    "vivid": (["鲜艳的", "色彩鲜艳的", "绚丽的", "浓郁的", "色彩丰富的", "高饱和的", "艳丽的"],
              ["色彩鲜艳", "鲜艳一点", "颜色鲜艳点", "饱和度高一点", "颜色浓一点", "色彩丰富一些"]),
}
# Request wordings. "{}" is the subject; "{a}" marks one used as a modifier ("a {a} wallpaper": no
# article of its own). A trailing "?" makes it a question: typed text keeps the mark, speech drops it.
FILLER_EN = [
    "{}", "{}", "{}", "{}", "{}", "{}",
    # commands
    "make me a wallpaper of {}", "a wallpaper of {}", "{a} wallpaper", "show me {}", "change the wallpaper to {}",
    "a picture of {}", "generate {}", "draw {}", "background with {}", "new wallpaper: {}",
    "set the background to {}", "give me {}", "please show {}", "a beautiful view of {}", "{}, wallpaper",
    "switch to {}", "switch the wallpaper to {}", "change it to {}", "paint {}", "create a wallpaper with {}",
    "make a background of {}", "show {}", "display {}", "put up {}", "let me see {}", "lemme see {}",
    "gimme {}", "{a} background", "a {a} wallpaper", "a {a} background", "{a} theme", "set a {a} wallpaper",
    "give me a {a} wallpaper", "switch to a {a} theme", "new {a} wallpaper", "{a} pic", "{a} picture",
    "wallpaper {}", "background {}",
    # wishes
    "i want {}", "i'd like {}", "i would love {}", "i feel like seeing {}", "in the mood for {}",
    "i'm in the mood for {}", "i miss {}", "take me to {}", "dreaming of {}", "something like {}",
    "something with {}", "i need {}", "it would be nice to see {}", "i wanna see {}", "i want to see {}",
    "would love to see {}", "i want a {a} background", "{a} vibes",
    # questions
    "can you make {}?", "can you show me {}?", "could you make {}?", "can i get {}?", "could i have {}?",
    "how about {}?", "what about {}?", "do you have {}?", "can we do {}?", "would you draw {}?",
    "can you set the wallpaper to {}?", "got any {a} wallpapers?", "any {a} backgrounds?",
    "is there a {a} wallpaper?", "can you find me {}?",
    # polite and casual
    "{}, please", "{} please", "please set the wallpaper to {}", "could you please show {}?",
    "would you mind showing {}?", "please change the background to {}", "{} pls", "{}, thanks",
    "{} if you can", "ok {}", "yeah {}", "just {}", "{} now", "{} for me", "let's go with {}", "let's do {}",
    "go with {}", "{} would be nice", "{a} wallpaper please", "now show {}",
    # in the car
    "{} on the center screen", "put {} on the center screen", "set the center screen to {}",
    "{} for the dashboard", "dashboard wallpaper: {}", "change the car display to {}", "show {} on the display",
    "i want {} on my screen", "{} as the car wallpaper", "can you put {} on the center display?",
    "use {} for the infotainment screen", "{a} wallpaper for the center screen", "{} for the drive",
    "put {} on the main display",
    # descriptions
    "a photo of {}", "an image of {}", "a painting of {}", "a landscape of {}", "{}, high resolution",
    "{}, 4k wallpaper", "{}, hd", "scenic view of {}", "{a} scenery", "{a} landscape", "digital art of {}",
    "{}, desktop background",
]
FILLER_ZH = [
    "{}", "{}", "{}", "{}", "{}", "{}",
    # commands
    "换一张{}的壁纸", "来个{}壁纸", "给我一张{}", "{}壁纸", "生成{}", "我想要{}", "画一张{}", "把壁纸换成{}",
    "来一张{}的图片", "换个{}的背景", "请生成{}的壁纸", "来点{}", "显示{}", "帮我换成{}", "换成{}", "切换到{}",
    "把背景换成{}", "把背景改成{}", "壁纸换成{}", "来一张{}", "来张{}", "整一张{}的", "弄个{}的壁纸", "搞一张{}",
    "放一张{}", "给我来张{}的图", "做一张{}的壁纸", "帮我画一张{}", "画个{}", "生成一张{}的图片",
    "换一个{}主题", "设置成{}", "用{}当壁纸", "来一张{}的风景", "换张{}", "给我换成{}", "背景换成{}",
    # wishes
    "我想看{}", "想看看{}", "好想看{}", "想要一张{}的壁纸", "我要{}", "要{}的", "我想要一张{}的图",
    "想换个{}的壁纸", "今天想看{}", "突然想看{}", "有点想看{}",
    # questions
    "有没有{}的壁纸？", "能不能换成{}？", "可以给我一张{}吗？", "能给我画个{}吗？", "能换个{}的背景吗？",
    "{}的壁纸有吗？", "来一张{}好不好？", "可以换成{}吗？", "能不能来点{}？", "换成{}怎么样？", "有{}的图吗？",
    # polite
    "请把壁纸换成{}", "麻烦换成{}", "麻烦帮我生成一张{}", "请帮我换一张{}的壁纸", "请显示{}",
    "麻烦来一张{}，谢谢", "请给我一张{}的图片", "帮我换个{}的壁纸，谢谢",
    # in the car
    "中控屏换成{}", "把中控屏的壁纸换成{}", "车机壁纸换成{}", "中控屏显示{}", "仪表盘背景换成{}", "屏幕换成{}",
    "换个{}的车机壁纸", "大屏上放一张{}", "中控屏来一张{}", "把车里的屏幕换成{}", "车机背景换成{}的",
    # descriptions
    "一张{}的照片", "{}的风景", "{}风景图", "{}的画面", "{}，高清壁纸", "{}，4K", "一幅{}的画",
]
# speech: what an assistant's recogniser passes through, and what it gets wrong
VOICE_EN = {"fillers": ["um", "uh", "uh", "umm", "er", "hmm", "like", "so", "okay so", "well", "you know",
                        "i mean", "oh", "ah", "uh like"],
            "wake": ["hey cabin", "ok cabin", "hi cabin"]}
VOICE_ZH = {"fillers": ["嗯", "呃", "额", "那个", "就是", "嗯嗯", "那个那个", "就是说", "这个", "诶", "哎"],
            "wake": ["你好小卡", "小卡小卡", "小卡"],
            "particles": ["吧", "啊", "呀", "哈", "嘛", "呗"]}
SLIPS_EN = {"sea": "see", "desert": "dessert", "dusk": "dust", "night": "knight", "skyline": "sky line",
            "sunset": "sun set", "sunrise": "sun rise", "wallpaper": "wall paper", "background": "back ground",
            "forest": "forrest", "mountains": "mountain", "lights": "light", "blossoms": "blossom",
            "waves": "ways", "rainy": "raining", "dawn": "don", "aurora": "arora", "dunes": "tunes",
            "cherry": "sherry", "beach": "beech", "peaks": "peeks", "stars": "stairs", "lake": "like"}
SLIPS_ZH = [("森林", "深林"), ("星空", "星控"), ("城市", "程式"), ("极光", "急光"), ("雪山", "雪杉"),
            ("沙漠", "沙莫"), ("樱花", "英花"), ("黄昏", "黄婚"), ("壁纸", "币纸"), ("夜景", "叶景"),
            ("湖面", "胡面"), ("日落", "日洛"), ("海边", "还边"), ("晚霞", "晚夏"), ("银河", "音河"),
            ("下雨", "夏雨"), ("朦胧", "蒙龙"), ("换成", "还成"), ("中控屏", "中空屏"), ("沙滩", "沙摊")]
CAPTION_P = {
    "special": 0.3,     # a phase-bound phrase, when there is one and the phase is named
    "related": 0.18,    # an indirect subject instead of a name
    "with": 0.14,       # name + a thing in the scene
    "adj": 0.3,         # a family adjective (generic adjectives at a quarter of this)
    "voice": 0.3,       # speech transcript: lowercase, no punctuation, fillers, slips
    "mixed": 0.1,       # zh request with an English word in it (0.02 the other way round)
}
# words / characters: the text encoder keeps 30 tokens, and a rarer CJK character takes two
MAX_LEN_EN, MAX_LEN_ZH = 20, 22


def _split(templates):
    """(template, question, attributive) with the "?" and "{a}" marks taken out."""
    out = []
    for t in templates:
        q = t.endswith("?") or t.endswith("？")
        out.append((t.rstrip("?？").replace("{a}", "{}"), q, "{a}" in t))
    return out


def _clean(words, fam):
    """Drops phase words that clash with the family's picture."""
    bad = CLASH.get(fam, ())
    return [w for w in words if not any(b in w for b in bad)]


_FIXED = ("a ", "an ", "the ")  # English entries that bring their own article take no adjective


def _short(words):
    """Words fit for mixing into the other language: one or two, no article."""
    return [w for w in words if len(w.split()) <= 2 and not w.startswith(_FIXED)]


# ---- the widened lexicon (0.4) ------------------------------------------------------------------
# Everyday words from a thesaurus pass over each family and time of day, in both languages, written
# apart from the evaluation prompts: a text encoder trained on few wordings of "dawn" read "as the
# light comes" as nothing at all. Appended to the lists above, so `common` still draws the first,
# plainest names most often. Time of day is also said as an event ("when the sun goes down",
# "太阳下山以后"): those phrases are composed from their parts below rather than listed one by one.
_MORE_NAMES_EN = {
    "sea": ["the waves", "breaking waves", "sea water", "the deep blue sea", "blue ocean", "the ocean shore",
            "the shoreline", "seashore", "a seashore", "the beachfront", "a lagoon", "the bay", "a coastal view",
            "the sea coast", "a marine view", "the surf", "ocean water", "a sandy coast", "the shore and the sea",
            "water and sand", "an ocean beach", "the tide line", "the coast and the waves"],
    "mountains": ["snowy summits", "summits", "alpine mountains", "mountain tops", "the peaks", "a snowy peak",
                  "snow peaks", "high peaks", "a massif", "a mountain ridge", "ridges", "a mountain",
                  "icy mountains", "snow-clad mountains", "white peaks", "frosty peaks", "highlands",
                  "snow on the mountains", "a mountain chain", "the high alps", "mountains in winter"],
    "stars": ["a sky of stars", "so many stars", "stars everywhere", "sparkling stars", "stardust",
              "heavens full of stars", "space and stars", "glittering stars", "a dome of stars",
              "a sea of stars", "the stars above", "shining stars", "millions of stars", "a blanket of stars"],
    "city": ["high rises", "tower blocks", "the metropolis", "an urban landscape", "downtown buildings",
             "a city center", "city buildings", "glass towers", "a concrete jungle", "the urban skyline",
             "a skyscraper skyline", "city blocks", "an urban center", "towers", "a business district",
             "the city centre", "an urban area", "the town", "a big town", "skyscrapers and streets"],
    "forest": ["conifers", "a conifer wood", "a fir forest", "firs", "spruces", "a spruce forest",
               "evergreen trees", "green woods", "a wood", "timberland", "a thicket", "pinewoods", "a pinewood",
               "a forested hill", "tree-covered hills", "a stand of pines", "the greenwood", "a lot of trees",
               "trees everywhere", "a forest trail", "a woodland of firs", "forest trees", "a forest path"],
    "desert": ["the sands", "a sea of sand", "sand hills", "a barren desert", "dry land", "arid land",
               "a dune landscape", "the great desert", "golden sands", "a sand desert", "a desert plain",
               "sand as far as you can see", "big dunes", "a sandy plain", "dry sand", "desert sand"],
    "aurora": ["polar light", "the lights of the north", "an aurora glow", "arctic lights", "green northern lights",
               "ribbons of light in the sky", "curtains of light in the sky", "borealis", "the aurora glowing",
               "lights in the arctic sky", "aurora waves", "a sky of green light", "the northern glow"],
    "lake": ["a pond in the hills", "a lake mirror", "mirror water", "still waters", "a lakefront", "a tarn",
             "a loch", "the lake shore", "a serene lake", "reflection in the water", "a glassy lake",
             "water reflections", "a lake below the mountains", "an alpine lake", "a lake in the hills",
             "a lake with mountains around it", "calm waters", "a reflecting lake"],
    "rain": ["a rainy town", "a rain-soaked city", "a wet city", "a downpour downtown", "rainfall in the city",
             "a rainy metropolis", "showers over the city", "drizzle in the city", "a city storm", "a stormy city",
             "rain-slick streets", "the city in a downpour", "a rainy urban street", "a grey rainy city",
             "rainy roads in town", "rain on the streets", "wet streets in town", "rainy weather downtown"],
    "blossom": ["a sakura tree", "blossom season", "pink flowering trees", "flowering cherries", "cherry flowers",
                "sakura flowers", "a blossoming tree", "spring blossoms", "pink blooms", "cherry bloom",
                "trees in blossom", "cherry trees flowering", "pink trees in spring", "a blossoming park",
                "an avenue of cherry trees", "cherry blossom branches"],
}
_MORE_NAMES_ZH = {
    "sea": ["海洋", "大洋", "海滨", "碧海", "浪涛", "海水和沙滩", "海岸边", "海上风光", "沙滩海浪", "海湾风景",
            "大海边", "海边的沙滩", "一望无际的海", "浩瀚的海洋", "海上", "海景风光"],
    "mountains": ["冰峰", "雪顶", "山巅", "雪山之巅", "山岭", "积雪的山", "峰峦", "崇山峻岭", "银装素裹的山",
                  "雪山山顶", "白雪皑皑的山峰", "冰雪覆盖的山", "雪山风光", "山峦", "一片雪山", "冬天的山"],
    "stars": ["星海", "星光灿烂", "一天的星星", "数不清的星星", "星斗", "繁星满天", "星星满天",
              "漫天星光", "满是星星", "闪闪的星星", "亮晶晶的星星", "天空的星星"],
    "city": ["楼宇", "都市风景", "商务区", "写字楼群", "钢筋森林", "城区", "闹市", "城市中心", "大楼", "城市景观",
             "城里", "高楼群", "城市的天际线", "一片高楼", "大都会", "市中心的高楼"],
    "forest": ["树海", "杉林", "绿树", "林地", "丛林深处", "森林里", "树丛", "一片林子", "林荫", "大树林",
               "茂林", "山林", "森林深处", "针叶树", "松杉", "一片松树", "好多树", "树林子"],
    "desert": ["沙海", "沙山", "荒原", "沙漠地带", "金色沙漠", "黄沙漫漫", "沙丘连绵", "大沙丘", "沙子",
               "漫漫黄沙", "干旱的沙地", "沙漠里", "茫茫大漠"],
    "aurora": ["极光带", "北极的极光", "光幕", "天空的光带", "极地之光", "欧若拉极光", "极光秀", "绿色的光带",
               "天上的极光", "北方的极光", "极光之美"],
    "lake": ["湖面如镜", "湖心", "水库", "湖光", "静静的湖", "湖泊风景", "山湖", "小湖", "湖水如镜",
             "湖边的倒影", "一面湖", "明镜般的湖", "宁静的湖泊", "清澈的湖水"],
    "rain": ["雨中的都市", "阴雨的城市", "城市下雨", "雨幕中的城市", "雨中街景", "暴雨中的城市", "雨天街道",
             "淋雨的街道", "雨打街道", "下雨的城", "雨天的街头", "城市里的雨", "大雨里的城市", "雨中的马路"],
    "blossom": ["樱", "樱花开了", "樱花烂漫", "一排樱花树", "樱花小道", "樱花绽放", "春樱", "樱花树下",
                "樱花枝", "粉色的花树", "樱花正开", "满园樱花", "开花的樱桃树"],
}
# English times of day said as an event: "{connector} {event}"
_EVENTS_EN = {
    "dawn": ["the sun rises", "the sun comes up", "the sun is rising", "the sun is coming up", "the sun comes out",
             "day breaks", "the day starts", "the morning begins", "the sky turns light", "the sky gets light",
             "the first light appears", "the world wakes up", "the birds start singing"],
    "day": ["the sun is high", "the sun is out", "the sun is shining", "it's bright out", "it is broad day",
            "the sun is up high", "everyone is at work", "the sky is clear and bright"],
    "dusk": ["the sun sets", "the sun goes down", "the sun is setting", "the sun is going down", "the day ends",
             "evening comes", "night falls", "it gets dark", "it's getting dark", "the light fades",
             "the sky turns orange", "the sun sinks"],
    "night": ["it is dark", "it's dark out", "everyone is asleep", "the moon is up", "the moon is out",
              "the lights come on", "the stars come out", "the city sleeps", "it's pitch dark",
              "the sun has long set", "it's late and dark"],
}
_CONNECT_EN = ["as", "when", "while", "just as", "right when", "just after", "around when", "at the time",
               "by the time"]
_MORE_PHASE_EN = {  # (after the subject, before it)
    "dawn": (["at sunup", "at sun-up", "early", "first thing", "before breakfast", "at 6 am", "at six in the morning",
              "with the morning sun", "in morning light", "on an early morning", "this morning",
              "at the start of the day", "in the morning time", "early in the day", "at the dawn of day",
              "at first sun", "with the sunrise", "before the day starts", "in the early morning mist"],
             ["sunup", "early-morning", "first-light", "dawn-lit", "sunrise-lit"]),
    "day": (["at lunch", "around noon", "at 12 o'clock", "in the sunshine", "on a bright day", "in the bright sun",
             "with clear skies", "under the sun", "on a clear day", "in the heat of the day", "at two in the afternoon",
             "by day", "in the day", "during daytime", "at high noon", "in the light of day", "on a fine day"],
            ["sunlit", "bright", "noonday", "sunshiny", "daylight", "day-time"]),
    "dusk": (["at nightfall", "as night falls", "as it gets dark", "toward evening", "in the late evening",
              "at eventide", "after work", "around 6 pm", "at evening time", "with the setting sun",
              "in the setting sun", "in the afterglow", "at the last light", "at the day's end", "in the dusk",
              "when the day is over", "in the glow of sunset", "at sunset hour"],
             ["sunset-lit", "sundown", "evening-lit", "dusky", "twilit"]),
    "night": (["at 2 am", "overnight", "in darkness", "in the dark", "after nightfall", "under the stars",
               "by moonlight", "at bedtime", "at night time", "in the deep night", "at midnight hour",
               "late in the night", "in the small hours", "on a moonless night", "in the night time",
               "under a black sky", "well after sunset", "when everyone sleeps"],
              ["nocturnal", "dark", "after-dark", "night-lit", "nighttime"]),
}
# Chinese times of day said as an event: "{subject}{verb}{tail}" -> 太阳刚升起的时候 / 天黑以后
_EVENTS_ZH = {
    "dawn": (["太阳", "日头", "朝阳"], ["升起", "出来", "刚升起", "刚出来", "慢慢升起", "冒出来", "露头"]),
    "dusk": (["太阳", "日头", "夕阳"], ["落山", "下山", "快落山", "正在下山", "慢慢落下", "西沉", "落下"]),
    "night": (["天", "天色"], ["黑了", "全黑了", "黑透了", "已经黑了", "黑下来"]),
    "day": (["太阳", "日头"], ["高高挂着", "当空照", "正高", "晒着"]),
}
_EVENT_TAIL_ZH = {"dawn": ["的时候", "时", "那会儿", "的那一刻"], "dusk": ["的时候", "时", "那会儿", "的那一刻"],
                  "night": ["以后", "之后", "的时候", "后"], "day": ["的时候", "时"]}
_MORE_PHASE_ZH = {  # (times, scene words, modifiers)
    "dawn": (["凌晨", "大清早", "清早", "早起", "天亮", "早上六点", "早晨时分", "一早"],
             ["曙光", "朝阳", "破晓", "旭日", "晨光"],
             ["旭日东升时", "天边泛白时", "朝阳初升时", "清晨时分", "早起时", "晨曦里", "日出的时候"]),
    "day": (["晌午", "上午", "白昼", "中午时分", "大晴天", "白天的时候"],
            ["艳阳", "烈日", "晴空", "日光"],
            ["艳阳高照的", "烈日下", "晴空万里的", "日光下", "大太阳下", "太阳底下", "光天化日下"]),
    "dusk": (["日暮", "向晚", "晚饭前", "黄昏时分", "傍晚的时候"],
             ["余晖", "暮色", "落霞", "晚照"],
             ["日落西山时", "夕阳西下时", "天色渐暗时", "暮色中", "余晖中", "傍晚六点", "落日时"]),
    "night": (["晚间", "夜深", "凌晨两点", "夜半", "晚上十点", "夜里头"],
              ["夜幕", "黑夜", "月夜", "夜色"],
              ["夜幕降临后", "月色下", "夜深时", "入夜时分", "漆黑的夜里", "熄灯后", "大家都睡了的时候"]),
}


def _widen_lexicon():
    for f in FAMILIES:
        NAMES_EN[f] += [w for w in _MORE_NAMES_EN[f] if w not in NAMES_EN[f]]
        NAMES_ZH[f] += [w for w in _MORE_NAMES_ZH[f] if w not in NAMES_ZH[f]]
    for p in PHASES:
        after, before = PHASE_EN[p]
        more_after, more_before = _MORE_PHASE_EN[p]
        events = [f"{c} {e}" for c in _CONNECT_EN for e in _EVENTS_EN[p]]
        PHASE_EN[p] = (after + more_after + events, before + more_before)
        times, words, mods = PHASE_ZH[p]
        more_times, more_words, more_mods = _MORE_PHASE_ZH[p]
        subjects, verbs = _EVENTS_ZH[p]
        events = [f"{s}{v}{t}" for s in subjects for v in verbs for t in _EVENT_TAIL_ZH[p]]
        # an event phrase opens a request ("太阳下山的时候，…") or modifies the subject ("天黑以后的城市")
        PHASE_ZH[p] = (times + more_times + events, words + more_words, mods + more_mods + events)


_widen_lexicon()


_TPL_EN, _TPL_ZH = _split(FILLER_EN), _split(FILLER_ZH)
_PH_EN = {(f, p): tuple(_clean(ws, f) for ws in PHASE_EN[p]) for f in FAMILIES for p in PHASES}
_PH_ZH = {(f, p): tuple(_clean(ws, f) for ws in PHASE_ZH[p]) for f in FAMILIES for p in PHASES}
_MIX_EN = {f: _short(NAMES_EN[f] + RELATED_EN[f]) for f in FAMILIES}  # English words in a zh request
_MIX_PH = {p: PHASE_EN[p][1] for p in PHASES}
_MIX_ST = {s: STYLE_EN[s][0][:3] for s in STYLES}
_ST_TAIL_EN = {s: STYLE_EN[s][1] + STYLE_EN[s][2] for s in STYLES}


class _Draw:
    """The uniforms for one caption, drawn from `rng` in blocks: one numpy call per choice would
    cost about a microsecond each, more than the caption itself."""

    def __init__(self, rng, n=48):
        self.rng, self.u, self.i = rng, rng.random(n).tolist(), 0

    def __call__(self):
        if self.i == len(self.u):
            self.u, self.i = self.rng.random(len(self.u)).tolist(), 0
        self.i += 1
        return self.u[self.i - 1]

    def pick(self, xs):
        return xs[int(self() * len(xs))]

    def common(self, xs):
        """Leans to the front of the list: the first quarter is drawn half the time."""
        u = self()
        return xs[int(u * u * len(xs))]


def _join_en(d, parts):
    return parts[0] if len(parts) == 1 else d.pick((" and ", ", ", " ")).join(parts)


def _en(d, fam, ph, styles, with_phase, voice):
    tpl, question, attr = d.pick(_TPL_EN)
    P = CAPTION_P
    special = with_phase and SPECIAL_EN.get((fam, ph))
    phase_done = not with_phase
    r = d()
    if special and d() < P["special"]:
        noun, phase_done = d.pick(special), True
    elif r < P["related"]:
        noun = d.pick(RELATED_EN[fam])
    elif d() < 0.02:
        noun = d.common(NAMES_ZH[fam])  # a Chinese name in an English request
    else:
        noun = d.common(NAMES_EN[fam])
        a = d()
        if not noun.startswith(_FIXED) and a < P["adj"]:
            noun = f"{d.pick(ADJ_EN[fam] if a < P['adj'] * 0.75 else ADJ_ANY_EN)} {noun}"
        if r > 1 - P["with"]:
            noun = f"{noun} {d.pick(('with', 'with', 'and'))} {d.pick(WITH_EN[fam])}"
    fixed = noun.startswith(_FIXED)
    pre, post, tail = [], [], []
    for s in styles:  # each style word goes before the subject, after it or to the end of the request
        u = d()
        if u < 0.45 and not fixed:
            pre.append(d.pick(STYLE_EN[s][0]))
        elif u < 0.75:
            post.append(d.pick(STYLE_EN[s][1]))
        else:
            tail.append(d.pick(_ST_TAIL_EN[s]))
    front = back = ""
    if not phase_done:
        after, before = _PH_EN[(fam, ph)]
        u = d()
        if u < 0.33 and not fixed:
            noun = f"{d.common(before)} {noun}"
        elif u < 0.8:
            post.insert(int(d() * (len(post) + 1)), d.common(after))
        elif u < 0.9:
            front = d.common(after)
        else:
            back = d.common(after)
    if pre:
        noun = f"{_join_en(d, pre)} {noun}"
    if post:
        noun = f"{noun}{d.pick((' ', ' ', ', ')) if len(post) == 1 else ' '}{' '.join(post)}"
    if attr:
        noun = noun.split(" ", 1)[1] if noun.startswith(_FIXED) else noun
        if "a {}" in tpl and noun[0] in "aeiou":
            tpl = tpl.replace("a {}", "an {}")
    elif not noun.startswith(_FIXED) and d() < 0.2:
        noun = "the " + noun
    text = tpl.format(noun)
    if front:
        text = f"{front}{d.pick((', ', ' '))}{text}"
    if back:
        text = f"{text}{d.pick((', ', ' '))}{back}"
    if tail:
        text = f"{text}{d.pick((', ', ' ', ' and '))}{_join_en(d, tail)}"
    if voice:
        return _voice_en(d, text)
    if question and d() < 0.7:
        text += "?"
    elif d() < 0.05:
        text += d.pick(("!", "."))
    return text[0].upper() + text[1:] if d() < 0.15 else text


def _voice_en(d, text):
    """Recogniser output: lowercase, no punctuation, fillers, a stutter or a misheard word."""
    words = text.lower().replace(",", "").replace(":", "").split()
    if d() < 0.15:  # a misheard word: the first one in the slip table from a random point on
        k = int(d() * len(words))
        for w in words[k:] + words[:k]:
            if w in SLIPS_EN:
                words[words.index(w)] = SLIPS_EN[w]
                break
    if d() < 0.15:
        k = int(d() * min(4, len(words)))
        words.insert(k, words[k])
    for _ in range(int(d() * 2.6)):  # 0-2 fillers, anywhere
        words.insert(int(d() * (len(words) + 1)), d.pick(VOICE_EN["fillers"]))
    if d() < 0.04:
        words.insert(0, d.pick(VOICE_EN["wake"]))
    return " ".join(words)


def _mix(d, word):
    """An English word inside Chinese text, with or without spaces around it."""
    return f" {word} " if d() < 0.5 else word


def _zh(d, fam, ph, styles, with_phase, voice):
    tpl, question, _ = d.pick(_TPL_ZH)
    closed = not tpl.endswith("{}")  # text follows the subject: "，" phrases go to the end instead
    P = CAPTION_P
    special = with_phase and SPECIAL_ZH.get((fam, ph))
    phase_done = not with_phase
    mixed = int(d() * 3) if d() < P["mixed"] else -1  # 0: the subject, 1: the phase, 2: a style in English
    measure = ""
    r = d()
    if special and d() < P["special"]:
        noun, phase_done = d.pick(special), True
    elif mixed == 0:
        noun = _mix(d, d.common(_MIX_EN[fam]))
    elif r < P["related"]:
        noun = d.pick(RELATED_ZH[fam])
    else:
        noun = d.common(NAMES_ZH[fam])
        if noun[0] in "一几":  # modifiers go after the measure word: 一片(夜晚的)森林
            measure, noun = noun[:2], noun[2:]
            at = tpl.index("{}")
            if at and tpl[at - 1] in "张幅个点":  # but not after another one: 来一张(一片)森林
                measure = ""
        a = d()
        if a < P["adj"]:
            adj = d.pick(ADJ_ZH[fam] if a < P["adj"] * 0.75 else ADJ_ANY_ZH)
            noun = noun if noun.startswith(adj) else adj + noun
        if r > 1 - P["with"]:
            w = d.pick(WITH_ZH[fam])
            also = f"{noun}和{w}" if closed else f"{noun}，还有{w}"
            noun = d.pick((f"有{w}的{noun}", f"带{w}的{noun}", f"{noun}和{w}", also))
    pre, post, tail = [], [], []
    for s in styles:
        u = d()
        if mixed == 2:
            pre.append(_mix(d, d.pick(_MIX_ST[s])) + d.pick(("的", "")))
            mixed = -1
        elif u < 0.5:
            pre.append(d.pick(STYLE_ZH[s][0]))
        else:
            (post if u < 0.75 and not closed else tail).append(d.pick(STYLE_ZH[s][1]))
    noun = "".join(pre) + noun
    front = ""
    if not phase_done:
        times, words, mods = _PH_ZH[(fam, ph)]
        u, v = d(), d()
        if mixed == 1:
            noun = f"{_mix(d, d.common(_MIX_PH[ph]))}{d.pick(('的', ''))}{noun}"
        elif u < 0.45:  # 黄昏的雪山 / 夕阳下的雪山 / 日落雪山
            p = d.common(times) if v < 0.5 else d.pick(words) if v < 0.75 else d.pick(mods)
            noun = p + noun if p.endswith("的") else f"{p}{'的' if measure else d.pick(('的', '的', ''))}{noun}"
        elif u < 0.65:  # 雪山的日落
            noun = f"{measure}{noun}的{d.common(words)}"
            measure = ""
        elif u < 0.78 and not closed:  # 雪山，黄昏
            noun = f"{measure}{noun}，{d.common(times if v < 0.6 else words)}"
            measure = ""
        elif u < 0.9:  # 黄昏的时候，来一张雪山
            front = d.common(times) + d.pick(("，", "的时候，", ""))
        else:  # 来一张雪山，要黄昏的
            tail.insert(0, d.pick(("{}", "要{}的", "{}的")).format(d.common(times)))
    noun = measure + noun
    if post:
        noun = f"{noun}，{'，'.join(post)}"
    fill = d.pick(VOICE_ZH["fillers"]) if voice and d() < 0.25 else ""  # 来一张 那个 雪山
    text = front + tpl.format(fill + noun)
    if tail:
        text = f"{text}，{'，'.join(tail)}"
    if not question and d() < (0.2 if voice else 0.1):
        text += d.pick(VOICE_ZH["particles"])
    if voice:
        return _voice_zh(d, text)
    if question:
        text += d.pick(("？", "？", "？", "?", "", ""))
    elif d() < 0.1:
        text += d.pick(("。", "！", "~"))
    if d() < 0.1:
        text = text.replace("，", d.pick((",", " ")))
    return " ".join(text.split())


def _voice_zh(d, text):
    """Recogniser output: no punctuation, fillers, a stutter or a homophone."""
    for mark in "，。？！,":
        text = text.replace(mark, " " if d() < 0.2 else "")
    if d() < 0.15:  # a homophone: the first one in the slip table from a random point on
        k = int(d() * len(SLIPS_ZH))
        for a, b in SLIPS_ZH[k:] + SLIPS_ZH[:k]:
            if a in text:
                text = text.replace(a, b, 1)
                break
    if d() < 0.12:  # 我我想要 / 换一换一张
        k = 1 + int(d() * 2)
        text = text[:k] + text
    if d() < 0.35:
        text = d.pick(VOICE_ZH["fillers"]) + d.pick(("", " ")) + text
    if d() < 0.04:
        text = d.pick(VOICE_ZH["wake"]) + d.pick(("", " ")) + text
    return " ".join(text.split())


def caption_en(rng, meta, with_phase=True):
    """An English (typed or spoken) request for the scene; with_phase=False leaves the phase out."""
    d = _Draw(rng)
    voice = d() < CAPTION_P["voice"]
    best = None
    for _ in range(3):  # an over-long draw is drawn again (the shortest kept): no subject is truncated
        text = _en(d, meta["family"], meta["phase"], meta["styles"], with_phase, voice)
        if text.count(" ") < MAX_LEN_EN:
            return text
        best = text if best is None or len(text) < len(best) else best
    return best


def caption_zh(rng, meta, with_phase=True):
    """A Chinese (typed or spoken) request for the scene, now and then with an English word in it."""
    d = _Draw(rng)
    voice = d() < CAPTION_P["voice"]
    best = None
    for _ in range(3):
        text = _zh(d, meta["family"], meta["phase"], meta["styles"], with_phase, voice)
        if len(text) <= MAX_LEN_ZH:
            return text
        best = text if best is None or len(text) < len(best) else best
    return best


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
    return f"{PHASE_ZH[ph][0][0]}的{NAMES_ZH[fam][0]}"


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
# Command line: contact sheet, image files, distinctness check
# ------------------------------------------------------------------------------------------------
def contact_sheet(path: Path, seed=0, size=(H, W)):
    from PIL import Image, ImageDraw

    h, w = size
    rng = np.random.default_rng(seed)
    rows = []
    t0 = time.perf_counter()
    n = 0
    stats = {p: [] for p in PHASES}
    for fam in FAMILIES:
        row = []
        for ph in PHASES:
            meta = random_scene(rng, fam, ph, styles=[])
            img = render(rng, meta, size)
            stats[ph].append(luminance(img.astype(F32) / 255).mean())
            row.append(img)
            n += 1
        # one extra column with a random style
        meta = random_scene(rng, fam, PHASES[rng.integers(4)], styles=[STYLES[rng.integers(4)]])
        row.append(render(rng, meta, size))
        rows.append((row, fam, meta))
        n += 1
    dt = (time.perf_counter() - t0) / n
    pad = 4
    sheet = Image.new("RGB", (5 * (w + pad) + pad, len(rows) * (h + pad + 12) + pad + 12), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(list(PHASES) + ["+style"]):
        draw.text((pad + j * (w + pad) + 4, 2), name, fill=(230, 230, 230))
    for i, (row, fam, meta) in enumerate(rows):
        y = 12 + pad + i * (h + pad + 12)
        draw.text((pad + 4, y), f"{fam}   (last: {meta['phase']}, {', '.join(meta['styles'])})", fill=(230, 230, 230))
        for j, img in enumerate(row):
            sheet.paste(Image.fromarray(img), (pad + j * (w + pad), y + 12))
    sheet.save(path)
    return dt, {p: float(np.mean(v)) for p, v in stats.items()}


def write_images(out_dir: Path, families, phases, styles, seeds, size):
    """One PNG per family x phase x seed, each from scene_rng(seed, family, phase); styles None
    draws them as training does. Returns the paths written."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fam in families:
        for ph in phases:
            for seed in seeds:
                rng = scene_rng(seed, fam, ph)
                meta = random_scene(rng, fam, ph, styles)
                name = "-".join([fam, ph] + (["+".join(meta["styles"])] if meta["styles"] else []) + [str(seed)])
                path = out_dir / f"{name}.png"
                Image.fromarray(render(rng, meta, size)).save(path)
                paths.append(path)
    return paths


def features(img):
    """Cheap stand-ins for what survives the model's 8x autoencoder, from a 128x320 image: colour
    layout, row profile and colour histogram of a 16x40 thumbnail, and gradient-orientation
    histograms (with their log energy) on a 4x10 grid."""
    x = img.astype(F32) / 255
    thumb = x.reshape(16, 8, 40, 8, 3).mean((1, 3))
    layout = thumb.reshape(4, 4, 10, 4, 3).mean((1, 3)).ravel()
    rows = thumb.mean(1).ravel()  # horizon, water and ground show up in the vertical profile
    q = np.minimum((thumb * 4).astype(int), 3)
    hist = np.bincount((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel(), minlength=64) / q[..., 0].size
    gy, gx = np.gradient(luminance(x))
    mag = np.hypot(gx, gy)
    orient = np.minimum((np.arctan2(gy, gx) % np.pi / np.pi * 8).astype(int), 7)
    cell = (np.arange(H)[:, None] // (H // 4)) * 10 + np.arange(W)[None, :] // (W // 10)
    hog = np.bincount((cell * 8 + orient).ravel(), mag.ravel(), 40 * 8).reshape(40, 8)
    energy = hog.sum(1, keepdims=True)
    return np.concatenate([layout, rows, hist, (hog / (energy + 1e-3)).ravel(), np.log(energy.ravel() + 1e-3)])


def ridge_classify(train_x, labels, test_x, k, lams=(1, 3, 10, 30, 100, 300, 1000)):
    """One-vs-rest ridge regression on standardised features, in dual form (fewer images than
    features), with the ridge picked by leave-one-out accuracy on the training set."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (np.hstack([(v - mu) / sd, np.ones((len(v), 1))]) for v in (train_x, test_x))
    y = -np.ones((len(a), k))
    y[np.arange(len(a)), labels] = 1
    s, u = np.linalg.eigh(a @ a.T)
    uy = u.T @ y

    def loo_accuracy(lam):
        shrink = s / (s + lam)
        fit = u @ (shrink[:, None] * uy)
        leverage = np.einsum("ij,j,ij->i", u, shrink, u)
        return np.mean(((fit - leverage[:, None] * y) / (1 - leverage[:, None])).argmax(1) == labels)

    lam = max(lams, key=loo_accuracy)
    return (b @ a.T @ (u @ (uy / (s + lam)[:, None]))).argmax(1)


def check_distinct(n):
    """Renders n scenes per family x phase at 128x320 (random styles, as in training), trains
    classifiers on the first half of the seeds and prints family / phase accuracy on the rest."""
    t0 = time.perf_counter()
    feats, fams, phs, seeds = [], [], [], []
    for fi, fam in enumerate(FAMILIES):
        for pi, ph in enumerate(PHASES):
            for seed in range(n):
                rng = scene_rng(seed, fam, ph)
                feats.append(features(render(rng, random_scene(rng, fam, ph))))
                fams.append(fi)
                phs.append(pi)
                seeds.append(seed)
    x, train = np.array(feats), np.array(seeds) < n // 2
    result = {}
    for task, labels, names in (("family", np.array(fams), FAMILIES), ("phase", np.array(phs), PHASES)):
        pred = ridge_classify(x[train], labels[train], x[~train], len(names))
        truth = labels[~train]
        result[task] = float(np.mean(pred == truth))
        print(f"{task} accuracy {result[task]:.3f} on {len(truth)} test images; "
              + ", ".join(f"{nm} {np.mean(pred[truth == k] == k):.2f}" for k, nm in enumerate(names)))
    print(f"{len(x)} renders and fits in {time.perf_counter() - t0:.1f} s")
    return result


def _names(arg, allowed, ap, what):
    if arg == "all":
        return list(allowed)
    names = [s.strip() for s in arg.split(",") if s.strip()]
    bad = [s for s in names if s not in allowed]
    if bad:
        ap.error(f"unknown {what} {', '.join(bad)}; choose from {', '.join(allowed)} or all")
    return names


def _seeds(arg):
    out = []
    for part in arg.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _size(arg):
    """WIDTHxHEIGHT -> (h, w)."""
    w, h = (int(v) for v in arg.lower().split("x"))
    return h, w


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=_size, default=(H, W), help="WIDTHxHEIGHT (default 320x128)")
    ap.add_argument("--seed", type=int, default=0, help="contact sheet seed")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "scene_samples.png",
                    help="contact sheet path (the default mode)")
    ap.add_argument("--out-dir", type=Path, help="write one PNG per family x phase x seed here")
    ap.add_argument("--family", default="all", help="name, comma list or all (with --out-dir)")
    ap.add_argument("--phase", default="all", help="name, comma list or all (with --out-dir)")
    ap.add_argument("--styles", default="none", help="comma list, none or random (with --out-dir)")
    ap.add_argument("--seeds", default="0-3", help="e.g. 0-7, 3 or 1,4,9 (with --out-dir)")
    ap.add_argument("--list", action="store_true", help="print families, phases and styles as JSON")
    ap.add_argument("--check-distinct", type=int, metavar="N",
                    help="render N per family x phase and print a simple classifier's accuracy")
    a = ap.parse_args()

    if a.list:
        print(json.dumps({"families": FAMILIES, "phases": PHASES, "styles": STYLES}))
    elif a.check_distinct:
        check_distinct(a.check_distinct)
    elif a.out_dir:
        styles = None if a.styles == "random" else [] if a.styles == "none" else _names(a.styles, STYLES, ap, "style")
        t0 = time.perf_counter()
        paths = write_images(a.out_dir, _names(a.family, FAMILIES, ap, "family"),
                             _names(a.phase, PHASES, ap, "phase"), styles, _seeds(a.seeds), a.size)
        print(f"wrote {len(paths)} images to {a.out_dir} "
              f"({(time.perf_counter() - t0) / max(len(paths), 1) * 1e3:.0f} ms per image incl. PNG)")
    else:
        dt, lum = contact_sheet(a.out, a.seed, a.size)
        print(f"wrote {a.out}; {dt * 1e3:.1f} ms per image; mean luminance by phase: "
              + ", ".join(f"{k} {v:.2f}" for k, v in lum.items()))
        rng = np.random.default_rng(a.seed + 1)
        t0 = time.perf_counter()
        for _ in range(20):
            render(rng, random_scene(rng), a.size)
        print(f"random scenes: {(time.perf_counter() - t0) * 50:.1f} ms per image")
        for _ in range(6):
            m = random_scene(rng)
            print(m, "|", caption(rng, m, "en"), "|", caption(rng, m, "zh"))


if __name__ == "__main__":
    main()
