#!/usr/bin/env python3
"""The reference side of the wallpaper benchmark: the same prompt → PNG pipeline as
cabin's tract engine, on onnxruntime, on the same ONNX files, with the same thread count,
steps, scheduler (DDIM) and guidance. Prints one JSON object with the same keys as the Rust
bench (`cargo bench -p cabin-wallpaper --bench pipeline`), plus the UNet's FLOPs per call.

Build tooling only (run by onnx/bench/run.sh); needs numpy, onnxruntime, tokenizers, pillow.
"""

import argparse
import io
import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import shape_inference
from PIL import Image
from tokenizers import Tokenizer


def ddim(config, steps):
    n = config.get("num_train_timesteps", 1000)
    b0, b1 = config.get("beta_start", 0.0001), config.get("beta_end", 0.02)
    schedule = config.get("beta_schedule", "linear")
    if schedule == "scaled_linear":
        betas = np.linspace(b0**0.5, b1**0.5, n, dtype=np.float64) ** 2
    elif schedule == "linear":
        betas = np.linspace(b0, b1, n, dtype=np.float64)
    elif schedule == "squaredcos_cap_v2":
        def bar(t):
            return np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
        i = np.arange(n, dtype=np.float64)
        betas = np.minimum(1 - bar((i + 1) / n) / bar(i / n), 0.999)
    else:
        raise SystemExit(f"bench: beta_schedule {schedule} not handled here")
    ac = np.cumprod(1.0 - betas)
    ratio = n // steps
    offset = config.get("steps_offset", 0)
    if config.get("timestep_spacing", "leading") == "trailing":
        timesteps = np.round(np.arange(n, 0, -n / steps)).astype(np.int64) - 1
    else:
        timesteps = (np.arange(0, steps) * ratio)[::-1] + offset
    final = 1.0 if config.get("set_alpha_to_one", True) else ac[0]
    return ac, timesteps, ratio, final


