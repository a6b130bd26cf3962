#!/usr/bin/env python3
"""Build a randomly initialised, small-on-device-sized Stable-Diffusion model for benchmarking.

Benchmark tooling only (tract vs onnxruntime); nothing at run time or in `cargo test` runs this,
and no reference outputs are written. Usage (from the repo root):

    nice -n 10 onnx/.venv/bin/python onnx/bench/make_bench_model.py [--out /tmp/cabin-bench-sd]

Same diffusers ONNX layout and export style as the test fixture (onnx/fixtures/make_tiny_sd.py,
whose tokenizer, wrappers, exporter, and DDIM scheduler config are reused by importing it):
  model_index.json, scheduler/, tokenizer/, text_encoder/, unet/, vae_encoder/, vae_decoder/
legacy TorchScript exporter, opset 17, dynamic batch (and spatial) axes, timestep float32 [batch],
input_ids int32. Sizes:
  unet          block_out_channels (64, 96, 128), layers_per_block 1, cross_attention_dim 64,
                4 latent channels, sample_size [16, 40]                              (~5.5 M params)
  vae           block_out_channels (32, 64, 64, 64) (factor 8), layers_per_block 2, 4 latent
                channels, native image 128x320                    (decoder ~1.0 M, encoder ~0.7 M)
  text_encoder  CLIP, hidden 64, 2 layers, 4 heads, the tiny fixture's tokenizer
Everything is regenerated deterministically from fixed torch seeds.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))

import make_tiny_sd as mts  # noqa: E402  (sets warnings filter, torch threads, imports torch/onnx/ort)
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizerFast  # noqa: E402

MAX_LEN = mts.MAX_LEN
LATENT_HW = (16, 40)
IMAGE_HW = (LATENT_HW[0] * 8, LATENT_HW[1] * 8)  # 128 x 320
HIDDEN = 64  # text hidden size == unet cross_attention_dim
NAMES = ("text_encoder", "unet", "vae_encoder", "vae_decoder")


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def tokenizer_into(out: Path):
    """Copy the tiny fixture's tokenizer folder (build it the same way if the fixture is absent)."""
    src = HERE.parent / "fixtures" / "tiny-sd" / "tokenizer"
    dst = out / "tokenizer"
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        mts.build_tokenizer(dst)
    tok = CLIPTokenizerFast.from_pretrained(dst)
    return tok, tok.get_vocab()


def build_models(vocab, unet_channels):
    torch.manual_seed(100)
    te_cfg = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=HIDDEN, intermediate_size=4 * HIDDEN, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_LEN, projection_dim=HIDDEN,
        hidden_act="quick_gelu", layer_norm_eps=1e-5,
        bos_token_id=vocab[mts.BOS], eos_token_id=vocab[mts.EOS], pad_token_id=vocab[mts.EOS],
    )
    te_cfg._attn_implementation = "eager"
    text_encoder = CLIPTextModel(te_cfg).eval()

    torch.manual_seed(101)
    unet = UNet2DConditionModel(
        sample_size=LATENT_HW, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=unet_channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        # diffusers' `attention_head_dim` is really the number of heads: 8 heads (12/16 dims at 96/128 ch)
        cross_attention_dim=HIDDEN, attention_head_dim=8, norm_num_groups=32,
    ).eval()

    torch.manual_seed(102)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 64, 64, 64), layers_per_block=2, latent_channels=4,
        norm_num_groups=32, sample_size=IMAGE_HW,
    ).eval()

    # the fixture's DDIM SD scheduler, config identical (its tiny models are built and dropped)
    scheduler = mts.build_models(vocab)[3]
    return text_encoder, unet, vae, scheduler


def export_all(out: Path, text_encoder, unet, vae, tok):
    ids = tok("A sample prompt", padding="max_length", max_length=MAX_LEN, truncation=True,
              return_tensors="pt").input_ids.to(torch.int32)
    mts.onnx_export(mts.TextEncoderWrap(text_encoder), (ids,), out / "text_encoder" / "model.onnx",
                    ["input_ids"], ["last_hidden_state", "pooler_output"],
                    {"input_ids": {0: "batch", 1: "sequence"}},
                    [["batch", "sequence", HIDDEN], ["batch", HIDDEN]])
    text_encoder.config.architectures = ["CLIPTextModel"]
    text_encoder.config.save_pretrained(out / "text_encoder")  # config.json only, no weights

    h, w = LATENT_HW
    g = torch.Generator().manual_seed(123)
    mts.onnx_export(mts.UNetWrap(unet),
                    (torch.randn(2, 4, h, w, generator=g), torch.randn(2, generator=g),
                     torch.randn(2, MAX_LEN, HIDDEN, generator=g)),
                    out / "unet" / "model.onnx", ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
                    {"sample": {0: "batch", 1: "channels", 2: "height", 3: "width"},
                     "timestep": {0: "batch"},
                     "encoder_hidden_states": {0: "batch", 1: "sequence"}},
                    [["batch", 4, "height", "width"]])
    unet.save_config(out / "unet")

    mts.onnx_export(mts.VaeEncoderWrap(vae), (torch.randn(1, 3, *IMAGE_HW, generator=g),),
                    out / "vae_encoder" / "model.onnx", ["sample"], ["latent_parameters"],
                    {"sample": {0: "batch", 1: "channels", 2: "height", 3: "width"}},
                    [["batch", 8, "latent_height", "latent_width"]])
    vae.save_config(out / "vae_encoder")
    mts.onnx_export(mts.VaeDecoderWrap(vae), (torch.randn(1, 4, h, w, generator=g),),
                    out / "vae_decoder" / "model.onnx", ["latent_sample"], ["sample"],
                    {"latent_sample": {0: "batch", 1: "channels", 2: "height", 3: "width"}},
                    [["batch", 3, "image_height", "image_width"]])
    vae.save_config(out / "vae_decoder")


