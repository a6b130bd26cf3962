#!/usr/bin/env python3
"""Train cabin's in-house wallpaper model from rendered scenes and export it in the diffusers ONNX
layout the wallpaper engine loads.

    nice -n 5 onnx/.venv/bin/python onnx/train/train.py --minutes 32 [--out onnx/wallpaper-tiny] [--seed 0]

Build tooling only: nothing at run time or in `cargo test` runs this. Uses CUDA when present, else
the CPU with 2 torch threads (the same command runs unchanged on a GPU machine).

Pipeline (all inside the --minutes budget except the export and evaluation at the end):
  1. tokenizer   byte-level BPE (`tokenizers`) trained on the caption vocabulary + filler text:
                 any input tokenizes (no unk), CLIP-style <|startoftext|> ... <|endoftext|>, pad.
  2. data        scenes.py renders N images (fixed --data-seed, balanced over family x phase)
                 into RAM, in parallel processes.
  3. autoencoder diffusers AutoencoderKL, x8, 4 latent channels, trained on random 128x128 crops
                 with edge-weighted L1 + gradient L1 + a small KL (posterior noise ramped in).
  4. denoiser    transformers CLIPTextModel + diffusers UNet2DConditionModel (cross-attention,
                 latent 16x40), trained jointly on the frozen AE's latents: v-prediction, cosine
                 schedule, SNR-clamped loss weights, 10% empty-caption dropout (for classifier-free
                 guidance), EMA weights, captions re-drawn (en/zh, many phrasings) at every step.
  5. export      text_encoder, unet, vae_encoder (latent_parameters), vae_decoder at opset 17 with
                 the legacy TorchScript exporter; each checked against torch with onnxruntime.
  6. defaults    scheduler and step count picked by distance to a 100-step reference, guidance by
                 a render-trained proxy classifier; written to model_index.json "cabin".
  7. evidence    samples.png (every family x phase, English prompts; samples_zh.png in Chinese),
                 MODEL_CARD.md and train_info.json. manifest.json is NOT written here
                 (`cabin-wallpaper manifest` makes it).

A checkpoint is kept at --ckpt so `--export-only` can redo steps 5-7 without training.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # render workers: one BLAS thread each
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import scenes  # noqa: E402
from models import adversarial_loss, critic_step, nparams, patch_discriminator  # noqa: E402

warnings.filterwarnings("ignore")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BOS, EOS, PAD = "<|startoftext|>", "<|endoftext|>", "<|pad|>"
CJK = "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f]"  # CJK ideographs + CJK punctuation
MAX_LEN = 32
LATENT_HW = (scenes.H // 8, scenes.W // 8)  # 16 x 40
OPSET = 17
T_TRAIN = 1000
MIN_STEPS = 5  # each phase runs at least this many steps, so even a tiny budget exercises the whole path

T0 = time.time()


def log(msg):
    el = time.time() - T0
    print(f"[{int(el // 60):3d}:{int(el % 60):02d}] {msg}", flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, required=True, help="training budget (data + AE + UNet), wall clock")
    ap.add_argument("--out", type=Path, default=ROOT / "onnx" / "wallpaper-tiny")
    ap.add_argument("--seed", type=int, default=0, help="training seed (init, batches, noise)")
    ap.add_argument("--data-seed", type=int, default=20240601, help="seed of the rendered scene set")
    ap.add_argument("--images", type=int, default=0, help="rendered training images (0: from the budget)")
    ap.add_argument("--ae-frac", type=float, default=0.4, help="share of the post-render budget for the AE")
    ap.add_argument("--ae-channels", default="16,32,64,128")
    ap.add_argument("--ae-layers", type=int, default=1)
    ap.add_argument("--latent-channels", type=int, default=4)
    ap.add_argument("--ae-batch", type=int, default=8)
    ap.add_argument("--ae-crop", type=int, default=128)
    ap.add_argument("--ae-lr", type=float, default=6e-4)
    ap.add_argument("--ae-adv", type=float, default=0.0,
                    help="weight of a patch-discriminator loss on the decoder (0: off); it draws the fine "
                         "texture (windows, rain, stars) that L1 alone averages away")
    ap.add_argument("--ae-adv-start", type=float, default=0.4, help="share of the AE budget before the discriminator joins")
    ap.add_argument("--unet-channels", default="64,96,112")
    ap.add_argument("--text-dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--cond-drop", type=float, default=0.1)
    ap.add_argument("--ae-steps", type=int, default=0, help="fixed AE steps instead of a time share (replays a run)")
    ap.add_argument("--unet-steps", type=int, default=0, help="fixed UNet steps instead of the remaining time")
    ap.add_argument("--guidance", type=float, default=0.0, help="recommended guidance (0: pick automatically)")
    ap.add_argument("--max-steps", type=int, default=12,
                    help="most default steps (the speed budget: 1920x720 in <= 2 s on 2 cores)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (ignored on CUDA)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--ckpt", type=Path, default=Path("/tmp/cabin-wallpaper-train.pt"))
    ap.add_argument("--export-only", action="store_true", help="skip training; export the checkpoint")
    ap.add_argument("--train-only", action="store_true",
                    help="stop after writing the checkpoint (e.g. train on a GPU box, export elsewhere)")
    return ap.parse_args(argv)


# ------------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------------
FILLER_TEXT = """
the a an of in on at to and or with for from by under over near into onto is are be it this that these
please can you could would i want like need show me give make set change switch put use new another one
some more less very really quite bit wallpaper background picture image photo scene view screen display
landscape painting drawing art style mode theme colour color light dark bright soft calm quiet peaceful
beautiful nice pretty cozy relaxing moody dramatic gentle simple clean minimal sky cloud clouds sun moon
star stars water river beach wave waves tree trees flower flowers snow ice rain storm fog mist wind road
street car drive driving home morning afternoon evening tonight today now spring summer autumn winter
red orange yellow green blue purple pink white black grey gray gold silver
thanks thank hello hi hey ok okay yes no not don't stop next previous again
一 个 张 的 了 是 我 你 请 要 想 给 换 来 看 把 和 在 有 很 更 点 些 这 那 新 图 片 画 背 景 壁 纸 屏 幕
天 空 云 太 阳 月 亮 星 水 河 海 浪 树 花 雪 冰 雨 风 雾 路 街 车 家 早 晚 上 下 午 夜 春 夏 秋 冬
红 橙 黄 绿 蓝 紫 粉 白 黑 灰 金 银 美 丽 漂 亮 安 静 温 柔 明 暗 亮 色 调 风 格 谢 好 吧 吗 呢
换一张壁纸 来一张图片 给我换个背景 好看的壁纸 漂亮的风景 安静的夜晚 美丽的天空 温柔的光
"""


def build_tokenizer(out_dir: Path, data_seed: int, vocab_size: int = 1024):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    rng = np.random.default_rng(data_seed + 7)
    corpus = scenes.corpus(rng, 30000) + [line for line in FILLER_TEXT.splitlines() if line.strip()] * 20
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    # every CJK character is its own piece (so merges never glue 的 onto a noun), then GPT-2 style
    # byte-level splitting: any byte sequence has a token, nothing is unknown
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CJK), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=3, special_tokens=[BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B:1 {EOS}:1",
        special_tokens=[(BOS, bos), (EOS, eos)])
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MAX_LEN,
        "bos_token": BOS, "eos_token": EOS, "pad_token": PAD,
        "padding_side": "right", "clean_up_tokenization_spaces": False,
        "do_lower_case": True,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}, indent=2) + "\n")
    return load_tokenizer(out_dir)


class PromptTokenizer:
    """Mirrors the engine's tokenizer.rs: encode with specials, truncate (eos last), pad."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.pad = self.tok.token_to_id(PAD)
        self.eos = self.tok.token_to_id(EOS)
        self.bos = self.tok.token_to_id(BOS)
        self.vocab_size = self.tok.get_vocab_size()

    def __call__(self, texts):
        out = np.full((len(texts), MAX_LEN), self.pad, np.int64)
        for i, e in enumerate(self.tok.encode_batch(list(texts))):
            ids = e.ids
            if len(ids) > MAX_LEN:
                ids = ids[:MAX_LEN]
                ids[-1] = self.eos
            out[i, :len(ids)] = ids
        return out


