#!/usr/bin/env python3
"""The reference runtimes for `services/lm/benches/generate.rs`, on the same work.

    ort_generate.py MODEL_DIR TRACT_JSON [--gguf FILE]

Reads the prompt ids and counts from the tract bench's JSON, then runs onnxruntime on the
same model.onnx (same threads, one prefill, the same number of greedy decode steps on the
growing KV cache) and, with --gguf, llama.cpp on the source GGUF (its own quantised
weights: a different file, shown for orientation). Prints JSON, one object per runtime.
"""

import argparse
import json
import os
import resource
import time

import numpy as np


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def bench_ort(model_dir, ids, new, threads, runs):
    import onnxruntime as ort

    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    t0 = time.perf_counter()
    sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), opts, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1e3
    names = [o.name for o in sess.get_outputs()]
    KV, D, L = cfg["kv_heads"], cfg["head_dim"], cfg["layers"]

    def run(tokens, start, past):
        s, t = len(tokens), start + len(tokens)
        bias = np.zeros((1, 1, s, t), np.float32)
        for r in range(s):
            bias[0, 0, r, start + r + 1 :] = -np.inf
        outs = sess.run(None, {"input_ids": np.array([tokens], np.int64), "position_ids": np.arange(start, t, dtype=np.int64)[None], "attention_bias": bias, **past})
        past = {n.replace("present", "past_key_values"): v for n, v in zip(names[1:], outs[1:])}
        return outs[0][0], past

    ttft, decode, first_run = [], [], 0.0
    for r in range(runs + 1):
        past = {f"past_key_values.{i}.{k}": np.zeros((1, KV, 0, D), np.float32) for i in range(L) for k in ("key", "value")}
        t0 = time.perf_counter()
        logits, past = run(ids, 0, past)
        t1 = time.perf_counter()
        nxt = int(np.argmax(logits))
        greedy = [nxt]
        for i in range(new):
            logits, past = run([nxt], len(ids) + i, past)
            nxt = int(np.argmax(logits))
            greedy.append(nxt)
        t2 = time.perf_counter()
        if r == 0:
            first_run = (t2 - t0) * 1e3
            greedy_ids = greedy
            continue
        ttft.append((t1 - t0) * 1e3)
        decode.append((t2 - t1) / new * 1e3)
    d = median(decode)
    return {"runtime": "onnxruntime " + ort.__version__, "load_ms": load_ms, "first_run_ms": first_run, "ttft_ms": median(ttft), "decode_ms_per_token": d, "decode_tokens_per_s": 1e3 / d, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "greedy_ids": greedy_ids}


def bench_llamacpp(gguf, ids, new, threads, runs):
    import llama_cpp
    from llama_cpp import Llama

    t0 = time.perf_counter()
    llm = Llama(model_path=gguf, n_ctx=1024, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
    load_ms = (time.perf_counter() - t0) * 1e3

    def last_logits():
        # without logits_all (which would slow its prefill) Llama.scores is not kept
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(llm.n_vocab(),))

    ttft, decode = [], []
    for r in range(runs + 1):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        greedy = []
        for _ in range(new):
            nxt = int(np.argmax(last_logits()))
            greedy.append(nxt)
            llm.eval([nxt])
        greedy.append(int(np.argmax(last_logits())))
        t2 = time.perf_counter()
        if r == 0:
            greedy_ids = greedy
            continue
        ttft.append((t1 - t0) * 1e3)
        decode.append((t2 - t1) / new * 1e3)
    d = median(decode)
    return {"runtime": "llama.cpp " + llama_cpp.__version__ + " (Q4_1 GGUF)", "load_ms": load_ms, "ttft_ms": median(ttft), "decode_ms_per_token": d, "decode_tokens_per_s": 1e3 / d, "greedy_ids": greedy_ids}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("tract_json")
    ap.add_argument("--gguf")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    t = json.load(open(a.tract_json))
    ids, new, threads = t["prompt_ids"], t["new_tokens"], t["threads"]
    print(json.dumps(bench_ort(a.model_dir, ids, new, threads, a.runs)))
    if a.gguf:
        print(json.dumps(bench_llamacpp(a.gguf, ids, new, threads, a.runs)))


if __name__ == "__main__":
    main()
