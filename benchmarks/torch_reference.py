"""PyTorch twin of the DFM (JSD-GAN, ``--anneal none``) training step, for speed comparisons only (issue 8).

The networks are ``chainer_va.nets``' at a given ``width`` (SPEC section 4, supplement Table S1), with
Chainer's layer names, parameter counts, BN eps (2e-5) and decay (momentum 0.1) and starting weights
(N(0, 0.02) for G and D, LeCun normal for the denoiser, zero biases); Adam has lr 1e-4, betas 0.5/0.9.
:class:`DFMStep` is one step of ``chainer_va.updaters.JSDUpdater`` with ``--anneal none`` in the same
structure and order (two D forwards, G and D updated from one forward pass, the same host-drawn
latents and denoiser noise, one NaN check per step; see the comments in :meth:`DFMStep.__call__`).
``sampling="device"`` draws z and eps with torch on the device instead (PyTorch's usual way).

Never imported by the package or by tests that run without torch; ``benchmarks/compare_torch.py`` uses
it when torch is importable. It imports ``chainer_va.latent`` (and so Chainer) for the host-side random
sources. How it mirrors the Chainer step: docs/status/gan.md, "Speed".
"""
from __future__ import annotations

import math

import numpy
import torch

from chainer_va.latent import LatentSampler, NoiseSource
from torch import nn
from torch.nn import functional as F

LATENT_DIM = 128
LEAK = 0.2
DFM_WEIGHT = 0.03
DENOISER_SIGMA = 1.0
DENOISER_HIDDEN = 2048
DENOISER_LAYERS = 9
WEIGHT_SCALE = 0.02
BN_EPS = 2e-5  # chainer.links.BatchNormalization's default
BN_MOMENTUM = 0.1  # Chainer's decay 0.9


def scaled(n: int, width: float) -> int:
    """``chainer_va.nets.scaled``: ``n`` times the width multiplier, rounded, at least 1."""
    return max(1, int(round(n * width)))


def _normal_(module: nn.Module, std: float) -> nn.Module:
    nn.init.normal_(module.weight, 0.0, std)
    nn.init.zeros_(module.bias)
    return module


def _bn(kind, n: int, **kwargs):
    return kind(n, eps=BN_EPS, momentum=BN_MOMENTUM, **kwargs)


class BatchNormBeta(nn.BatchNorm2d):
    """BN without gamma (Chainer's ``BatchNormalization(use_gamma=False)``): beta is the only parameter."""

    def __init__(self, n: int):
        super().__init__(n, eps=BN_EPS, momentum=BN_MOMENTUM, affine=False)
        self.bias = nn.Parameter(torch.zeros(n))


class Generator(nn.Module):
    """``chainer_va.nets.Generator`` (32x32): Linear + BN + ReLU, 3 x (deconv 4x4/s2 + BN + ReLU), deconv 3x3 + tanh."""

    def __init__(self, width: float = 1.0, out_channels: int = 3):
        super().__init__()
        self.ch = scaled(512, width)
        self.l0 = _normal_(nn.Linear(LATENT_DIM, 16 * self.ch), WEIGHT_SCALE)
        self.bn0 = _bn(nn.BatchNorm1d, 16 * self.ch)
        c_in = self.ch
        self.n_hidden = 3
        for i in range(1, self.n_hidden + 1):
            c_out = scaled(512 // 2 ** i, width)
            setattr(self, "dc{}".format(i), _normal_(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), WEIGHT_SCALE))
            setattr(self, "bn{}".format(i), _bn(nn.BatchNorm2d, c_out))
            c_in = c_out
        self.out = _normal_(nn.ConvTranspose2d(c_in, out_channels, 3, 1, 1), WEIGHT_SCALE)

    def forward(self, z):
        h = F.relu(self.bn0(self.l0(z))).view(z.shape[0], self.ch, 4, 4)
        for i in range(1, self.n_hidden + 1):
            h = F.relu(getattr(self, "bn{}".format(i))(getattr(self, "dc{}".format(i))(h)))
        return torch.tanh(self.out(h))