def session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def unet_flops(path, batch, c, h, w, seq, dim):
    """Multiply-adds ×2 of Conv, MatMul and Gemm at concrete shapes."""
    model = onnx.load(str(path))
    shapes = {"sample": [batch, c, h, w], "timestep": [batch], "encoder_hidden_states": [batch, seq, dim]}
    for inp in model.graph.input:
        if inp.name in shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, shapes[inp.name]):
                d.Clear()
                d.dim_value = v
    model = shape_inference.infer_shapes(model, data_prop=True)
    known = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        known[vi.name] = dims
    for init in model.graph.initializer:
        known[init.name] = list(init.dims)
    flops = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            out = known.get(node.output[0])
            wt = known.get(node.input[1])
            if out and wt and None not in out:
                flops += 2 * int(np.prod(out)) * int(np.prod(wt[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            a, b = known.get(node.input[0]), known.get(node.input[1])
            out = known.get(node.output[0])
            if a and b and out and None not in out and a[-1] is not None:
                k = a[-1] if node.op_type == "MatMul" else (a[-1] if not any(
                    at.name == "transA" and at.i for at in node.attribute) else a[0])
                flops += 2 * int(np.prod(out)) * int(k)
    return flops


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", default="snowy mountains at dusk")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="1920x720")
    args = ap.parse_args()
    root = Path(args.model)
    dw, dh = (int(v) for v in args.size.split("x"))

    t0 = time.perf_counter()
    text = session(root / "text_encoder/model.onnx", args.threads)
    unet = session(root / "unet/model.onnx", args.threads)
    vae = session(root / "vae_decoder/model.onnx", args.threads)
    # The display stage, when the folder carries one (as the engine runs it after the decoder).
    up = session(root / "upscaler/model.onnx", args.threads) if (root / "upscaler").is_dir() else None
    up_cfg = json.loads((root / "upscaler/config.json").read_text()) if up else None
    load_ms = (time.perf_counter() - t0) * 1000

    tok = Tokenizer.from_file(str(root / "tokenizer/tokenizer.json"))
    tcfg = json.loads((root / "tokenizer/tokenizer_config.json").read_text())
    max_len = int(min(tcfg.get("model_max_length", 77), 77))
    pad = tok.token_to_id(tcfg["pad_token"] if isinstance(tcfg.get("pad_token"), str) else "<|endoftext|>")

    def ids(text_):
        out = tok.encode(text_).ids[:max_len]
        return out + [pad] * (max_len - len(out))

    ucfg = json.loads((root / "unet/config.json").read_text())
    vcfg = json.loads((root / "vae_decoder/config.json").read_text())
    size = ucfg["sample_size"]
    lh, lw = (size, size) if isinstance(size, int) else size
    c = ucfg["in_channels"]
    scaling = vcfg.get("scaling_factor", 0.18215)
    sched = json.loads((root / "scheduler/scheduler_config.json").read_text())
    ac, timesteps, ratio, final = ddim(sched, args.steps)
    cfg = args.guidance > 1.0
    v_pred = sched.get("prediction_type", "epsilon") == "v_prediction"
    id_type = np.int32 if "int32" in text.get_inputs()[0].type else np.int64

    def run_once(seed):
        timings = {}
        t = time.perf_counter()
        prompts = [""] + [args.prompt] if cfg else [args.prompt]
        hidden = text.run(None, {"input_ids": np.array([ids(p) for p in prompts], dtype=id_type)})[0]
        timings["text"] = time.perf_counter() - t
        rng = np.random.default_rng(seed)
        lat = rng.standard_normal((1, c, lh, lw)).astype(np.float32)
        steps = []
        for tstep in timesteps:
            s = time.perf_counter()
            batch = np.concatenate([lat, lat]) if cfg else lat
            tt = np.full((batch.shape[0],), tstep, dtype=np.float32)
            out = unet.run(None, {"sample": batch, "timestep": tt, "encoder_hidden_states": hidden})[0]
            pred = out[0:1] + args.guidance * (out[1:2] - out[0:1]) if cfg else out
            a = ac[tstep]
            prev = tstep - ratio
            ap_ = ac[prev] if prev >= 0 else final
            if v_pred:
                x0 = np.sqrt(a) * lat - np.sqrt(1 - a) * pred
                eps = np.sqrt(a) * pred + np.sqrt(1 - a) * lat
            else:
                eps = pred
                x0 = (lat - np.sqrt(1 - a) * eps) / np.sqrt(a)
            lat = (np.sqrt(ap_) * x0 + np.sqrt(1 - ap_) * eps).astype(np.float32)
            steps.append(time.perf_counter() - s)
        timings["steps"] = steps
        t = time.perf_counter()
        img = vae.run(None, {"latent_sample": lat / scaling})[0]
        timings["decoder"] = time.perf_counter() - t
        t = time.perf_counter()
        if up:
            img = up.run([up_cfg["output"]], {up_cfg["input"]: img})[0]
        timings["display_stage"] = time.perf_counter() - t
        t = time.perf_counter()
        rgb = (np.clip(img[0].transpose(1, 2, 0) / 2 + 0.5, 0, 1) * 255).round().astype(np.uint8)
        pic = Image.fromarray(rgb)
        scale = max(dw / pic.width, dh / pic.height)
        sw, sh = max(dw, round(pic.width * scale)), max(dh, round(pic.height * scale))
        pic = pic.resize((sw, sh), Image.LANCZOS)
        left, top = (sw - dw) // 2, (sh - dh) // 2
        pic = pic.crop((left, top, left + dw, top + dh))
        buf = io.BytesIO()
        pic.save(buf, format="PNG")
        timings["finish"] = time.perf_counter() - t
        return timings

    t = time.perf_counter()
    run_once(0)
    first_ms = (time.perf_counter() - t) * 1000
    e2e, texts, steps, decs, ups, fins = [], [], [], [], [], []
    for r in range(args.runs):
        t = time.perf_counter()
        tm = run_once(r + 1)
        e2e.append((time.perf_counter() - t) * 1000)
        texts.append(tm["text"] * 1000)
        steps.extend(s * 1000 for s in tm["steps"])
        decs.append(tm["decoder"] * 1000)
        ups.append(tm["display_stage"] * 1000)
        fins.append(tm["finish"] * 1000)
    batch = 2 if cfg else 1
    seq, dim = hidden_shape = (max_len, text.get_outputs()[0].shape[-1])
    flops = unet_flops(root / "unet/model.onnx", batch, c, lh, lw, seq, dim if isinstance(dim, int) else 768)
    print(json.dumps({
        "engine": "onnxruntime " + ort.__version__,
        "threads": args.threads,
        "steps": len(timesteps),
        "guidance": args.guidance,
        "load_ms": load_ms,
        "first_run_ms": first_ms,
        "end_to_end_ms": statistics.median(e2e),
        "text_encoder_ms": statistics.median(texts),
        "unet_step_ms": statistics.median(steps),
        "decoder_ms": statistics.median(decs),
        "display_stage_ms": statistics.median(ups),
        "resize_encode_ms": statistics.median(fins),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "unet_gflop_per_step": flops / 1e9,
    }))


if __name__ == "__main__":
    main()
