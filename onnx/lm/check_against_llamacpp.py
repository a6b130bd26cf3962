#!/usr/bin/env python3
"""Checks a folder made by `build_lm.py gguf|smollm2` against llama.cpp on the source GGUF.

    check_against_llamacpp.py MODEL_DIR GGUF_FILE

1. the rebuilt tokenizer.json (Hugging Face `tokenizers`) gives llama.cpp's token ids;
2. onnxruntime on model.onnx and llama.cpp agree on the next-token distribution along a
   greedy continuation (top-1 agreement and the largest probability gap).

llama.cpp multiplies Q4_1 weights with 8-bit-quantised activations, so small logit gaps are
expected; a wrong rope permutation or a transposed weight shows up as top-1 agreement near 0.
"""

import json
import os
import sys

import numpy as np


def main():
    model_dir, gguf_path = sys.argv[1], sys.argv[2]
    from llama_cpp import Llama
    from tokenizers import Tokenizer
    import onnxruntime as ort

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    llm = Llama(model_path=gguf_path, n_ctx=512, logits_all=True, verbose=False, n_threads=2)
    texts = [
        "Hello, how are you today?",
        "  leading spaces and 12345 digits, tabs\tand\nnewlines",
        "I've been driving for 3 hours; it's 23:40 now.",
        "<|im_start|>user\nI'm tired.<|im_end|>\n<|im_start|>assistant\n",
        "你好，今天天气怎么样？ émoji 🚗",
    ]
    tok_ok = 0
    for t in texts:
        ours = tok.encode(t, add_special_tokens=False).ids
        theirs = llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)
        same = ours == list(theirs)
        tok_ok += same
        if not same:
            print(f"tokenizer differs on {t!r}:\n  ours   {ours}\n  llama  {list(theirs)}")
    print(f"tokenizer: {tok_ok}/{len(texts)} texts identical to llama.cpp")

    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    KV, D, L = cfg["kv_heads"], cfg["head_dim"], cfg["layers"]
    past = {f"past_key_values.{i}.{k}": np.zeros((1, KV, 0, D), np.float32) for i in range(L) for k in ("key", "value")}

    def run(ids, start):
        s, t = len(ids), start + len(ids)
        bias = np.zeros((1, 1, s, t), np.float32)
        for r in range(s):
            bias[0, 0, r, start + r + 1 :] = -np.inf
        outs = sess.run(None, {"input_ids": np.array([ids], np.int64), "position_ids": np.arange(start, t, dtype=np.int64)[None], "attention_bias": bias, **past})
        for name, value in zip(names[1:], outs[1:]):
            past[name.replace("present", "past_key_values")] = value
        return outs[0][0]

    prompt = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(prompt, add_special_tokens=False).ids
    llm.reset()
    llm.eval(ids)
    logits = run(ids, 0)
    agree, gaps, ours_text = 0, [], []
    steps = 24
    for step in range(steps):
        theirs = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        p_ours = softmax(logits.astype(np.float64))
        p_theirs = softmax(theirs)
        gaps.append(float(np.abs(p_ours - p_theirs).max()))
        nxt = int(np.argmax(logits))
        agree += nxt == int(np.argmax(theirs))
        ours_text.append(nxt)
        if nxt in cfg["stop_token_ids"]:
            break
        llm.eval([nxt])
        logits = run([nxt], len(ids) + step)
    n = len(ours_text)
    print(f"greedy reply (onnxruntime on model.onnx): {tok.decode(ours_text)!r}")
    print(f"next-token top-1 agreement with llama.cpp: {agree}/{n}; largest probability gap {max(gaps):.4f}")
    if tok_ok != len(texts) or agree < 0.8 * n:
        sys.exit(1)


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


if __name__ == "__main__":
    main()
