#!/usr/bin/env python3
"""Rebuild the torch models of an exported wallpaper model from its ONNX files, so a shipped model
can be trained further when its training checkpoint is gone.

    onnx/.venv/bin/python onnx/train/from_onnx.py --model onnx/wallpaper-tiny --ckpt /tmp/ck.pt

The legacy exporter keeps most parameter names, but folds each Linear weight into an anonymous,
transposed MatMul initializer. Those are found by exporting the same architecture once with
distinct random values and matching every initializer to the parameter (or its transpose) it came
from; the shipped file, made by the same exporter from the same architecture, uses the same names.
The rebuilt models are then checked against onnxruntime on the shipped files; a checkpoint in
train.py's format is written only if they agree.

Build tooling only: nothing at run time or in `cargo test` runs this.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import train  # noqa: E402

PARTS = ("text_encoder", "unet", "vae_encoder", "vae_decoder")


def initializers(path: Path):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}


def build_from_configs(model: Path):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    te_cfg = CLIPTextConfig.from_pretrained(model / "text_encoder")
    te_cfg._attn_implementation = "eager"
    text_encoder = CLIPTextModel(te_cfg)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(model / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(model / "vae_decoder"))
    return vae, text_encoder, unet


def name_map(model: Path, tok, vae, text_encoder, unet):
    """{part: {initializer name: (state-dict key, transposed)}} from a reference export of the same
    architecture whose parameters all hold distinct values."""
    import torch

    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for m in (vae, text_encoder, unet):
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.02 + torch.rand(1, generator=g))
    maps = {}
    with tempfile.TemporaryDirectory() as tmp:
        train.export(Path(tmp), text_encoder, unet, vae, tok)
        for part in PARTS:
            inits = initializers(Path(tmp) / part / "model.onnx")
            mod = {"text_encoder": text_encoder, "unet": unet}.get(part, vae)
            params = {k: v.detach().numpy() for k, v in mod.state_dict().items()}
            by_size = {}
            for k, v in params.items():
                by_size.setdefault(v.size, []).append(k)
            found = {}
            for name, arr in inits.items():
                key = name[2:] if name.startswith("m.") else name
                if key in params and params[key].shape == arr.shape and np.array_equal(params[key], arr):
                    found[name] = (key, False)
                    continue
                for k in by_size.get(arr.size, []):
                    v = params[k]
                    if np.array_equal(v.reshape(-1), arr.reshape(-1)):  # as is, or with unit axes added
                        found[name] = (k, False)
                        break
                    if v.ndim == 2 and v.T.shape == arr.shape and np.array_equal(v.T, arr):
                        found[name] = (k, True)
                        break
            maps[part] = found
    return maps


def recover(model: Path, threads=2):
    import torch

    torch.set_num_threads(threads)
    tok = train.load_tokenizer(model / "tokenizer")
    vae, text_encoder, unet = build_from_configs(model)
    maps = name_map(model, tok, vae, text_encoder, unet)
    states = {"text_encoder": text_encoder.state_dict(), "unet": unet.state_dict(), "vae": vae.state_dict()}
    loaded = {"text_encoder": set(), "unet": set(), "vae": set()}
    for part in PARTS:
        owner = part if part in ("text_encoder", "unet") else "vae"
        inits = initializers(model / part / "model.onnx")
        for name, (key, transposed) in maps[part].items():
            if name not in inits:
                raise SystemExit(f"{part}: the shipped file has no initializer {name} (another exporter?)")
            arr = inits[name].T if transposed else inits[name].reshape(states[owner][key].shape)
            states[owner][key] = torch.from_numpy(np.ascontiguousarray(arr)).to(states[owner][key].dtype)
            loaded[owner].add(key)
    text_encoder.load_state_dict(states["text_encoder"])
    unet.load_state_dict(states["unet"])
    vae.load_state_dict(states["vae"])
    for owner, mod in (("text_encoder", text_encoder), ("unet", unet), ("vae", vae)):
        missing = [k for k, _ in mod.named_parameters() if k not in loaded[owner]]
        if missing:
            raise SystemExit(f"{owner}: {len(missing)} parameters not found in the ONNX files, e.g. {missing[:3]}")
    sf = json.loads((model / "vae_decoder" / "config.json").read_text())["scaling_factor"]
    diffs = train.check_export(model, text_encoder, unet, vae, tok, sf)
    worst = max(diffs.values())
    if worst > 1e-3:
        raise SystemExit(f"rebuilt models disagree with the ONNX files: {diffs}")
    return vae, text_encoder, unet, sf, tok, diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=train.ROOT / "onnx" / "wallpaper-tiny")
    ap.add_argument("--ckpt", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    vae, text_encoder, unet, sf, tok, diffs = recover(args.model, args.threads)
    info = json.loads((args.model / "train_info.json").read_text())
    ck = {"vae": vae.state_dict(), "te": text_encoder.state_dict(), "unet": unet.state_dict(), "sf": sf,
          "ae": info["ae"], "un": info["unet"], "train_seconds": info["train_seconds"], "images": info["images"],
          "command": info["command"], "device": info["device"], "threads": info["threads"],
          "args": {k: info[k] for k in ("ae_channels", "unet_channels", "text_dim", "seed", "data_seed", "minutes",
                                        "batch", "lr", "ema", "cond_drop", "ae_batch", "ae_crop")}
          | {"ae_layers": 1, "latent_channels": vae.config.latent_channels},
          "recovered_from": str(args.model), "recovery_diffs": diffs}
    size = train.save_checkpoint(ck, args.ckpt)
    print(f"rebuilt from {args.model}; max |torch - onnxruntime| {max(diffs.values()):.2e}; "
          f"checkpoint {args.ckpt}.part* ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