def load_tokenizer(path: Path):
    return PromptTokenizer(path)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
def _render_job(job):
    out = np.empty((len(job), scenes.H, scenes.W, 3), np.uint8)
    for i, (seed, meta) in enumerate(job):
        out[i] = scenes.render(np.random.default_rng(seed), meta)
    return out


def plan_scenes(n, seed):
    """Balanced family x phase, random styles; one render seed per image."""
    rng = np.random.default_rng(seed)
    combos = [(f, p) for f in scenes.FAMILIES for p in scenes.PHASES]
    metas = []
    while len(metas) < n:
        for k in rng.permutation(len(combos)):
            f, p = combos[k]
            metas.append(scenes.random_scene(rng, f, p))
    metas = metas[:n]
    seeds = rng.integers(0, 2**63 - 1, n)
    return metas, seeds


def render_set(n, seed, procs):
    metas, seeds = plan_scenes(n, seed)
    jobs = [list(zip(seeds[i:i + 32].tolist(), metas[i:i + 32])) for i in range(0, n, 32)]
    if procs > 1:
        with mp.get_context("fork").Pool(procs) as pool:
            parts = pool.map(_render_job, jobs, chunksize=1)
    else:
        parts = [_render_job(j) for j in jobs]
    return np.concatenate(parts), metas


# ------------------------------------------------------------------------------------------------
# Checkpoint: split into parts of at most 15 MiB, so it can travel through size-capped transfers
# ------------------------------------------------------------------------------------------------
CKPT_PART = 15 * 2**20


def save_checkpoint(obj, path: Path):
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(path.name + ".part*"):
        old.unlink()
    for k in range(0, len(data), CKPT_PART):
        Path(f"{path}.part{k // CKPT_PART}").write_bytes(data[k:k + CKPT_PART])
    return len(data)


def load_checkpoint(path: Path):
    import io

    import torch

    parts = sorted(path.parent.glob(path.name + ".part*"), key=lambda q: int(q.name.rsplit("part", 1)[1]))
    data = b"".join(q.read_bytes() for q in parts) if parts else path.read_bytes()
    return torch.load(io.BytesIO(data), weights_only=False, map_location="cpu")


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------
def build_models(args, vocab_size, tok):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(args.seed)
    ae_ch = tuple(int(c) for c in args.ae_channels.split(","))
    groups = math.gcd(32, *ae_ch)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(ae_ch), up_block_types=("UpDecoderBlock2D",) * len(ae_ch),
        block_out_channels=ae_ch, layers_per_block=args.ae_layers, latent_channels=args.latent_channels,
        norm_num_groups=groups, sample_size=(scenes.H, scenes.W), scaling_factor=1.0,
    )
    text_encoder = build_text_encoder(args.text_dim, vocab_size, tok)
    unet = build_unet(args.latent_channels, args.unet_channels, args.text_dim)
    return vae, text_encoder, unet


def build_text_encoder(d, vocab_size, tok):
    from transformers import CLIPTextConfig, CLIPTextModel

    te_cfg = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=d, intermediate_size=2 * d, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=MAX_LEN, projection_dim=d,
        hidden_act="quick_gelu", layer_norm_eps=1e-5,
        bos_token_id=tok.bos, eos_token_id=tok.eos, pad_token_id=tok.pad,
    )
    te_cfg._attn_implementation = "eager"
    return CLIPTextModel(te_cfg)


def build_unet(latent_channels, channels, text_dim):
    from diffusers import UNet2DConditionModel

    un_ch = tuple(int(c) for c in channels.split(","))
    return UNet2DConditionModel(
        sample_size=LATENT_HW, in_channels=latent_channels, out_channels=latent_channels, layers_per_block=1,
        block_out_channels=un_ch,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=text_dim, attention_head_dim=4, norm_num_groups=math.gcd(32, *un_ch),
    )


def alphas_cumprod():
    from diffusers import DDPMScheduler

    s = DDPMScheduler(num_train_timesteps=T_TRAIN, beta_schedule="squaredcos_cap_v2")
    return s.alphas_cumprod.double()


def frac_done(t_start, budget_s, step, fixed_steps):
    if fixed_steps:
        return step / fixed_steps
    return (time.time() - t_start) / max(budget_s, 1e-6)


def lr_at(base, frac, step, warmup, floor=0.05):
    w = min(1.0, (step + 1) / warmup)
    return base * w * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


# ------------------------------------------------------------------------------------------------
# Autoencoder training
# ------------------------------------------------------------------------------------------------
def to_tensor(u8, dev):
    import torch

    x = torch.from_numpy(u8).to(dev).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def ae_losses(xr, x):
    import torch

    gx = x[..., :, 1:] - x[..., :, :-1]
    gy = x[..., 1:, :] - x[..., :-1, :]
    gxr = xr[..., :, 1:] - xr[..., :, :-1]
    gyr = xr[..., 1:, :] - xr[..., :-1, :]
    edge = torch.zeros_like(x[:, :1])
    edge[..., :, 1:] += gx.abs().mean(1, keepdim=True)
    edge[..., 1:, :] += gy.abs().mean(1, keepdim=True)
    w = 1.0 + 6.0 * edge.clamp(max=1.0)
    l1 = (w * (xr - x).abs()).mean()
    grad = (gxr - gx).abs().mean() + (gyr - gy).abs().mean()
    return l1, grad


