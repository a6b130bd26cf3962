#!/usr/bin/env python3
"""Writes services/text/data/scene-words.json: the words for each scene family, light phase and
style, in English and Chinese, taken from the caption lexicon the wallpaper model is trained on
(scenes.py), so the voice and chat slot tagger knows exactly the words the model knows.

    onnx/.venv/bin/python onnx/train/export_scene_words.py   # numpy + pillow, as scenes.py
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import scenes  # noqa: E402

OUT = HERE.parent.parent / "services" / "text" / "data" / "scene-words.json"

# Bare core words people say that the captions only use inside longer phrases; the longest match
# still wins, so "雨林" (forest) beats "雨" (rain) and "rainy city" beats "city".
CORE = {
    "sea": (["sea", "ocean", "beach", "seaside", "coast"], ["海", "大海", "海边", "海滩", "沙滩", "海景"]),
    "mountains": (["mountain", "mountains", "snowy mountain", "peak"], ["山", "雪山", "高山", "山峰", "山脉"]),
    "stars": (["stars", "starry", "star"], ["星星", "星空", "银河", "繁星"]),
    "city": (["city", "skyline", "urban"], ["城市", "都市", "夜景", "高楼"]),
    "forest": (["forest", "woods", "trees"], ["森林", "树林", "林间", "丛林"]),
    "desert": (["desert", "dunes"], ["沙漠", "沙丘", "戈壁"]),
    "aurora": (["aurora", "northern lights"], ["极光", "北极光"]),
    "lake": (["lake"], ["湖", "湖泊", "湖面", "湖边"]),
    "rain": (["rain", "rainy", "raining"], ["雨", "下雨", "雨天", "雨夜", "雨中"]),
    "blossom": (["blossom", "blossoms", "sakura", "flowers"], ["樱花", "桃花", "花开", "开花"]),
}


def clean(words):
    out = []
    for w in words:
        w = w.strip().lower()
        for article in ("a ", "an ", "the "):
            if w.startswith(article):
                w = w[len(article):]
        if w and w not in out:
            out.append(w)
    return sorted(out, key=lambda w: (-len(w), w))


def main():
    family = {}
    for f in scenes.FAMILIES:
        en = scenes.NAMES_EN[f] + scenes.RELATED_EN[f]
        zh = scenes.NAMES_ZH[f] + scenes.RELATED_ZH[f]
        for (ff, _), words in scenes.SPECIAL_EN.items():
            if ff == f:
                en += words
        for (ff, _), words in scenes.SPECIAL_ZH.items():
            if ff == f:
                zh += words
        family[f] = {"en": clean(en + CORE[f][0]), "zh": clean(zh + CORE[f][1])}
    phase = {}
    for p in scenes.PHASES:
        en = [w for ws in scenes.PHASE_EN[p] for w in ws]
        zh = [w for ws in scenes.PHASE_ZH[p] for w in ws]
        phase[p] = {"en": clean(en), "zh": clean(zh)}
    style = {}
    for s in scenes.STYLES:
        en = [w for ws in scenes.STYLE_EN[s] for w in ws]
        zh = [w for ws in scenes.STYLE_ZH[s] for w in ws]
        style[s] = {"en": clean(en), "zh": clean(zh)}
    data = {
        "made_by": "onnx/train/export_scene_words.py from onnx/train/scenes.py (the captions the wallpaper model learns)",
        "family": family,
        "phase": phase,
        "style": style,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    n = sum(len(v["en"]) + len(v["zh"]) for k in ("family", "phase", "style") for v in data[k].values())
    print(f"wrote {OUT} ({n} words)")


if __name__ == "__main__":
    main()