class Discriminator(nn.Module):
    """``chainer_va.nets.DFMDiscriminator`` (32x32): x -> (feature (B, 512w, 2, 2), logit (B, 1))."""

    def __init__(self, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        self.c0 = _normal_(nn.Conv2d(in_channels, scaled(32, width), 3, 1, 1), WEIGHT_SCALE)
        c_in = scaled(32, width)
        self.n_hidden = 3
        for i, n in enumerate((64, 128, 256), start=1):
            c_out = scaled(n, width)
            setattr(self, "c{}".format(i), _normal_(nn.Conv2d(c_in, c_out, 4, 2, 1), WEIGHT_SCALE))
            setattr(self, "bn{}".format(i), _bn(nn.BatchNorm2d, c_out))
            c_in = c_out
        top = scaled(512, width)
        self.feature_shape = (top, 2, 2)
        self.c_feature = _normal_(nn.Conv2d(c_in, top, 4, 2, 1), WEIGHT_SCALE)
        self.bn_feature = BatchNormBeta(top)
        self.l_out = _normal_(nn.Linear(top * 4, 1), WEIGHT_SCALE)

    def forward(self, x):
        h = F.leaky_relu(self.c0(x), LEAK)
        for i in range(1, self.n_hidden + 1):
            h = F.leaky_relu(getattr(self, "bn{}".format(i))(getattr(self, "c{}".format(i))(h)), LEAK)
        feature = self.bn_feature(self.c_feature(h))
        return feature, self.l_out(F.leaky_relu(feature, LEAK).flatten(1))


class Denoiser(nn.Module):
    """``chainer_va.nets.Denoiser``: ``n_layers`` x (Linear ``scaled(2048, width)``, BN, lReLU), Linear back."""

    def __init__(self, feature_shape, width: float = 1.0, hidden: int = DENOISER_HIDDEN,
                 n_layers: int = DENOISER_LAYERS):
        super().__init__()
        self.feature_shape = tuple(feature_shape)
        size = math.prod(self.feature_shape)
        units = scaled(hidden, width)
        self.n_layers = n_layers
        n_in = size
        for i in range(n_layers):
            setattr(self, "l{}".format(i), _normal_(nn.Linear(n_in, units), 1.0 / math.sqrt(n_in)))
            setattr(self, "bn{}".format(i), _bn(nn.BatchNorm1d, units))
            n_in = units
        self.l_out = _normal_(nn.Linear(n_in, size), 1.0 / math.sqrt(n_in))

    def forward(self, f):
        h = f.flatten(1)
        for i in range(self.n_layers):
            h = F.leaky_relu(getattr(self, "bn{}".format(i))(getattr(self, "l{}".format(i))(h)), LEAK)
        return self.l_out(h).view(f.shape[0], *self.feature_shape)


def count_parameters(module: nn.Module) -> int:
    """Trainable scalars (BN running statistics excluded), as ``chainer_va.nets.count_parameters``."""
    return sum(p.numel() for p in module.parameters())


_CHAINER_NAMES = {"W": "weight", "b": "bias", "gamma": "weight", "beta": "bias", "avg_mean": "running_mean",
                  "avg_var": "running_var"}


def load_chainer_weights(module: nn.Module, link) -> None:
    """Copy a Chainer link's parameters and BN statistics into its twin (the layers have the same names)."""
    tensors = dict(module.named_parameters())
    tensors.update(module.named_buffers())
    arrays = {path: p.array for path, p in link.namedparams()}
    for path, sublink in link.namedlinks():
        for name in sublink._persistent:  # BN's running statistics (and its counter N)
            arrays[path.rstrip("/") + "/" + name] = getattr(sublink, name)
    copied = set()
    for path, array in arrays.items():
        *layers, name = path.strip("/").split("/")
        if name not in _CHAINER_NAMES:
            continue  # e.g. BN's N counter
        key = ".".join(layers + [_CHAINER_NAMES[name]])
        target = tensors[key]
        with torch.no_grad():
            target.copy_(torch.from_numpy(numpy.asarray(array)).reshape(target.shape))
        copied.add(key)
    missing = sorted(k for k in dict(module.named_parameters()) if k not in copied)
    if missing:
        raise KeyError("no Chainer array for {}".format(missing))


def _adam(module: nn.Module, lr: float = 1e-4, betas=(0.5, 0.9)):
    return torch.optim.Adam(module.parameters(), lr=lr, betas=betas)


def use_full_fp32() -> None:
    """Full fp32 in cuDNN convolutions and cuBLAS matmuls (TF32 off), as CuPy computes and as the
    PLATFORM measurement (3.0x) was made; torch enables TF32 for cuDNN convolutions by default."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def precision_settings() -> dict:
    """The settings that decide the twin's arithmetic on a GPU (printed by compare_torch)."""
    cudnn = torch.backends.cudnn
    return {"torch": torch.__version__, "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.allow_tf32": cudnn.allow_tf32, "cudnn.benchmark": cudnn.benchmark,
            "cudnn.deterministic": cudnn.deterministic, "cudnn.enabled": cudnn.enabled,
            "cudnn.version": cudnn.version() if cudnn.is_available() else None}


class NonFiniteLoss(FloatingPointError):
    pass


class DFMStep:
    """One DFM step (``jsd`` + ``none``) as ``chainer_va.updaters.OneStepUpdater.update_core`` runs it.

    ``images``: the host data set (N, 3, 32, 32) float32 in [-1, 1] (default: ``4 * batchsize`` uniform random
    images). ``real_batch``, ``latent`` and ``noise`` are attributes so that a test can feed Chainer's inputs.
    """

    def __init__(self, width: float = 1.0, batchsize: int = 64, device: str = "cpu", images=None,
                 seed: int = 0, sampling: str = "host", noise_prefetch: bool = True):
        if sampling not in ("host", "device"):
            raise ValueError("sampling must be 'host' or 'device', got {!r}".format(sampling))
        use_full_fp32()
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.gen = Generator(width).to(self.device)
        self.dis = Discriminator(width).to(self.device)
        self.denoiser = Denoiser(self.dis.feature_shape, width).to(self.device)
        self.opt_gen, self.opt_dis, self.opt_den = _adam(self.gen), _adam(self.dis), _adam(self.denoiser)
        self.batchsize = batchsize
        self.sampling = sampling
        rng = numpy.random.RandomState(seed)
        if images is None:
            images = rng.uniform(-1, 1, (4 * batchsize, 3, 32, 32)).astype(numpy.float32)
        self.images = images
        self.order_rng = numpy.random.RandomState(seed + 1)
        self.latent = LatentSampler(LATENT_DIM, seed + 2)
        self.noise = NoiseSource(seed + 3, prefetch=noise_prefetch)
        self._order, self._position = None, 0
        self.d_forwards = 0  # discriminator forward calls (for tests)
        self.losses = None

    def real_batch(self) -> numpy.ndarray:
        """The next batch of a shuffled epoch order (Chainer's SerialIterator)."""
        if self._order is None or self._position + self.batchsize > len(self._order):
            self._order, self._position = self.order_rng.permutation(len(self.images)), 0
        index = self._order[self._position:self._position + self.batchsize]
        self._position += self.batchsize
        return self.images[index]

    def _send(self, array: numpy.ndarray):
        return torch.from_numpy(numpy.ascontiguousarray(array)).to(self.device)

    def _latent(self, n: int):
        if self.sampling == "device":
            return torch.rand(n, LATENT_DIM, device=self.device) * 2 - 1
        return self._send(self.latent(n))

    def _noise(self, like):
        if self.sampling == "device":
            return torch.randn_like(like)
        return self._send(self.noise.normal(tuple(like.shape)))

    def _dis(self, x):
        self.d_forwards += 1
        return self.dis(x)

    def __call__(self) -> dict:
        x_real = self._send(self.real_batch())  # no gradient asked: D's first layer skips its data gradient
        f_real, y_real = self._dis(x_real)
        x_fake = self.gen(self._latent(len(x_real)))
        xf = x_fake.detach().requires_grad_()  # the G loss reaches G through xf.grad, as Chainer's does
        f_fake, y_fake = self._dis(xf)

        loss_dis = F.softplus(-y_real).mean() + F.softplus(y_fake).mean()
        loss_adv = F.softplus(-y_fake).mean()
        self.denoiser.eval()  # sg r(f_fake): inference mode, no graph
        with torch.no_grad():
            target = self.denoiser(f_fake.detach())
        self.denoiser.train()
        loss_dfm = DFM_WEIGHT * ((f_fake - target) ** 2).mean()
        loss_gen = loss_adv + loss_dfm
        clean = f_real.detach()
        loss_den = ((self.denoiser(clean + DENOISER_SIGMA * self._noise(clean)) - clean) ** 2).mean()

        losses = dict(loss_dis=loss_dis, loss_gen=loss_gen, loss_gen_adv=loss_adv, loss_dfm=loss_dfm,
                      loss_denoiser_data=loss_den)
        values = torch.stack([v.detach() for v in losses.values()]).cpu().tolist()  # one transfer
        for name, value in zip(losses, values):
            if not math.isfinite(value):
                raise NonFiniteLoss("{} is {}".format(name, value))

        self.opt_den.zero_grad(set_to_none=True)
        loss_den.backward()
        self.opt_den.step()
        self.opt_gen.zero_grad(set_to_none=True)
        # into xf only (no gradient for D's parameters, as Chainer's optimize); D's graph is needed again
        loss_gen.backward(inputs=[xf], retain_graph=True)
        x_fake.backward(xf.grad)
        self.opt_gen.step()
        self.opt_dis.zero_grad(set_to_none=True)
        loss_dis.backward(inputs=list(self.dis.parameters()))
        self.opt_dis.step()
        self.noise.step_done()  # with prefetch, it starts drawing the next step's noise
        self.losses = dict(zip(losses, values))
        return self.losses
