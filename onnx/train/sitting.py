"""What every resumable training script here shares: a run split into sittings of a few hours.

A run is a fixed number of optimiser steps. Each sitting resumes from the last checkpoint, trains
until its time is up (or Ctrl-C / SIGTERM), and saves. Two checkpoints:
  - the full state (weights, optimisers, step) under --state-dir, for a resume on the same machine;
  - the weights alone in fp16 at --checkpoint, small enough for the repository, so a new machine
    resumes from there with fresh optimisers (the warm-up re-estimates their moments).
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import torch

from train import load_checkpoint, log, save_checkpoint

STATE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cabin-train"


def add_sitting_args(ap, checkpoint: Path, sitting_minutes=120.0):
    ap.add_argument("--checkpoint", type=Path, default=checkpoint, help="fp16 weights (in the repository)")
    ap.add_argument("--state-dir", type=Path, default=STATE_DIR, help="full training state (this machine)")
    ap.add_argument("--sitting-minutes", type=float, default=sitting_minutes, help="stop (and save) after this")
    ap.add_argument("--save-minutes", type=float, default=5.0)
    ap.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and start from step 0")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (ignored on CUDA)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--bf16", default="auto", choices=("auto", "on", "off"),
                    help="bfloat16 autocast; auto: on CUDA and on CPUs with AMX or AVX512-BF16 (2.2x on one here)")


def device_and_autocast(a):
    cuda = torch.cuda.is_available() and a.device in ("auto", "cuda")
    dev = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(a.threads)
    use_bf16 = a.bf16 == "on" or (a.bf16 == "auto" and (cuda or _cpu_has_fast_bf16()))
    return dev, torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16), use_bf16


def _cpu_has_fast_bf16():
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def machine_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    return "cpu"


def cosine_lr(step, total, base, warm_from, warmup):
    """Linear warm-up from `warm_from` (0, or the step of a resume without optimiser state), then cosine to 5%."""
    w = min(1.0, (step - warm_from + 1) / warmup)
    return base * w * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0))))


class Sitting:
    """Resume, periodic save, clean stop on a signal or when the sitting's time is up."""

    def __init__(self, name, a, modules: dict, optimisers: dict, device, bf16=False):
        self.name, self.a, self.modules, self.optimisers = name, a, modules, optimisers
        self.state_path = a.state_dir / f"{name}-state.pt"
        self.step, self.seconds, self.warm_from, self.extra = 0, 0.0, 0, {}
        self.stop_requested = False
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._request_stop)
        if not a.fresh:
            self._resume(device)
        self.started = self.last_save = time.time()
        # Where each sitting ran, for the model card: the run may span machines and days.
        self.extra.setdefault("sittings", []).append({
            "machine": machine_name(device), "threads": torch.get_num_threads(), "bf16": bf16,
            "from_step": self.step, "to_step": self.step, "seconds": 0.0, "started": time.strftime("%Y-%m-%d %H:%M")})

    def _request_stop(self, *_):
        self.stop_requested = True

    def _resume(self, device):
        a = self.a
        full = torch.load(self.state_path, map_location=device, weights_only=False) if self.state_path.exists() else None
        small = load_checkpoint(a.checkpoint) if list(a.checkpoint.parent.glob(a.checkpoint.name + ".part*")) else None
        if full is not None and (small is None or full["step"] >= small["step"]):
            for k, m in self.modules.items():
                m.load_state_dict(full[k])
            for k, o in self.optimisers.items():
                o.load_state_dict(full[k])
            self.step, self.seconds, self.extra = full["step"], full["seconds"], full.get("extra", {})
            log(f"{self.name}: resumed from {self.state_path} at step {self.step}")
        elif small is not None:
            for k, m in self.modules.items():
                m.load_state_dict({n: v.float() for n, v in small[k].items()})
            self.step, self.seconds, self.extra = small["step"], small["seconds"], small.get("extra", {})
            self.warm_from = self.step
            log(f"{self.name}: resumed from {a.checkpoint} (weights only) at step {self.step}; optimisers warm up again")

    def going(self, total_steps):
        return (self.step < total_steps and not self.stop_requested
                and time.time() - self.started < self.a.sitting_minutes * 60)

    def due(self):
        return time.time() - self.last_save > self.a.save_minutes * 60

    def save(self, **extra):
        now = time.time()
        self.seconds += now - self.last_save
        self.last_save = now
        self.extra |= extra
        self.extra["sittings"][-1] |= {"to_step": self.step, "seconds": round(now - self.started, 1)}
        state = {k: m.state_dict() for k, m in self.modules.items()}
        full = state | {k: o.state_dict() for k, o in self.optimisers.items()}
        full |= {"step": self.step, "seconds": self.seconds, "extra": self.extra}
        self.a.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(full, tmp)
        os.replace(tmp, self.state_path)
        half = {k: {n: v.half() for n, v in sd.items()} for k, sd in state.items()}
        save_checkpoint(half | {"step": self.step, "seconds": self.seconds, "extra": self.extra}, self.a.checkpoint)

    def why_stopped(self, total_steps):
        return "signal" if self.stop_requested else ("done" if self.step >= total_steps else "sitting over")


class Progress:
    """A progress line every `every` seconds: step, the caller's numbers, rate and ETA."""

    def __init__(self, total, start_step, every=60.0):
        self.total, self.start_step, self.every = total, start_step, every
        self.t0 = self.last = time.time()

    def maybe(self, step, text, unit_per_step=None, unit=""):
        now = time.time()
        if now - self.last < self.every and step != self.start_step + 1:
            return
        self.last = now
        rate = (step - self.start_step) / max(now - self.t0, 1e-9)
        extra = f" ({rate * unit_per_step:.1f} {unit}/s)" if unit_per_step else ""
        eta = (self.total - step) / max(rate, 1e-9)
        log(f"step {step}/{self.total} ({100 * step / self.total:.1f}%): {text} | {rate:.2f} steps/s{extra}, "
            f"ETA {eta / 3600:.1f} h")
