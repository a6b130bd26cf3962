#!/usr/bin/env python3
"""This machine's single-precision matrix-multiply peak through numpy's BLAS, in GFLOP/s.
Run with OPENBLAS_NUM_THREADS set to the thread count under test (run.sh does)."""

import json
import time

import numpy as np

best = 0.0
for n in (512, 1024, 2048):
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    reps = max(2, int(2e9 / (2 * n**3)))
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
print(json.dumps({"sgemm_gflops": best}))