def write_model_index(out: Path, scheduler, tok):
    """model_index.json exactly as diffusers' OnnxStableDiffusionPipeline.save_pretrained writes it."""
    from diffusers import OnnxRuntimeModel, OnnxStableDiffusionPipeline

    comps = {n: OnnxRuntimeModel.from_pretrained(out / n, provider="CPUExecutionProvider", provider_options={})
             for n in NAMES}
    pipe = OnnxStableDiffusionPipeline(**comps, tokenizer=tok, scheduler=scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    with tempfile.TemporaryDirectory() as td:
        pipe.save_config(td)
        shutil.copy(Path(td) / "model_index.json", out / "model_index.json")
    scheduler.save_config(out / "scheduler")


def session(path: Path, threads: int):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def time_call(sess, feeds, min_runs=5, min_s=3.0):
    for _ in range(2):
        sess.run(None, feeds)
    ts, t_end = [], time.perf_counter() + min_s
    while len(ts) < min_runs or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3, min(ts) * 1e3, len(ts)


def check_and_bench(out: Path, text_encoder, unet, vae, tok):
    g = torch.Generator().manual_seed(7)
    h, w = LATENT_HW
    ids = np.array(tok(["snowy mountains at dusk", "blurry"], padding="max_length", max_length=MAX_LEN,
                       truncation=True).input_ids, np.int32)
    lat2 = torch.randn(2, 4, h, w, generator=g)
    lat1 = torch.randn(1, 4, h, w, generator=g)
    img1 = torch.rand(1, 3, *IMAGE_HW, generator=g) * 2 - 1
    t2 = np.array([981.0, 981.0], np.float32)

    s = {n: session(out / n / "model.onnx", 2) for n in NAMES}
    emb = s["text_encoder"].run(None, {"input_ids": ids})[0]
    eps = s["unet"].run(None, {"sample": lat2.numpy(), "timestep": t2, "encoder_hidden_states": emb})[0]
    img = s["vae_decoder"].run(None, {"latent_sample": lat1.numpy()})[0]
    par = s["vae_encoder"].run(None, {"sample": img1.numpy()})[0]
    assert emb.shape == (2, MAX_LEN, HIDDEN) and eps.shape == (2, 4, h, w), (emb.shape, eps.shape)
    assert img.shape == (1, 3, *IMAGE_HW) and par.shape == (1, 8, h, w), (img.shape, par.shape)
    with torch.no_grad():
        emb_t = text_encoder(input_ids=torch.from_numpy(ids).long()).last_hidden_state.numpy()
        eps_t = unet(lat2, torch.from_numpy(t2), torch.from_numpy(emb)).sample.numpy()
        img_t = vae.decode(lat1).sample.numpy()
        par_t = vae.encode(img1).latent_dist.parameters.numpy()
    for n, a, b in (("text_encoder", emb, emb_t), ("unet b2", eps, eps_t), ("vae_decoder", img, img_t),
                    ("vae_encoder", par, par_t)):
        assert np.isfinite(a).all(), n
        print(f"ORT vs torch {n:13s}: out {list(a.shape)} max|diff| {np.abs(a - b).max():.2e} "
              f"(out absmax {np.abs(b).max():.2f})")

    unet_feeds = {"sample": lat2.numpy(), "timestep": t2, "encoder_hidden_states": emb}
    for threads in (1, 2):
        med, mn, n = time_call(session(out / "unet" / "model.onnx", threads), unet_feeds)
        print(f"ORT unet batch 2 {h}x{w}, {threads} thread(s): median {med:.1f} ms, min {mn:.1f} ms ({n} runs)")
    for threads in (1, 2):
        med, mn, n = time_call(session(out / "vae_decoder" / "model.onnx", threads),
                               {"latent_sample": lat1.numpy()})
        print(f"ORT vae_decoder batch 1 -> {IMAGE_HW[0]}x{IMAGE_HW[1]}, {threads} thread(s): "
              f"median {med:.1f} ms, min {mn:.1f} ms ({n} runs)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/cabin-bench-sd"), help="output dir (replaced)")
    ap.add_argument("--unet-channels", default="64,96,128", help="unet block_out_channels (3, multiples of 32)")
    ap.add_argument("--no-bench", action="store_true", help="export and check only, skip ORT timings")
    a = ap.parse_args()
    out = a.out.resolve()
    unet_channels = tuple(int(c) for c in a.unet_channels.split(","))
    assert len(unet_channels) == 3 and all(c % 32 == 0 for c in unet_channels), unet_channels

    print(f"torch {torch.__version__} onnx {onnx.__version__} onnxruntime {ort.__version__}, "
          f"{os.cpu_count()} cpus; out {out}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tok, vocab = tokenizer_into(out)
    text_encoder, unet, vae, sched = build_models(vocab, unet_channels)
    print(f"params: text_encoder {nparams(text_encoder):,}, unet {nparams(unet):,} {unet_channels}, "
          f"vae_encoder {nparams(vae.encoder) + nparams(vae.quant_conv):,}, "
          f"vae_decoder {nparams(vae.decoder) + nparams(vae.post_quant_conv):,}")
    export_all(out, text_encoder, unet, vae, tok)
    write_model_index(out, sched, tok)
    for n in NAMES:
        p = out / n / "model.onnx"
        m = onnx.load(str(p), load_external_data=False)
        print(f"{n}/model.onnx: {p.stat().st_size / 2**20:.2f} MiB, {len(m.graph.node)} nodes")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"total {total / 2**20:.2f} MiB")
    if not a.no_bench:
        check_and_bench(out, text_encoder, unet, vae, tok)


if __name__ == "__main__":
    sys.exit(main())