def psnr(vae, val_u8, dev):
    import torch

    vae.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(val_u8), 16):
            x = to_tensor(val_u8[i:i + 16], dev)
            xr = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
            out.append(((xr - x) / 2).pow(2).flatten(1).mean(1))
    vae.train()
    mse = torch.cat(out).mean().item()
    return 10 * math.log10(1 / max(mse, 1e-10))


def train_ae(args, vae, imgs, val, dev, budget_s, rng):
    import torch

    vae.train().to(dev)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.ae_lr, betas=(0.9, 0.99), weight_decay=0.0)
    disc = patch_discriminator().to(dev) if args.ae_adv > 0 else None
    opt_d = torch.optim.AdamW(disc.parameters(), lr=args.ae_lr, betas=(0.5, 0.9)) if disc is not None else None
    adv_hist = []
    n, crop, bs = len(imgs), args.ae_crop, args.ae_batch
    t_start, last_log, step, hist = time.time(), time.time(), 0, []
    log(f"AE: {nparams(vae.encoder) + nparams(vae.quant_conv):,} + {nparams(vae.decoder) + nparams(vae.post_quant_conv):,} "
        f"params (enc + dec), budget {budget_s / 60:.1f} min" + (f", {args.ae_steps} steps" if args.ae_steps else ""))
    while True:
        frac = frac_done(t_start, budget_s, step, args.ae_steps)
        if frac >= 1 and (step >= MIN_STEPS or args.ae_steps):
            break
        frac = min(frac, 1.0)
        for g in opt.param_groups:
            g["lr"] = lr_at(args.ae_lr, frac, step, 100)
        idx = rng.integers(0, n, bs)
        ox = rng.integers(0, scenes.W - crop + 1, bs)
        oy = rng.integers(0, scenes.H - min(crop, scenes.H) + 1, bs)
        ch = min(crop, scenes.H)
        batch = np.stack([imgs[i, y:y + ch, x:x + crop] for i, x, y in zip(idx, ox, oy)])
        x = to_tensor(batch, dev)
        post = vae.encode(x).latent_dist
        noise_scale = min(1.0, 0.05 + frac * 3)
        z = post.mean + noise_scale * post.std * torch.randn_like(post.mean)
        xr = vae.decode(z).sample
        l1, grad = ae_losses(xr, x)
        kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()
        loss = l1 + grad + 1e-5 * kl
        adversarial = disc is not None and frac >= args.ae_adv_start
        if adversarial:
            adv, lam = adversarial_loss(disc, xr, l1 + grad, vae.decoder.conv_out.weight, args.ae_adv)
            loss = loss + adv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if adversarial:
            for g in opt_d.param_groups:
                g["lr"] = lr_at(args.ae_lr, frac, step, 100)
            d_loss = critic_step(disc, opt_d, x, xr)
            adv_hist.append((d_loss.item(), lam.item()))
        step += 1
        hist.append((l1.item(), grad.item(), kl.item()))
        if time.time() - last_log > 60 or step == 1:
            m = np.mean(hist[-50:], 0)
            el = time.time() - t_start
            adv = (" d-loss {:.3f} adv-weight {:.3f}".format(*np.mean(adv_hist[-50:], 0)) if adv_hist else "")
            log(f"AE step {step} ({frac * 100:.0f}%): l1w {m[0]:.4f} grad {m[1]:.4f} kl {m[2]:.2f}{adv} "
                f"lr {opt.param_groups[0]['lr']:.2e}, {step * bs / el:.1f} crops/s, val PSNR {psnr(vae, val, dev):.2f} dB")
            last_log = time.time()
    p = psnr(vae, val, dev)
    el = time.time() - t_start
    log(f"AE done: {step} steps in {el / 60:.1f} min ({step * bs / el:.1f} crops/s), val PSNR {p:.2f} dB")
    vae.eval()
    return {"steps": step, "seconds": el, "val_psnr_db": p, "crops_per_s": step * bs / el,
            "adversarial_steps": len(adv_hist), "adversarial_weight": args.ae_adv}


def encode_all(vae, imgs, dev):
    import torch

    means, logvars = [], []
    with torch.no_grad():
        for i in range(0, len(imgs), 32):
            d = vae.encode(to_tensor(imgs[i:i + 32], dev)).latent_dist
            means.append(d.mean.half())
            logvars.append(d.logvar.clamp(-30, 20).half())
    return torch.cat(means), torch.cat(logvars)


