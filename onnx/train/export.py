"""ONNX export of cabin's own wallpaper networks (models.py), each checked against torch with onnxruntime.

The display stage is written as `upscaler/model.onnx` + `upscaler/config.json` in the model folder:
  input  `image`     [1, 3, H, W]     float, -1..1 (the VAE decoder's output)
  output `upscaled`  [1, 3, sH, sW]   float, about -1..1 (the engine clamps)
with H and W free, so one file serves any native size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from train import onnx_export, ort_session


def export_upscaler(model, out_dir: Path, sample_hw=(16, 40), seed=0) -> float:
    """Writes model.onnx + config.json to out_dir; returns the max |onnxruntime - torch| on a random picture."""
    model = model.cpu().float().eval()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, *sample_hw, generator=g) * 2 - 1
    path = out_dir / "model.onnx"
    onnx_export(model, (x,), path, ["image"], ["upscaled"],
                {"image": {2: "height", 3: "width"}}, [[1, 3, "upscaled_height", "upscaled_width"]])
    config = {"_class_name": "CabinUpscaler", "scale": model.scale, "in_channels": 3, "out_channels": 3,
              "input": "image", "output": "upscaled", "value_range": [-1.0, 1.0]}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    with torch.no_grad():
        want = model(x).numpy()
    got = ort_session(path, threads=1).run(None, {"image": x.numpy()})[0]
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max())


def export_autoencoder(ae, out: Path, scaling_factor: float, native_hw, seed=0) -> dict:
    """vae_encoder/ and vae_decoder/ with diffusers' AutoencoderKL interface; returns max |ORT - torch| of each."""
    ae = ae.cpu().float().eval()
    g = torch.Generator().manual_seed(seed)
    h, w = native_hw
    f = 8
    c = ae.latent

    class EncoderOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = ae.encoder

        def forward(self, sample):
            return self.encoder(sample)

    x = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    z = torch.randn(1, c, h // f, w // f, generator=g)
    onnx_export(EncoderOnly(), (x,), out / "vae_encoder" / "model.onnx", ["sample"], ["latent_parameters"],
                {"sample": {0: "batch", 2: "height", 3: "width"}}, [["batch", 2 * c, "latent_height", "latent_width"]])
    onnx_export(ae.decoder, (z,), out / "vae_decoder" / "model.onnx", ["latent_sample"], ["sample"],
                {"latent_sample": {0: "batch", 2: "height", 3: "width"}}, [["batch", 3, "image_height", "image_width"]])
    config = {"_class_name": "CabinAutoencoder", "in_channels": 3, "out_channels": 3, "latent_channels": c,
              "spatial_compression_ratio": f, "scaling_factor": scaling_factor, "sample_size": [h, w]}
    for part in ("vae_encoder", "vae_decoder"):
        (out / part / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    with torch.no_grad():
        want_par, want_img = ae.encoder(x).numpy(), ae.decoder(z).numpy()
    got_par = ort_session(out / "vae_encoder" / "model.onnx", threads=1).run(None, {"sample": x.numpy()})[0]
    got_img = ort_session(out / "vae_decoder" / "model.onnx", threads=1).run(None, {"latent_sample": z.numpy()})[0]
    return {"vae_encoder": float(np.abs(got_par - want_par).max()),
            "vae_decoder": float(np.abs(got_img - want_img).max())}
