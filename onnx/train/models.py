"""The wallpaper model's networks that cabin defines itself (torch), shaped to train on 2 CPU cores.

Autoencoder (x8, `LATENT_CHANNELS` channels): the work runs at 1/4 and 1/8 of the picture's size with
wide channels, where a CPU computes efficiently; full resolution is reached by a patch embedding on
the way in (a 4x4 stride-4 convolution) and a non-overlapping 4x4 transposed convolution plus one
thin 3x3 convolution on the way out. No normalisation layers: every output pixel depends only on
its neighbourhood, so training on crops and running on whole frames agree, and the picture's edges
are nothing special (the 0.2 decoder's GroupNorm over whole frames is a likely source of its edge
spot).

The ONNX interface is diffusers' AutoencoderKL one, which the Rust engine reads:
  vae_encoder: sample [B,3,H,W] in -1..1  ->  latent_parameters [B,2C,H/8,W/8] (mean, logvar)
  vae_decoder: latent_sample [B,C,H/8,W/8] ->  sample [B,3,H,W]
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

LATENT_CHANNELS = 8


class PixelNorm(nn.Module):
    """RMS norm over channels at each pixel, with a learned gain: it keeps activations bounded (a
    net without any norm diverged in training) while staying local, unlike GroupNorm's whole-frame
    statistics."""

    def __init__(self, c: int):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-6) * self.gain


class ResBlock(nn.Module):
    """x + conv(silu(conv(silu(norm(x))))); the second conv starts at zero so a new block is the identity."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = PixelNorm(c)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x):
        return x + self.conv2(F.silu(self.conv1(F.silu(self.norm(x)))))


class Encoder(nn.Module):
    def __init__(self, latent=LATENT_CHANNELS, c1=64, c2=128, blocks=(1, 2)):
        super().__init__()
        self.patch = nn.Conv2d(3, c1, 4, stride=4)  # 1/4 size: each 4x4 patch embedded at once
        self.res1 = nn.Sequential(*[ResBlock(c1) for _ in range(blocks[0])])
        self.down = nn.Conv2d(c1, c2, 2, stride=2)  # 1/8
        self.res2 = nn.Sequential(*[ResBlock(c2) for _ in range(blocks[1])])
        self.norm = PixelNorm(c2)
        self.out = nn.Conv2d(c2, 2 * latent, 3, padding=1)

    def forward(self, x):
        h = self.res2(self.down(self.res1(self.patch(x))))
        return self.out(F.silu(self.norm(h)))  # mean and logvar, concatenated on channels


class Decoder(nn.Module):
    def __init__(self, latent=LATENT_CHANNELS, c2=128, c1=64, c0=16, blocks=(3, 3)):
        super().__init__()
        self.inp = nn.Conv2d(latent, c2, 3, padding=1)
        self.res2 = nn.Sequential(*[ResBlock(c2) for _ in range(blocks[0])])
        self.norm2 = PixelNorm(c2)
        self.up2 = nn.ConvTranspose2d(c2, c1, 2, stride=2)  # 1/8 -> 1/4
        self.res1 = nn.Sequential(*[ResBlock(c1) for _ in range(blocks[1])])
        self.norm1 = PixelNorm(c1)
        self.up4 = nn.ConvTranspose2d(c1, c0, 4, stride=4)  # 1/4 -> full: a learned 4x4 patch per cell
        self.out = nn.Conv2d(c0, 3, 3, padding=1)  # blends across patch seams

    def forward(self, z):
        h = self.res1(self.up2(self.norm2(self.res2(self.inp(z)))))
        return self.out(F.silu(self.up4(F.silu(self.norm1(h)))))


class Autoencoder(nn.Module):
    def __init__(self, latent=LATENT_CHANNELS):
        super().__init__()
        self.latent = latent
        self.encoder = Encoder(latent)
        self.decoder = Decoder(latent)

    def encode(self, x):
        """Posterior mean and log-variance; a variance above 1 is never useful and can blow training up."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 0.0)

    def decode(self, z):
        return self.decoder(z)


class Upscaler(nn.Module):
    """The display stage: a decoded picture [B,3,h,w] in -1..1 -> [B,3,s*h,s*w] (s = `scale`).

    A fixed bilinear path carries the picture; the learned path adds what bilinear cannot: crisp
    edges, and the detail the autoencoder blurred. Its features live at half the input size; one
    overlapping transposed convolution (kernel 2s, stride s) writes the full-size residual, so
    neighbouring s x s patches blend instead of showing seams. ONNX ops: Conv, ConvTranspose, Pad
    (edge), Slice, Sigmoid, Mul, Add.
    """

    def __init__(self, scale=6, c=64, blocks=3, c_up=32):
        super().__init__()
        self.scale = scale
        self.down = nn.Conv2d(3, c, 2, stride=2)
        self.res = nn.Sequential(*[ResBlock(c) for _ in range(blocks)])
        self.norm = PixelNorm(c)
        self.up2 = nn.ConvTranspose2d(c, c_up, 2, stride=2)
        self.up = nn.ConvTranspose2d(c_up, 3, 2 * scale, stride=scale, padding=scale // 2)
        nn.init.zeros_(self.up.weight)  # starts as plain bilinear
        nn.init.zeros_(self.up.bias)
        # Bilinear x s as a transposed convolution with a tent kernel, channel by channel.
        t = (torch.arange(2 * scale, dtype=torch.float32) + 0.5) / scale - 1.0
        tent = (1 - t.abs()).clamp(min=0)
        kernel = tent[:, None] * tent[None, :]
        self.register_buffer("bilinear", torch.eye(3)[:, :, None, None] * kernel, persistent=False)

    def forward(self, x):
        s = self.scale
        # Edge-padded by one pixel so the picture's border is interpolated, not faded to black.
        base = F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.bilinear, stride=s,
                                  padding=s // 2)[..., s:-s, s:-s]
        h = self.norm(self.res(self.down(x)))
        return base + self.up(F.silu(self.up2(F.silu(h))))


def patch_discriminator():
    """A PatchGAN critic (receptive field ~30 px): judges local texture, not the whole scene."""
    act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
    return nn.Sequential(nn.Conv2d(3, 32, 4, 2, 1), act(),
                         nn.Conv2d(32, 64, 4, 2, 1), nn.GroupNorm(8, 64), act(),
                         nn.Conv2d(64, 128, 4, 2, 1), nn.GroupNorm(8, 128), act(),
                         nn.Conv2d(128, 1, 3, 1, 1))


def adversarial_loss(disc, fake, rec_loss, last_weight, weight, autocast=None):
    """Hinge-GAN generator term with the adaptive weight of taming-transformers / SD's VAE: the
    critic's gradient at the generator's last layer is scaled to the reconstruction's, times
    `weight`. Returns (weighted loss to add, the scale used)."""
    with autocast or torch.autocast("cpu", enabled=False):
        g_adv = -disc(fake).float().mean()
    g_rec = torch.autograd.grad(rec_loss, last_weight, retain_graph=True)[0].norm()
    g_gan = torch.autograd.grad(g_adv, last_weight, retain_graph=True)[0].norm()
    lam = (g_rec / (g_gan + 1e-4)).clamp(0, 1e4).detach() * weight
    return lam * g_adv, lam


def critic_step(disc, opt_d, real, fake, autocast=None):
    """One hinge-loss step of the critic on a real and a (detached) generated batch."""
    with autocast or torch.autocast("cpu", enabled=False):
        d_loss = torch.relu(1 - disc(real).float()).mean() + torch.relu(1 + disc(fake.detach()).float()).mean()
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    return d_loss


def nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
