#!/usr/bin/env python3
"""Checks a folder made by `build_lm.py gguf|smollm2` against llama.cpp on the source GGUF.

    check_against_llamacpp.py MODEL_DIR GGUF_FILE

1. the rebuilt tokenizer.json (Hugging Face `tokenizers`) gives llama.cpp's token ids;
2. onnxruntime on model.onnx and llama.cpp agree on the next-token distribution along a
   greedy continuation of four chat prompts (top-1 agreement and the largest probability gap);
3. the perplexity of a short English text under each (the last line is all of it as JSON).

Works for every `build_lm.py --quant` variant: onnxruntime runs MatMulNBits natively.

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
    past = {}

    def reset_past():
        past.clear()
        past.update({f"past_key_values.{i}.{k}": np.zeros((1, KV, 0, D), np.float32) for i in range(L) for k in ("key", "value")})

    def ort_all_logits(ids):
        # the graph gives the last position's logits only: run token by token on the cache
        reset_past()
        return np.array([run([t], i) for i, t in enumerate(ids)], dtype=np.float64)

    def run(ids, start):
        s, t = len(ids), start + len(ids)
        bias = np.zeros((1, 1, s, t), np.float32)
        for r in range(s):
            bias[0, 0, r, start + r + 1 :] = -np.inf
        outs = sess.run(None, {"input_ids": np.array([ids], np.int64), "position_ids": np.arange(start, t, dtype=np.int64)[None], "attention_bias": bias, **past})
        for name, value in zip(names[1:], outs[1:]):
            past[name.replace("present", "past_key_values")] = value
        return outs[0][0]

    prompts = [
        ("You are a helpful assistant.", "What is the capital of France?"),
        ("You are Nuan, a warm companion riding along with the driver. Keep answers short.", "I've been driving for three hours and I'm getting tired."),
        ("You are a helpful assistant.", "Give me two tips for driving in heavy rain."),
        ("You are Nuan, a warm companion riding along with the driver.", "My daughter passed her exam today!"),
    ]
    agree, n, gaps = 0, 0, []
    for system, user in prompts:
        prompt = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        ids = tok.encode(prompt, add_special_tokens=False).ids
        reset_past()
        llm.reset()
        llm.eval(ids)
        logits = run(ids, 0)
        ours_text = []
        for step in range(24):
            theirs = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            gaps.append(float(np.abs(softmax(logits.astype(np.float64)) - softmax(theirs)).max()))
            nxt = int(np.argmax(logits))
            agree += nxt == int(np.argmax(theirs))
            n += 1
            ours_text.append(nxt)
            if nxt in cfg["stop_token_ids"]:
                break
            llm.eval([nxt])
            logits = run([nxt], len(ids) + step)
        print(f"greedy reply (onnxruntime on model.onnx) to {user!r}: {tok.decode(ours_text)!r}")
    print(f"next-token top-1 agreement with llama.cpp: {agree}/{n} ({agree / n:.3f}); largest probability gap {max(gaps):.4f}")

    # perplexity of a short text, each runtime on its own weights
    ids = tok.encode(PERPLEXITY_TEXT, add_special_tokens=False).ids
    reset_past()
    llm.reset()
    llm.eval(ids)
    ours = ort_all_logits(ids)
    theirs = np.array([llm.scores[i] for i in range(len(ids))], dtype=np.float64)
    ppl_ours, ppl_theirs = perplexity(ours, ids), perplexity(theirs, ids)
    print(f"perplexity on a {len(ids)}-token text: model.onnx {ppl_ours:.2f}, llama.cpp {ppl_theirs:.2f} (ratio {ppl_ours / ppl_theirs:.3f})")
    print(json.dumps({"model": cfg.get("quantisation", "f32"), "tokenizer_identical": f"{tok_ok}/{len(texts)}", "top1_agreement": agree / n,
                      "steps": n, "largest_probability_gap": max(gaps), "perplexity": ppl_ours, "perplexity_llamacpp": ppl_theirs}))
    if tok_ok != len(texts) or agree < 0.8 * n:
        sys.exit(1)


PERPLEXITY_TEXT = (
    "The car's navigation system suggested a detour because of heavy traffic on the ring road. "
    "The driver turned on the heated seats, lowered the music and asked the assistant how long "
    "the battery would last at this speed. It answered that the range was still about two hundred "
    "kilometres, enough to reach the charging station near the airport before dinner."
)


def perplexity(logits, ids):
    """exp of the mean negative log-likelihood of ids[1:] given the logits at the positions before."""
    lp = logits[:-1] - logits[:-1].max(axis=1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(axis=1, keepdims=True))
    return float(np.exp(-lp[np.arange(len(ids) - 1), ids[1:]].mean()))


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


if __name__ == "__main__":
    main()
