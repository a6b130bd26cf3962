#!/usr/bin/env python3
"""How well a wallpaper model's text encoder tells families and times of day apart, in seconds.

    onnx/.venv/bin/python onnx/train/probe_text.py [--model onnx/wallpaper-tiny]
                                                    [--prompts onnx/train/dev_prompts.json]

A ridge probe is fitted on the text encoder's features (mean over tokens and the first token) of
random training captions (scenes.caption), then read on every composed prompt of a prompt set
(eval_prompts.json's shape). It runs no diffusion, so it is a guide between full evaluations
(evaluate.py), not a replacement: a prompt the probe reads right can still draw the wrong scene,
but one that the text encoder does not separate seldom draws the right one. Prints accuracy per
language, family and phase, and the subjects and time phrases read worst.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import scenes  # noqa: E402
import train  # noqa: E402
from evaluate import LANGS, heldout_prompts  # noqa: E402


def features(session, tok, texts, batch=64):
    out = []
    for i in range(0, len(texts), batch):
        ids = tok(texts[i:i + batch])
        hidden = session.run(None, {"input_ids": ids.astype(np.int32)})[0]
        mask = (ids != tok.pad)[..., None]
        out.append(np.concatenate([(hidden * mask).sum(1) / mask.sum(1), hidden[:, 0]], 1))
    return np.concatenate(out)


def fit_ridge(x, y, classes, alpha=10.0):
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ np.eye(classes)[y])
    return lambda f: (((f - mu) / sd) @ w).argmax(1)


def weak_phrases(texts, want, got, phrases, names, what, of, below):
    """The phrases of a prompt set (subjects or times, by class) read right less often than `below`."""
    out = []
    for name, words in phrases.items():
        k = names.index(name)
        for w in words:
            idx = np.array([i for i, t in enumerate(texts) if w in t and want[i] == k])
            right = float((got[idx] == k).mean())
            if right < below:
                out.append({what: w, of: name, "right": round(right, 3),
                            "read_as": names[np.bincount(got[idx], minlength=len(names)).argmax()]})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=HERE.parent / "wallpaper-tiny")
    ap.add_argument("--prompts", type=Path, default=HERE / "dev_prompts.json")
    ap.add_argument("--captions", type=int, default=6000, help="training captions the probe is fitted on")
    ap.add_argument("--weak", type=float, default=0.8, help="list subjects and times read right less often")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    a = ap.parse_args()

    import onnxruntime as ort

    tok = train.load_tokenizer(a.model / "tokenizer")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(a.model / "text_encoder" / "model.onnx"), opts)

    rng = np.random.default_rng(1)
    texts, fam_y, ph_y = [], [], []
    for _ in range(a.captions):
        meta = scenes.random_scene(rng)
        texts.append(scenes.caption(rng, meta, phase_p=1.0))
        fam_y.append(scenes.FAMILIES.index(meta["family"]))
        ph_y.append(scenes.PHASES.index(meta["phase"]))
    x = features(session, tok, texts)
    read_family = fit_ridge(x, np.array(fam_y), len(scenes.FAMILIES))
    read_phase = fit_ridge(x, np.array(ph_y), len(scenes.PHASES))

    spec = json.loads(a.prompts.read_text())
    prompts = heldout_prompts(a.prompts)
    report = {"model": str(a.model), "prompts": str(a.prompts), "by_lang": {}}
    for lang in LANGS:
        keys = [k for k in prompts if k[0] == lang]
        texts = [p for k in keys for p in prompts[k]]
        fam = np.array([scenes.FAMILIES.index(k[1]) for k in keys for _ in prompts[k]])
        ph = np.array([scenes.PHASES.index(k[2]) for k in keys for _ in prompts[k]])
        f = features(session, tok, texts)
        got_f, got_p = read_family(f), read_phase(f)
        weak = weak_phrases(texts, fam, got_f, spec[lang]["subjects"], scenes.FAMILIES, "subject", "family", a.weak)
        weak += weak_phrases(texts, ph, got_p, spec[lang]["times"], scenes.PHASES, "time", "phase", a.weak)
        report["by_lang"][lang] = {
            "prompts": len(texts),
            "family": round(float((got_f == fam).mean()), 3),
            "phase": round(float((got_p == ph).mean()), 3),
            "by_family": {n: round(float((got_f[fam == i] == i).mean()), 3) for i, n in enumerate(scenes.FAMILIES)},
            "by_phase": {n: round(float((got_p[ph == i] == i).mean()), 3) for i, n in enumerate(scenes.PHASES)},
            "weak": weak,
        }
    if a.json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
        return
    print(f"text probe of {a.model} on {a.prompts.name} (fitted on {a.captions} training captions)")
    for lang, r in report["by_lang"].items():
        print(f"  {lang}: family {r['family']:.3f}, phase {r['phase']:.3f} over {r['prompts']} prompts")
        print("     " + "  ".join(f"{k} {v:.2f}" for k, v in r["by_family"].items()))
        print("     " + "  ".join(f"{k} {v:.2f}" for k, v in r["by_phase"].items()))
        for w in r["weak"]:
            what = w.get("subject") or w.get("time")
            print(f"     weak: {what!r} ({w.get('family') or w.get('phase')}) right {w['right']:.2f}, "
                  f"read as {w['read_as']}")


if __name__ == "__main__":
    main()
