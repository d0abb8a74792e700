"""PyTorch twin of the DFM / WGAN-GP training step, for speed comparisons only (issue 8).

Same layer shapes as ``chainer_va.nets`` at a given ``width`` (SPEC section 4, supplement Table S1):
DCGAN generator, DFM discriminator returning (feature, logit), the 10-layer feature denoiser, Adam
(lr 1e-4, betas 0.5/0.9). It is never imported by the package or the tests; ``benchmarks/compare_torch.py``
uses it when torch is importable, so that the Chainer/PyTorch ratio is measured in one run on one device.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

LATENT_DIM = 128
LEAK = 0.2
DFM_WEIGHT = 0.03
DENOISER_SIGMA = 1.0
GP_WEIGHT = 10.0


def _c(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


class Generator(nn.Module):
    def __init__(self, width: float = 1.0, out_channels: int = 3):
        super().__init__()
        self.ch = _c(512, width)
        self.l0 = nn.Linear(LATENT_DIM, 4 * 4 * self.ch)
        self.bn0 = nn.BatchNorm1d(4 * 4 * self.ch)
        chans = [self.ch, _c(256, width), _c(128, width), _c(64, width)]
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, 2, 1) for a, b in zip(chans, chans[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm2d(b) for b in chans[1:])
        self.out = nn.ConvTranspose2d(chans[-1], out_channels, 3, 1, 1)

    def forward(self, z):
        h = F.relu(self.bn0(self.l0(z))).view(z.shape[0], self.ch, 4, 4)
        for deconv, bn in zip(self.deconvs, self.bns):
            h = F.relu(bn(deconv(h)))
        return torch.tanh(self.out(h))


class Discriminator(nn.Module):
    def __init__(self, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        chans = [_c(32, width), _c(64, width), _c(128, width), _c(256, width), _c(512, width)]
        self.c0 = nn.Conv2d(in_channels, chans[0], 3, 1, 1)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, 2, 1) for a, b in zip(chans, chans[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm2d(b) for b in chans[1:-1])
        self.bn_feature = nn.BatchNorm2d(chans[-1], affine=False)
        self.feature_beta = nn.Parameter(torch.zeros(chans[-1]))  # BN "without gamma": beta only
        self.linear = nn.Linear(chans[-1] * 4, 1)

    def forward(self, x):
        h = F.leaky_relu(self.c0(x), LEAK)
        for conv, bn in zip(self.convs[:-1], self.bns):
            h = F.leaky_relu(bn(conv(h)), LEAK)
        feature = self.bn_feature(self.convs[-1](h)) + self.feature_beta[None, :, None, None]
        logit = self.linear(F.leaky_relu(feature, LEAK).flatten(1))
        return feature, logit


class Denoiser(nn.Module):
    def __init__(self, dim: int = 2048, hidden_layers: int = 9):
        super().__init__()
        self.hidden = nn.ModuleList(nn.Linear(dim, dim) for _ in range(hidden_layers))
        self.bns = nn.ModuleList(nn.BatchNorm1d(dim) for _ in range(hidden_layers))
        self.out = nn.Linear(dim, dim)

    def forward(self, f):
        h = f.flatten(1)
        for lin, bn in zip(self.hidden, self.bns):
            h = F.leaky_relu(bn(lin(h)), LEAK)
        return self.out(h).view_as(f)


def _adam(module: nn.Module, lr: float = 1e-4, betas=(0.5, 0.9)):
    return torch.optim.Adam(module.parameters(), lr=lr, betas=betas)


def use_full_fp32() -> None:
    """Full fp32 in cuDNN convolutions and cuBLAS matmuls (TF32 off), as CuPy computes and as the
    PLATFORM measurement (3.0x) was made; torch enables TF32 for cuDNN convolutions by default."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


class DFMStep:
    """One DFM (JSD-GAN) iteration: discriminator, generator (with the denoiser feature term) and denoiser."""

    def __init__(self, width: float = 1.0, batchsize: int = 64, device: str = "cpu", penalty: bool = False):
        use_full_fp32()
        self.device = torch.device(device)
        self.gen = Generator(width).to(self.device)
        self.dis = Discriminator(width).to(self.device)
        self.denoiser = Denoiser(_c(512, width) * 4).to(self.device)
        self.opts = [_adam(self.gen), _adam(self.dis), _adam(self.denoiser)]
        self.batchsize = batchsize
        self.penalty = penalty
        self.x_real = torch.rand(batchsize, 3, 32, 32, device=self.device) * 2 - 1

    def __call__(self):
        opt_g, opt_d, opt_r = self.opts
        z = torch.rand(self.batchsize, LATENT_DIM, device=self.device) * 2 - 1
        x_fake = self.gen(z)
        f_real, y_real = self.dis(self.x_real)
        f_fake, y_fake = self.dis(x_fake.detach())
        loss_d = F.softplus(-y_real).mean() + F.softplus(y_fake).mean()
        if self.penalty:
            u = torch.rand(self.batchsize, 1, 1, 1, device=self.device)
            x_hat = (u * self.x_real + (1 - u) * x_fake.detach()).requires_grad_(True)
            _, y_hat = self.dis(x_hat)
            g, = torch.autograd.grad(y_hat.sum(), x_hat, create_graph=True)
            loss_d = loss_d + GP_WEIGHT * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        f_fake_g, y_fake_g = self.dis(x_fake)
        self.denoiser.eval()
        with torch.no_grad():
            target = self.denoiser(f_fake_g.detach())
        self.denoiser.train()
        loss_g = F.softplus(-y_fake_g).mean() + DFM_WEIGHT * ((f_fake_g - target) ** 2).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        clean = f_real.detach()
        loss_r = ((self.denoiser(clean + DENOISER_SIGMA * torch.randn_like(clean)) - clean) ** 2).mean()
        opt_r.zero_grad(set_to_none=True)
        loss_r.backward()
        opt_r.step()
        return float(loss_d.detach()), float(loss_g.detach()), float(loss_r.detach())
