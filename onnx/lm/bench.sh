#!/usr/bin/env bash
# On-device LM benchmark: tract (cabin-lm) against onnxruntime on the same model.onnx, same
# prompt ids, threads and number of greedy decode steps, in one run; llama.cpp on the source
# GGUF is printed beside them when the GGUF is given. Prints both and the ratios.
#
#   onnx/lm/bench.sh MODEL_DIR [THREADS] [NEW_TOKENS] [GGUF]
#
# Needs a venv with onnx/lm/requirements.txt at onnx/lm/.venv (or PY=...). Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:?MODEL_DIR}
threads=${2:-1}
new=${3:-64}
gguf=${4:-}
py=${PY:-onnx/lm/.venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cargo bench -q -p cabin-lm --bench generate -- --model "$model" --threads "$threads" \
    --new "$new" > "$out/tract.json"
"$py" onnx/lm/ort_generate.py "$model" "$out/tract.json" ${gguf:+--gguf "$gguf"} > "$out/ref.jsonl"

"$py" - "$out" <<'PY'
import json, sys
d = sys.argv[1]
t = json.load(open(f"{d}/tract.json"))
refs = [json.loads(l) for l in open(f"{d}/ref.jsonl")]
o = refs[0]
print(f"model {t['model']}: prompt {t['prompt_tokens']} tokens, {t['new_tokens']} greedy decode steps, {t['threads']} thread(s)")
print(f"{'':24}{'tract':>10}{o['runtime']:>22}{'ratio':>8}")
for key, label in [("ttft_ms", "time to first token ms"), ("decode_ms_per_token", "decode ms/token"),
                   ("decode_tokens_per_s", "decode tokens/s"), ("load_ms", "load ms"),
                   ("first_run_ms", "first run ms"), ("peak_rss_mib", "peak RSS MiB")]:
    a, b = t.get(key), o.get(key)
    if a is None or b is None:
        continue
    print(f"{label:24}{a:10.1f}{b:22.1f}{a / b:8.2f}")
for r in refs[1:]:
    print(f"{r['runtime']}: time to first token {r['ttft_ms']:.1f} ms, decode {r['decode_ms_per_token']:.1f} ms/token "
          f"({r['decode_tokens_per_s']:.1f} tokens/s); tract/llama.cpp decode ratio {t['decode_ms_per_token'] / r['decode_ms_per_token']:.2f}")
def same_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n
for r in refs:
    if "greedy_ids" in r and "greedy_ids" in t:
        n = same_prefix(t["greedy_ids"], r["greedy_ids"])
        print(f"greedy tokens: tract's first {n} of {len(t['greedy_ids'])} equal {r['runtime']}'s")
if "decode_step_nodes" in t:
    ops = ", ".join(f"{o['op']} {o['ms']:.2f} ({o['nodes']})" for o in t["decode_step_ops"])
    print(f"tract's decode step: {t['decode_step_nodes']} nodes, {t['decode_step_between_nodes_ms']:.2f} ms "
          f"between them; ms (nodes) by op: {ops}")
print(f"tract resident after the run: {t['rss_mib']:.0f} MiB")
print(f"tract's greedy reply: {t['greedy_reply']!r}")
PY