# ------------------------------------------------------------------------------------------------
# Denoiser training
# ------------------------------------------------------------------------------------------------
class Ema:
    def __init__(self, models, decay):
        import copy

        self.models = [copy.deepcopy(m).eval().requires_grad_(False) for m in models]
        self.src = models
        self.decay = decay
        self.step = 0

    def update(self):
        import torch

        self.step += 1
        d = min(self.decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for e, m in zip(self.models, self.src):
                ep = [p for p in e.parameters()]
                mp_ = [p.detach() for p in m.parameters()]
                torch._foreach_mul_(ep, d)
                torch._foreach_add_(ep, mp_, alpha=1 - d)


def train_unet(args, text_encoder, unet, latents, metas, tok, sf, dev, budget_s, rng):
    import torch

    mean, logvar = latents
    ac = alphas_cumprod().to(dev)
    sqrt_ac, sqrt_1m = ac.sqrt().float(), (1 - ac).sqrt().float()
    snr = (ac / (1 - ac)).float()
    w_t = (torch.clamp(snr, max=5.0) + 1) / (snr + 1)  # v-loss weights: x0-weight min(snr, 5) + 1
    text_encoder.train().to(dev)
    unet.train().to(dev)
    params = list(text_encoder.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), weight_decay=0.01)
    ema = Ema([text_encoder, unet], args.ema)
    n, bs = len(metas), args.batch
    empty = tok([""])[0]
    gen = torch.Generator(device=dev).manual_seed(args.seed + 1)
    log(f"UNet: {nparams(unet):,} params, text encoder {nparams(text_encoder):,}; budget {budget_s / 60:.1f} min"
        + (f", {args.unet_steps} steps" if args.unet_steps else ""))
    t_start, last_log, step, hist = time.time(), time.time(), 0, []
    while True:
        frac = frac_done(t_start, budget_s, step, args.unet_steps)
        if frac >= 1 and (step >= MIN_STEPS or args.unet_steps):
            break
        frac = min(frac, 1.0)
        for g in opt.param_groups:
            g["lr"] = lr_at(args.lr, frac, step, 200, floor=0.1)
        idx = rng.integers(0, n, bs)
        ids = tok([scenes.caption(rng, metas[i]) for i in idx])
        drop = rng.uniform(0, 1, bs) < args.cond_drop
        ids[drop] = empty
        idx_t = torch.from_numpy(idx).to(dev)
        m, lv = mean[idx_t].float(), logvar[idx_t].float()
        z0 = (m + (0.5 * lv).exp() * torch.randn(m.shape, generator=gen, device=dev)) * sf
        t = torch.randint(0, T_TRAIN, (bs,), generator=gen, device=dev)
        noise = torch.randn(z0.shape, generator=gen, device=dev)
        a, s = sqrt_ac[t].view(-1, 1, 1, 1), sqrt_1m[t].view(-1, 1, 1, 1)
        zt = a * z0 + s * noise
        v = a * noise - s * z0
        hidden = text_encoder(input_ids=torch.from_numpy(ids).to(dev)).last_hidden_state
        pred = unet(zt, t, hidden).sample
        loss = (w_t[t] * (pred - v).pow(2).mean((1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update()
        step += 1
        hist.append(loss.item())
        if time.time() - last_log > 60 or step == 1:
            el = time.time() - t_start
            log(f"UNet step {step} ({frac * 100:.0f}%): loss {np.mean(hist[-100:]):.4f} "
                f"lr {opt.param_groups[0]['lr']:.2e}, {step * bs / el:.1f} img/s")
            last_log = time.time()
    el = time.time() - t_start
    log(f"UNet done: {step} steps in {el / 60:.1f} min ({step * bs / el:.1f} img/s), final loss {np.mean(hist[-200:]):.4f}")
    return ema.models, {"steps": step, "seconds": el, "img_per_s": step * bs / el,
                        "final_loss": float(np.mean(hist[-200:])), "ms_per_step": el / max(step, 1) * 1e3}


# ------------------------------------------------------------------------------------------------
# Export (mirrors onnx/fixtures/make_tiny_sd.py: legacy exporter, opset 17, honest output dims)
# ------------------------------------------------------------------------------------------------
def wrappers():
    import torch

    class TextEncoderWrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            o = self.m(input_ids=input_ids, return_dict=True)
            return o.last_hidden_state, o.pooler_output

    class UNetWrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.m(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    class VaeEncoderWrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, sample):
            return self.m.encode(sample, return_dict=False)[0].parameters

    class VaeDecoderWrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, latent_sample):
            return self.m.decode(latent_sample, return_dict=False)[0]

    return TextEncoderWrap, UNetWrap, VaeEncoderWrap, VaeDecoderWrap


def onnx_export(model, inputs, path: Path, input_names, output_names, dynamic_axes, output_dims):
    import onnx
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model, inputs, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, do_constant_folding=True, opset_version=OPSET, dynamo=False)
    m = onnx.load(str(path))
    for o, dims in zip(m.graph.output, output_dims):
        shp = o.type.tensor_type.shape
        assert len(shp.dim) == len(dims), (o.name, shp, dims)
        for d, new in zip(shp.dim, dims):
            if isinstance(new, int):
                assert d.dim_value in (0, new), (o.name, d, new)
                d.Clear()
                d.dim_value = new
            else:
                d.Clear()
                d.dim_param = new
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))


def export(out: Path, text_encoder, unet, vae, tok):
    import torch

    TE, UN, VE, VD = wrappers()
    text_encoder, unet, vae = (m.cpu().float().eval() for m in (text_encoder, unet, vae))
    d = text_encoder.config.hidden_size
    ids = torch.from_numpy(tok(["snowy mountains at dusk"])).to(torch.int32)
    onnx_export(TE(text_encoder), (ids,), out / "text_encoder" / "model.onnx", ["input_ids"],
                ["last_hidden_state", "pooler_output"], {"input_ids": {0: "batch", 1: "sequence"}},
                [["batch", "sequence", d], ["batch", d]])
    text_encoder.config.architectures = ["CLIPTextModel"]
    text_encoder.config.save_pretrained(out / "text_encoder")
    h, w = LATENT_HW
    lc = unet.config.in_channels
    g = torch.Generator().manual_seed(123)
    onnx_export(UN(unet), (torch.randn(2, lc, h, w, generator=g), torch.tensor([999.0, 500.0]),
                           torch.randn(2, MAX_LEN, d, generator=g)),
                out / "unet" / "model.onnx", ["sample", "timestep", "encoder_hidden_states"], ["out_sample"],
                {"sample": {0: "batch", 1: "channels", 2: "height", 3: "width"}, "timestep": {0: "batch"},
                 "encoder_hidden_states": {0: "batch", 1: "sequence"}},
                [["batch", lc, "height", "width"]])
    unet.save_config(out / "unet")
    onnx_export(VE(vae), (torch.rand(1, 3, scenes.H, scenes.W, generator=g) * 2 - 1,),
                out / "vae_encoder" / "model.onnx", ["sample"], ["latent_parameters"],
                {"sample": {0: "batch", 1: "channels", 2: "height", 3: "width"}},
                [["batch", 2 * lc, "latent_height", "latent_width"]])
    vae.save_config(out / "vae_encoder")
    onnx_export(VD(vae), (torch.randn(1, lc, h, w, generator=g),),
                out / "vae_decoder" / "model.onnx", ["latent_sample"], ["sample"],
                {"latent_sample": {0: "batch", 1: "channels", 2: "height", 3: "width"}},
                [["batch", 3, "image_height", "image_width"]])
    vae.save_config(out / "vae_decoder")


def ort_session(path: Path, threads=2):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def check_export(out: Path, text_encoder, unet, vae, tok, sf):
    import torch

    s = {n: ort_session(out / n / "model.onnx") for n in ("text_encoder", "unet", "vae_encoder", "vae_decoder")}
    g = torch.Generator().manual_seed(7)
    h, w = LATENT_HW
    ids = tok(["snowy mountains at dusk", "", "换一张黄昏的雪山的壁纸"])
    emb = s["text_encoder"].run(None, {"input_ids": ids.astype(np.int32)})[0]
    lat = torch.randn(3, unet.config.in_channels, h, w, generator=g)
    ts = np.array([999.0, 500.0, 20.0], np.float32)
    eps = s["unet"].run(None, {"sample": lat.numpy(), "timestep": ts, "encoder_hidden_states": emb})[0]
    img = s["vae_decoder"].run(None, {"latent_sample": lat[:1].numpy() / sf})[0]
    x = torch.rand(1, 3, scenes.H, scenes.W, generator=g) * 2 - 1
    par = s["vae_encoder"].run(None, {"sample": x.numpy()})[0]
    with torch.no_grad():
        emb_t = text_encoder(input_ids=torch.from_numpy(ids)).last_hidden_state.numpy()
        eps_t = unet(lat, torch.from_numpy(ts), torch.from_numpy(emb)).sample.numpy()
        img_t = vae.decode(lat[:1] / sf).sample.numpy()
        par_t = vae.encode(x).latent_dist.parameters.numpy()
    diffs = {}
    for n, a, b in (("text_encoder", emb, emb_t), ("unet", eps, eps_t), ("vae_decoder", img, img_t),
                    ("vae_encoder", par, par_t)):
        assert np.isfinite(a).all(), n
        diffs[n] = float(np.abs(a - b).max())
        log(f"ORT vs torch {n:12s}: out {list(a.shape)} max|diff| {diffs[n]:.2e} (|out| max {np.abs(b).max():.2f})")
    return diffs


