"""Drops training statements that are near copies of an evaluation statement.

Statements written by different helpers for different purposes still come out alike at
times ("Phone-as-key works maybe 70% of the time" / "... 60% ..."); a training corpus that
holds near copies of the evaluation sets would make their scores say nothing. A statement
goes when the Jaccard similarity of its character 4-grams (lower-cased) with any statement
under ../../eval/ is 0.3 or more.

    python3 services/feedback/data/problems/decontaminate.py   # rewrites problems-*.jsonl
"""
import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
LIMIT = 0.3


def grams(text):
    t = text.lower()
    return {t[i:i + 4] for i in range(len(t) - 3)} or {t}


evaluation = [grams(json.loads(line)["text"])
              for f in sorted(glob.glob(os.path.join(HERE, "../../eval/*.jsonl")))
              for line in open(f, encoding="utf-8") if line.strip()]
for path in sorted(glob.glob(os.path.join(HERE, "problems-*.jsonl"))):
    lines = [line for line in open(path, encoding="utf-8") if line.strip()]
    kept = []
    for line in lines:
        g = grams(json.loads(line)["text"])
        if max(len(g & e) / len(g | e) for e in evaluation) < LIMIT:
            kept.append(line)
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(kept)
    print(f"{os.path.basename(path)}: kept {len(kept)} of {len(lines)}")
