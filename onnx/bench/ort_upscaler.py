#!/usr/bin/env python3
"""The reference side of the display-stage benchmark: an `upscaler/` folder's model.onnx on
onnxruntime, same input size and thread count as cabin's `examples/display_stage.rs`. Prints
one JSON object with the same keys.

Build tooling only (run by onnx/bench/upscaler.sh); needs numpy and onnxruntime.
"""

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="an upscaler/ folder or a model folder holding one")
    ap.add_argument("--size", default="320x128", help="input WxH")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    root = Path(args.model)
    if (root / "upscaler").is_dir():
        root = root / "upscaler"
    cfg = json.loads((root / "config.json").read_text())
    w, h = (int(v) for v in args.size.split("x"))

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(root / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    x = np.clip(np.random.default_rng(1).standard_normal((1, 3, h, w)) * 0.5, -1, 1).astype(np.float32)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    t = time.perf_counter()
    y = sess.run([cfg["output"]], {cfg["input"]: x})[0]
    first = (time.perf_counter() - t) * 1000
    times, cpu = [], []
    for _ in range(args.runs):
        t, c = time.perf_counter(), time.process_time()
        sess.run([cfg["output"]], {cfg["input"]: x})
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    print(json.dumps({
        "engine": "onnxruntime " + ort.__version__,
        "threads": args.threads,
        "scale": cfg["scale"],
        "input": f"{w}x{h}",
        "output": f"{y.shape[3]}x{y.shape[2]}",
        "first_run_ms": first,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "cpu_ms": statistics.median(cpu),
        "runs": args.runs,
        "rss_before_run_mib": rss_before,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