# ------------------------------------------------------------------------------------------------
# Sampling with onnxruntime (the engine's pipeline, diffusers schedulers)
# ------------------------------------------------------------------------------------------------
def scheduler_config(kind, steps_hint=None):
    base = dict(num_train_timesteps=T_TRAIN, beta_start=0.0001, beta_end=0.02, beta_schedule="squaredcos_cap_v2",
                prediction_type="v_prediction", timestep_spacing="trailing", steps_offset=0)
    if kind == "ddim":
        from diffusers import DDIMScheduler

        return DDIMScheduler, dict(base, clip_sample=False, set_alpha_to_one=True)
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler, dict(base, algorithm_type="dpmsolver++", solver_order=2,
                                             solver_type="midpoint", lower_order_final=True,
                                             final_sigmas_type="zero", use_karras_sigmas=False)


class OrtPipe:
    def __init__(self, out: Path, tok, sf):
        self.s = {n: ort_session(out / n / "model.onnx") for n in ("text_encoder", "unet", "vae_decoder")}
        self.tok, self.sf = tok, sf
        self.channels = json.loads((out / "unet" / "config.json").read_text())["in_channels"]

    def embed(self, prompts):
        return self.s["text_encoder"].run(None, {"input_ids": self.tok(prompts).astype(np.int32)})[0]

    def latents(self, prompts, seeds, kind, steps, guidance):
        import torch

        cls, cfg = scheduler_config(kind)
        sched = cls(**cfg)
        sched.set_timesteps(steps)
        b = len(prompts)
        emb = self.embed([""] * b + list(prompts))
        lat = np.stack([np.random.default_rng(s).standard_normal((self.channels, *LATENT_HW)).astype(np.float32) for s in seeds])
        lat = lat * float(sched.init_noise_sigma)
        for t in sched.timesteps:
            x = torch.from_numpy(np.concatenate([lat, lat]))
            x = sched.scale_model_input(x, t).numpy()
            out = self.s["unet"].run(None, {"sample": x, "timestep": np.full(2 * b, float(t), np.float32),
                                            "encoder_hidden_states": emb})[0]
            u, c = out[:b], out[b:]
            guided = u + guidance * (c - u)
            lat = sched.step(torch.from_numpy(guided), t, torch.from_numpy(lat)).prev_sample.numpy().astype(np.float32)
        return lat

    def decode(self, lat):
        imgs = []
        for i in range(len(lat)):
            x = self.s["vae_decoder"].run(None, {"latent_sample": lat[i:i + 1] / self.sf})[0][0]
            imgs.append(np.clip(x.transpose(1, 2, 0) / 2 + 0.5, 0, 1))
        return np.stack(imgs)


# proxy classifier: ridge regression on colour thumbnails + local gradient energy
def features(imgs):
    if len(imgs) > 256:
        return np.concatenate([features(imgs[i:i + 256]) for i in range(0, len(imgs), 256)])
    x = np.asarray(imgs, np.float32)
    if np.asarray(imgs).dtype == np.uint8:
        x = x / 255.0
    n = len(x)
    thumb = x.reshape(n, 8, 16, 20, 16, 3).mean((2, 4)).reshape(n, -1)
    gx = np.abs(np.diff(x, axis=2)).mean(-1)[:, :, :312]
    gy = np.abs(np.diff(x, axis=1)).mean(-1)[:, :120]
    ge = np.concatenate([gx.reshape(n, 4, 32, 13, 24).mean((2, 4)).reshape(n, -1),
                         gy.reshape(n, 4, 30, 10, 32).mean((2, 4)).reshape(n, -1)], 1)
    lum = x @ np.array([0.299, 0.587, 0.114], np.float32)
    hist = np.stack([((lum >= a) & (lum < a + 0.125)).mean((1, 2)) for a in np.arange(0, 1, 0.125)], 1)
    return np.concatenate([thumb, np.sqrt(ge) * 2, hist, x.std((1, 2))], 1)


class Proxy:
    def __init__(self, imgs, metas, lam=3.0):
        f = features(imgs)
        self.mu, self.sd = f.mean(0), f.std(0) + 1e-6
        z = np.concatenate([(f - self.mu) / self.sd, np.ones((len(f), 1), np.float32)], 1)
        a = z.T @ z + lam * np.eye(z.shape[1], dtype=np.float32)
        self.w = {}
        for key, labels in (("family", scenes.FAMILIES), ("phase", scenes.PHASES)):
            y = np.zeros((len(metas), len(labels)), np.float32)
            y[np.arange(len(metas)), [labels.index(m[key]) for m in metas]] = 1
            self.w[key] = np.linalg.solve(a, z.T @ y)

    def predict(self, imgs):
        f = features(imgs)
        z = np.concatenate([(f - self.mu) / self.sd, np.ones((len(f), 1), np.float32)], 1)
        return {k: (z @ w).argmax(1) for k, w in self.w.items()}

    def accuracy(self, imgs, metas):
        p = self.predict(imgs)
        return {k: float(np.mean([
            (scenes.FAMILIES if k == "family" else scenes.PHASES)[i] == m[k] for i, m in zip(p[k], metas)]))
            for k in p}



def choose_defaults(pipe, proxy, args):
    """Scheduler + steps by distance to a 100-step DDIM reference; guidance by proxy adherence."""
    rng = np.random.default_rng(99)
    metas = [{"family": f, "phase": scenes.PHASES[rng.integers(4)], "styles": []} for f in scenes.FAMILIES]
    prompts = [scenes.canonical(m, "en") for m in metas]
    seeds = list(range(1000, 1000 + len(prompts)))
    g0 = args.guidance or 4.0
    ref = pipe.decode(pipe.latents(prompts, seeds, "ddim", 100, g0))
    table = {}
    for kind in ("ddim", "dpm++2m"):
        for steps in (10, 12, 15, 20, 25):
            img = pipe.decode(pipe.latents(prompts, seeds, kind, steps, g0))
            table[f"{kind}@{steps}"] = float(np.abs(img - ref).mean())
    log("scheduler sweep, mean |image - 100-step DDIM| (0..1): " + ", ".join(f"{k} {v:.4f}" for k, v in table.items()))
    tol = 0.012
    best = None
    allowed = [s for s in (10, 12, 15, 20, 25) if s <= max(args.max_steps, 10)]
    for steps in allowed:
        cands = [(table[f"{k}@{steps}"], k) for k in ("ddim", "dpm++2m") if table[f"{k}@{steps}"] <= tol]
        if cands:
            best = (min(cands)[1], steps)
            break
    if best is None:
        # Nothing within tolerance inside the speed budget: the closest at the most steps allowed.
        err, key = min((table[f"{k}@{allowed[-1]}"], k) for k in ("ddim", "dpm++2m"))
        best = (key, allowed[-1])
    kind, steps = best
    # guidance
    gm = [{"family": f, "phase": p, "styles": []} for f in scenes.FAMILIES for p in scenes.PHASES]
    gp = [scenes.canonical(m, "en") for m in gm]
    gseeds = list(range(2000, 2000 + len(gp)))
    gtable = {}
    candidates = [args.guidance] if args.guidance else [2.5, 4.0, 6.0]
    for g in candidates:
        imgs = pipe.decode(pipe.latents(gp, gseeds, kind, steps, g))
        acc = proxy.accuracy(imgs, gm)
        gtable[g] = acc
    log("guidance sweep (proxy accuracy family/phase): " + ", ".join(
        f"{g}: {a['family']:.2f}/{a['phase']:.2f}" for g, a in gtable.items()))
    guidance = max(candidates, key=lambda g: (round(gtable[g]["family"] + gtable[g]["phase"], 2), -g))
    return {"scheduler": kind, "steps": steps, "guidance": guidance, "sweep_mae": table,
            "guidance_sweep": {str(k): v for k, v in gtable.items()}}


def sample_sheet(pipe, path: Path, lang, kind, steps, guidance, seed0=5000):
    from PIL import Image, ImageDraw

    metas = [{"family": f, "phase": p, "styles": []} for f in scenes.FAMILIES for p in scenes.PHASES]
    prompts = [scenes.canonical(m, lang) for m in metas]
    seeds = [seed0 + i for i in range(len(prompts))]
    imgs = []
    for i in range(0, len(prompts), 20):
        imgs.append(pipe.decode(pipe.latents(prompts[i:i + 20], seeds[i:i + 20], kind, steps, guidance)))
    imgs = np.concatenate(imgs)
    H, W, pad, lab = scenes.H, scenes.W, 4, 12
    sheet = Image.new("RGB", (4 * (W + pad) + pad, 10 * (H + pad + lab) + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for k, (img, p) in enumerate(zip(imgs, prompts)):
        r, c = divmod(k, 4)
        x, y = pad + c * (W + pad), pad + r * (H + pad + lab)
        draw.text((x + 2, y), p if lang == "en" else f"{metas[k]['family']} / {metas[k]['phase']}", fill=(230, 230, 230))
        sheet.paste(Image.fromarray((img * 255 + 0.5).astype(np.uint8)), (x, y + lab))
    sheet.save(path, optimize=True)
    return imgs, metas


# ------------------------------------------------------------------------------------------------
def write_model_index(out: Path, defaults, sched_kind):
    import diffusers

    cls, cfg = scheduler_config(sched_kind)
    sched = cls(**cfg)
    sched.save_config(out / "scheduler")
    index = {
        "_class_name": "OnnxStableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", cls.__name__],
        "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "unet": ["diffusers", "OnnxRuntimeModel"],
        "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
        "vae_encoder": ["diffusers", "OnnxRuntimeModel"],
        "cabin": {"steps": defaults["steps"], "guidance": defaults["guidance"], "scheduler": defaults["scheduler"]},
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def finite_json(x):
    """Non-finite floats become null (JSON has no Infinity/NaN; serde_json rejects them)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_json(v) for k, v in x.items() if not (isinstance(v, float) and not math.isfinite(v))}
    if isinstance(x, list):
        return [finite_json(v) for v in x]
    return x


def sanitise_configs(out: Path):
    for p in out.rglob("*.json"):
        text = p.read_text()
        if "Infinity" in text or "NaN" in text:
            p.write_text(json.dumps(finite_json(json.loads(text)), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            log(f"{p.relative_to(out)}: dropped non-finite values")


def folder_size(out: Path):
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def versions():
    import diffusers
    import onnx
    import onnxruntime
    import tokenizers
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}


def adv_text(ae):
    if not ae.get("adversarial_steps"):
        return ""
    return (f" + a patch-discriminator hinge loss (adaptive weight x{ae['adversarial_weight']}) over the last "
            f"{ae['adversarial_steps']} steps")


def write_card(out: Path, info):
    i = info
    ae, un, d = i["ae"], i["unet"], i["defaults"]
    sizes = "\n".join(f"| `{k}` | {v / 2**20:.2f} MiB |" for k, v in i["sizes"].items() if k.endswith(".onnx"))
    gs = ", ".join(f"{g}: family {a['family']:.0%}, phase {a['phase']:.0%}" for g, a in d["guidance_sweep"].items())
    lum = ", ".join(f"{k} {v:.2f}" for k, v in i["sample_luminance"].items())
    fam = ", ".join(f"{k} {v:.0%}" for k, v in i["proxy_on_samples_by_family"].items())
    pha = ", ".join(f"{k} {v:.0%}" for k, v in i["proxy_on_samples_by_phase"].items())
    text = f"""# wallpaper-tiny: cabin's in-house wallpaper model

A small latent text-to-image diffusion model (Stable-Diffusion architecture, diffusers ONNX layout)
trained from scratch on procedurally rendered wallpaper scenes (`onnx/train/scenes.py`): sea,
snowy mountains, starry sky, city skyline, forest, desert, aurora, lake with reflections, rainy city
and cherry blossoms, each at dawn / day / dusk / night, with optional style words (warm, cool,
misty, vivid). Prompts in English or Chinese (e.g. "snowy mountains at dusk", "黄昏的雪山",
"换一张夜晚的极光的壁纸"). No third-party weights or images: everything here was made by the
command below on this repository's code.

## Make it

```
{i['command']}
```

training seed {i['seed']}, data seed {i['data_seed']}, {i['images']} rendered training images,
budget {i['minutes']} min on {i['device']} ({i['threads']} threads); wall clock: training
{i['train_seconds'] / 60:.1f} min, total {i['total_seconds'] / 60:.1f} min. Versions in
`train_info.json` (torch {i['versions']['torch']}, diffusers {i['versions']['diffusers']},
transformers {i['versions']['transformers']}). The run is reproducible in its data, tokenizer and
seeds; with a time budget the number of optimiser steps depends on the machine's speed
(`--ae-steps {ae['steps']} --unet-steps {un['steps']}` replays this run's step counts).

## Parts

| part | what | params |
|---|---|---|
| tokenizer | byte-level BPE, {i['vocab']} tokens, NFKC + lowercase, any input (no unk), `{BOS} … {EOS}`, pad `{PAD}`, max length {MAX_LEN} | – |
| text_encoder | CLIPTextModel, hidden {i['text_dim']}, 3 layers, 4 heads | {i['params']['text_encoder']:,} |
| unet | UNet2DConditionModel {i['unet_channels']}, cross-attention at 8x20, 4x10 and mid, latent {i['latent_channels']}x16x40 | {i['params']['unet']:,} |
| vae | AutoencoderKL x8, {i['latent_channels']} latent channels, {i['ae_channels']}, scaling_factor {i['scaling_factor']:.4f} | enc {i['params']['vae_encoder']:,}, dec {i['params']['vae_decoder']:,} |
| scheduler | cosine (`squaredcos_cap_v2`) 1000 steps, **v_prediction**, trailing spacing | – |

| file | size |
|---|---|
{sizes}

Native size 128x320 (H x W); the engine scales to the display. Recommended defaults
(`model_index.json` → `cabin`): **{d['scheduler']}, {d['steps']} steps, guidance {d['guidance']}**.

## Training

- Autoencoder: {ae['steps']} steps x {i['ae_batch']} random {i['ae_crop']}px crops ({ae['seconds'] / 60:.1f} min,
  {ae['crops_per_s']:.1f} crops/s), edge-weighted L1 + gradient L1 + 1e-5 KL{adv_text(ae)}, posterior noise ramped in;
  validation PSNR {ae['val_psnr_db']:.2f} dB on full 128x320 frames.
- Text encoder + UNet jointly: {un['steps']} steps x {i['batch']} ({un['seconds'] / 60:.1f} min, {un['img_per_s']:.1f} img/s,
  {un['ms_per_step']:.0f} ms/step), AdamW lr {i['lr']}, cosine decay, v-prediction with x0-weight min(SNR, 5) + 1,
  {int(i['cond_drop'] * 100)}% empty captions, EMA {i['ema']}; final loss {un['final_loss']:.4f}.

## Checks (at export)

- onnxruntime vs torch, max |diff|: """ + ", ".join(f"{k} {v:.1e}" for k, v in i["export_diffs"].items()) + f"""
- Step count: mean |image - 100-step DDIM| per candidate: """ + ", ".join(
        f"{k} {v:.3f}" for k, v in d["sweep_mae"].items()) + f"""
- Guidance, adherence by a *proxy* classifier (ridge regression on colour thumbnails and gradient
  energy, trained on renders only; on held-out renders it scores family {i['proxy_on_renders']['family']:.0%},
  phase {i['proxy_on_renders']['phase']:.0%}): {gs}. This is a quick proxy, not the scene classifier
  issue 9 asks for.
- Mean luminance of the sample sheet by phase prompt: {lum}.

## Samples

`samples.png`: every family x phase, English prompts ("snowy mountains at dusk" ...), one seed each,
{d['scheduler']} {d['steps']} steps, guidance {d['guidance']}.{' `samples_zh.png`: the same in Chinese.' if i['samples_zh'] else ''}

Proxy adherence on samples.png (4 images per family, 10 per phase; small numbers, proxy classifier):
family {i['proxy_on_samples']['family']:.0%}, phase {i['proxy_on_samples']['phase']:.0%}; by family: {fam}; by phase: {pha}.

## Quality notes (honest)

- A first model from a {i['minutes']}-minute {'GPU' if 'cuda' in i['device'] else 'CPU'} run; a longer run of the same
  command is planned. The x8 autoencoder with {i['latent_channels']} latent channels bounds the detail (autoencoder PSNR
  {ae['val_psnr_db']:.1f} dB): stars, lit windows and rain streaks come out softer than in the renders.
- The proxy numbers above are only a guide; look at samples.png. The separate scene classifier and the
  1920x720 checks that issue 9 asks for are not done here.
- Generated only at 128x320 and upscaled for the display, so fine texture is soft by design.
- The scenes are synthetic and stylised (flat layered silhouettes); the model cannot draw anything
  outside the ten families, and prompts about other things give one of them.

Licence: made in-house from this repository's code and data generator; MIT OR Apache-2.0, as the repository.
"""
    (out / "MODEL_CARD.md").write_text(text)


# ------------------------------------------------------------------------------------------------
def device_name(dev):
    import torch

    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def main(argv=None):
    args = parse_args(argv)
    command = "onnx/.venv/bin/python onnx/train/train.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = args.out.resolve()
    budget = args.minutes * 60

    import torch

    cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
    dev = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
    procs = max(1, min(os.cpu_count() or 1, 16))
    log(f"device {dev}, torch threads {torch.get_num_threads()}, render processes {procs}; out {out}")

    tmp_tok = Path("/tmp") / f"cabin-tok-{os.getpid()}"
    tok = build_tokenizer(tmp_tok, args.data_seed)
    for probe in ["snowy mountains at dusk", "黄昏的雪山", "换一张夜晚的极光的壁纸", "Ünïcødé 🚗 !?"]:
        e = tok.tok.encode(probe)
        log(f"tokenizer: {probe!r} -> {len(e.ids)} tokens {e.tokens[:12]}")

    n_img = args.images or int(np.clip(args.minutes * (200 if not cuda else 800), 512, 50000))
    t = time.time()
    if not args.export_only:
        imgs, metas = render_set(n_img, args.data_seed, procs)
        val, val_metas = render_set(400, args.data_seed + 1, procs)
        log(f"rendered {len(imgs)} training + {len(val)} validation scenes in {time.time() - t:.0f} s "
            f"({(time.time() - t) / (len(imgs) + len(val)) * procs * 1e3:.0f} ms per image per process)")

        rng = np.random.default_rng(args.seed)
        vae, text_encoder, unet = build_models(args, tok.vocab_size, tok)
        remaining = budget - (time.time() - T0)
        ae_info = train_ae(args, vae, imgs, val[:48], dev, args.ae_frac * remaining, rng)
        t = time.time()
        mean, logvar = encode_all(vae, imgs, dev)
        sf = float(1.0 / (mean.float() + (0.5 * logvar.float()).exp() * torch.randn_like(mean.float())).std())
        log(f"encoded {len(imgs)} latents in {time.time() - t:.0f} s; latent std {1 / sf:.4f} -> scaling_factor {sf:.4f}")
        remaining = budget - (time.time() - T0)
        (te_ema, unet_ema), un_info = train_unet(args, text_encoder, unet, (mean, logvar), metas, tok, sf, dev,
                                                 remaining, rng)
        train_seconds = time.time() - T0
        train_device = device_name(dev)
        size = save_checkpoint({"vae": vae.state_dict(), "te": te_ema.state_dict(), "unet": unet_ema.state_dict(),
                                "sf": sf, "ae": ae_info, "un": un_info, "train_seconds": train_seconds,
                                "images": len(imgs), "command": command, "device": train_device,
                                "threads": torch.get_num_threads(),
                                "args": vars(args) | {"out": str(args.out), "ckpt": str(args.ckpt)}}, args.ckpt)
        log(f"checkpoint {args.ckpt}.part* ({size / 2**20:.1f} MiB)")
        if args.train_only:
            log("done (--train-only)")
            return
    else:
        ck = load_checkpoint(args.ckpt)
        command = ck.get("command", command) + " && " + command
        train_device = ck.get("device", device_name(dev))
        train_threads = ck.get("threads", args.threads)
        for k in ("ae_channels", "ae_layers", "unet_channels", "text_dim", "seed", "data_seed", "minutes", "batch",
                  "lr", "ema", "cond_drop", "ae_batch", "ae_crop"):
            setattr(args, k, ck["args"][k])
        args.latent_channels = ck["args"].get("latent_channels", 4)
        vae, te_ema, unet_ema = build_models(args, tok.vocab_size, tok)
        vae.load_state_dict(ck["vae"])
        te_ema.load_state_dict(ck["te"])
        unet_ema.load_state_dict(ck["unet"])
        sf, ae_info, un_info, train_seconds = ck["sf"], ck["ae"], ck["un"], ck["train_seconds"]
        n_img = ck["images"]
        imgs, metas = render_set(min(n_img, 2000), args.data_seed, procs)
        val, val_metas = render_set(400, args.data_seed + 1, procs)

    # ---- export ------------------------------------------------------------------------------
    vae.register_to_config(scaling_factor=sf)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(tmp_tok, out / "tokenizer")
    shutil.rmtree(tmp_tok, ignore_errors=True)
    tok = load_tokenizer(out / "tokenizer")
    torch.set_num_threads(args.threads if not cuda else min(8, os.cpu_count() or 1))
    vae, te_ema, unet_ema = (m.cpu().float().eval() for m in (vae, te_ema, unet_ema))
    export(out, te_ema, unet_ema, vae, tok)
    diffs = check_export(out, te_ema, unet_ema, vae, tok, sf)

    proxy = Proxy(imgs[:6000], metas[:6000])
    proxy_acc = proxy.accuracy(val, val_metas)
    log(f"proxy classifier on held-out renders: family {proxy_acc['family']:.2f}, phase {proxy_acc['phase']:.2f}")
    pipe = OrtPipe(out, tok, sf)
    defaults = choose_defaults(pipe, proxy, args)
    log(f"defaults: {defaults['scheduler']}, {defaults['steps']} steps, guidance {defaults['guidance']}")
    write_model_index(out, defaults, defaults["scheduler"])
    t = time.time()
    s_imgs, s_metas = sample_sheet(pipe, out / "samples.png", "en", defaults["scheduler"], defaults["steps"],
                                   defaults["guidance"])
    sample_sheet(pipe, out / "samples_zh.png", "zh", defaults["scheduler"], defaults["steps"], defaults["guidance"])
    lum = {p: float(np.mean([scenes.luminance(im).mean() for im, m in zip(s_imgs, s_metas) if m["phase"] == p]))
           for p in scenes.PHASES}
    acc = proxy.accuracy(s_imgs, s_metas)
    pred = proxy.predict(s_imgs)
    per_family = {f: float(np.mean([scenes.FAMILIES[pf] == f for pf, m in zip(pred["family"], s_metas)
                                    if m["family"] == f])) for f in scenes.FAMILIES}
    per_phase = {p: float(np.mean([scenes.PHASES[pp] == p for pp, m in zip(pred["phase"], s_metas)
                                   if m["phase"] == p])) for p in scenes.PHASES}
    log(f"sample sheets in {time.time() - t:.0f} s; proxy adherence on samples.png: family {acc['family']:.2f}, "
        f"phase {acc['phase']:.2f}; mean luminance by phase " + ", ".join(f"{k} {v:.2f}" for k, v in lum.items()))

    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    info = {
        "command": command, "seed": args.seed, "data_seed": args.data_seed, "minutes": args.minutes,
        "images": n_img, "device": train_device,
        "threads": torch.get_num_threads() if not args.export_only else train_threads, "train_seconds": round(train_seconds, 1),
        "total_seconds": None, "versions": versions(), "vocab": tok.vocab_size, "text_dim": args.text_dim,
        "ae_channels": args.ae_channels, "unet_channels": args.unet_channels, "ae_batch": args.ae_batch,
        "ae_crop": args.ae_crop, "latent_channels": args.latent_channels, "batch": args.batch, "lr": args.lr, "ema": args.ema, "cond_drop": args.cond_drop,
        "params": {"text_encoder": nparams(te_ema), "unet": nparams(unet_ema),
                   "vae_encoder": nparams(vae.encoder) + nparams(vae.quant_conv),
                   "vae_decoder": nparams(vae.decoder) + nparams(vae.post_quant_conv)},
        "scaling_factor": sf, "ae": ae_info, "unet": un_info, "export_diffs": diffs, "defaults": defaults,
        "proxy_on_renders": proxy_acc, "proxy_on_samples": acc,
        "proxy_on_samples_by_family": per_family, "proxy_on_samples_by_phase": per_phase, "sample_luminance": lum, "sizes": sizes,
    }
    info["total_seconds"] = round(time.time() - T0, 1)
    sanitise_configs(out)
    if folder_size(out) > 39.5e6:
        (out / "samples_zh.png").unlink()
        log("dropped samples_zh.png to stay under 40 MB")
    info["samples_zh"] = (out / "samples_zh.png").exists()
    write_card(out, info)
    info["sizes"] = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    (out / "train_info.json").write_text(json.dumps(finite_json(info), indent=2, ensure_ascii=False) + "\n")
    total = folder_size(out)
    log(f"wrote {out}: {total / 2**20:.2f} MiB in {len(info['sizes']) + 1} files" +
        ("" if total <= 40e6 else "  ** OVER THE 40 MB LIMIT **"))
    log("done")


if __name__ == "__main__":
    main()
