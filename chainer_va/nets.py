"""Networks of the annealed GANs (supplement Tables S1 and S2; SPEC section 4).

* :class:`Generator`: the DCGAN generator of chainer-gan-lib, z in R^128 ~ U(-1, 1).
  32x32 (Table S1): Linear 128 -> 4*4*512, BN, ReLU; deconv 4x4/s2 512->256->128->64 (BN, ReLU);
  deconv 3x3/s1 64->C; tanh. 128x128 (Table S2): the same trunk with one more 4x4/s2 deconv stage per
  doubling of the resolution (512->256->128->64->32, BN, ReLU) and a last 4x4/s2 deconv 32->C; tanh.
  Departures from Table S1 as printed ("MLP output 2048", a last "3x3 deconv. 3 ReLU, BN"), taken from
  chainer-gan-lib's DFM generator: the first layer outputs 4*4*512 = 8192, and the last is tanh without
  BN. The printed table does not add up (2x2 and three stride-2 deconvs give 16x16; docs/SPEC.md section 4).
* :class:`DFMDiscriminator`: returns ``(feature, logit)``; the feature f is the pre-activation of the
  last conv after a gamma-free BN, shape (B, 512, 2, 2); logit = Linear(lReLU(f)).
  32x32: conv3x3/s1 C->32 lReLU; conv4x4/s2 32->64->128->256 (BN, lReLU); conv4x4/s2 256->512, BN.
  128x128: conv4x4/s2 C->16 lReLU; conv4x4/s2 16->32->64->128->256 (BN, lReLU); conv4x4/s2 256->512, BN.
  The tables print "BN" on the first conv too; the released DFM code has none there, and neither do we.
* :class:`Denoiser`: the DFM denoiser, an MLP on the flattened feature: 9 x (Linear 2048, BN, lReLU),
  then Linear back to the feature size, reshaped to the feature's shape.
* :class:`WGANCritic`: chainer-gan-lib's WGAN-GP critic without normalisation (7 convs + Linear 8192->1).
  Design choice (docs/extending.md): it returns ``(feature, logit)`` like the DFM discriminator so that
  annealing terms work unchanged; its feature is the pre-activation of its last conv (B, 512, 4, 4). For
  128x128 two 4x4/s2 convs (C->16->32) are put in front [inferred: the paper gives no 128x128 critic].

Not in the paper: ``--arch mlp`` (:data:`ARCHS`), small fully connected twins of these networks for the CPU
study (docs/table1_study/README.md: at CPU size the Table S1 networks do not reach the study's quality bar
within its time budget); the MLP discriminator's feature (B, 2048) has the Table S1 feature's size.

Every constructor takes ``width`` (default 1.0) multiplying every channel count and hidden size, and
``in_channels``/``out_channels`` (1 or 3); the defaults reproduce the paper's sizes exactly. Weights are
initialised N(0, 0.02) (chainer-gan-lib); the denoiser keeps Chainer's default (LeCun normal)
initialisation as the released DFM code does.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import chainer.functions as F
import chainer.links as L

from chainer_va.fused_layers import fused_head, fused_layer

__all__ = ["scaled", "count_parameters", "init_rng", "Generator", "DFMDiscriminator", "Denoiser", "WGANCritic", "SUPPORTED_SIZES",
           "LATENT_DIM", "WEIGHT_SCALE", "LEAKY_SLOPE", "MLPGenerator", "MLPDiscriminator", "MLPCritic", "ARCHS",
           "generator_class", "discriminator_class"]

LATENT_DIM = 128  # z in R^128 (DCGAN generator of chainer-gan-lib)
WEIGHT_SCALE = 0.02  # N(0, 0.02) initialisation of G and D (chainer-gan-lib)
LEAKY_SLOPE = 0.2  # lReLU slope
BOTTOM_WIDTH = 4  # the generator starts from 4x4
BASE_CHANNELS = 512  # deepest channel count of G and D
DENOISER_HIDDEN = 2048  # DFM denoiser hidden units
DENOISER_LAYERS = 9  # DFM denoiser hidden layers
SUPPORTED_SIZES = (32, 128)  # Table S1 (CIFAR-10, 32x32) and Table S2 (CelebA, 128x128)
# --arch mlp: D's hidden units, input side first (G's are the reverse); the feature (the second) has
# the Table S1 feature's size, 2048 x width, so the DFM denoiser keeps its paper-to-feature proportion
MLP_HIDDEN = (4096, 2048)


def scaled(n: int, width: float) -> int:
    """``n`` channels times the width multiplier, rounded, at least 1."""
    if not (width > 0 and math.isfinite(width)):
        raise ValueError("width must be a positive number, got {!r}".format(width))
    return max(1, int(round(n * width)))


def _check_size(size: int) -> int:
    if size not in SUPPORTED_SIZES:
        raise ValueError("image size {!r} is not supported: the networks exist for {} (Tables S1, S2); "
                         "resize the data to one of them".format(size, SUPPORTED_SIZES))
    return size


def _check_channels(channels: int, what: str) -> int:
    if channels not in (1, 3):
        raise ValueError("{} must be 1 (grey) or 3 (RGB), got {!r}".format(what, channels))
    return channels


def init_rng(rng: Optional[numpy.random.RandomState] = None) -> numpy.random.RandomState:
    """The random state a network draws its initial weights from: ``rng``, or a fresh unseeded one.

    Chainer's initialisers draw from numpy's global RNG when given none; every network here takes an
    ``rng`` instead, so building one neither depends on nor changes the global state.
    """
    return numpy.random.RandomState() if rng is None else rng


def _set_common(link: chainer.Chain, channels_name: str, channels: int, size: int, width: float,
                weight_scale: float, rng: Optional[numpy.random.RandomState]) -> chainer.Initializer:
    """Check and set a network's channels (as ``channels_name``), size and width; its N(0, weight_scale) initialiser."""
    setattr(link, channels_name, _check_channels(channels, channels_name))
    link.size = _check_size(size)
    link.width = float(width)
    return chainer.initializers.Normal(weight_scale, rng=init_rng(rng))


class Generator(chainer.Chain):
    """DCGAN generator (Table S1 for 32x32, Table S2 for 128x128): z (B, latent_dim) -> x (B, C, size, size) in [-1, 1]."""

    def __init__(self, latent_dim: int = LATENT_DIM, out_channels: int = 3, width: float = 1.0,
                 size: int = 32, weight_scale: float = WEIGHT_SCALE,
                 rng: Optional[numpy.random.RandomState] = None):
        super().__init__()
        self.latent_dim = int(latent_dim)
        w = _set_common(self, "out_channels", out_channels, size, width, weight_scale, rng)
        ch = scaled(BASE_CHANNELS, width)
        self.bottom_channels = ch
        n_up = int(math.log2(size // BOTTOM_WIDTH))  # 3 stages for 32, 5 for 128
        # hidden deconv stages halve the channels; the 32x32 net has a 3x3/s1 output conv, the 128x128
        # net a 4x4/s2 output deconv (its last doubling).
        hidden = n_up if size == 32 else n_up - 1
        self._hidden = []
        with self.init_scope():
            self.l0 = L.Linear(self.latent_dim, BOTTOM_WIDTH * BOTTOM_WIDTH * ch, initialW=w)
            self.bn0 = L.BatchNormalization(BOTTOM_WIDTH * BOTTOM_WIDTH * ch)
            c_in = ch
            for i in range(1, hidden + 1):
                c_out = scaled(BASE_CHANNELS // 2 ** i, width)
                setattr(self, "dc{}".format(i), L.Deconvolution2D(c_in, c_out, 4, 2, 1, initialW=w))
                setattr(self, "bn{}".format(i), L.BatchNormalization(c_out))
                self._hidden.append(("dc{}".format(i), "bn{}".format(i)))
                c_in = c_out
            if size == 32:
                self.out = L.Deconvolution2D(c_in, self.out_channels, 3, 1, 1, initialW=w)
            else:
                self.out = L.Deconvolution2D(c_in, self.out_channels, 4, 2, 1, initialW=w)

    def forward(self, z):
        h = fused_layer(z, self.l0, self.bn0, "relu")
        h = F.reshape(h, (len(z), self.bottom_channels, BOTTOM_WIDTH, BOTTOM_WIDTH))
        for dc, bn in self._hidden:
            h = fused_layer(h, getattr(self, dc), getattr(self, bn), "relu")
        return fused_layer(h, self.out, None, "tanh")


class DFMDiscriminator(chainer.Chain):
    """DFM discriminator (Tables S1/S2): x -> (feature f (B, 512, 2, 2), logit (B, 1))."""

    def __init__(self, in_channels: int = 3, width: float = 1.0, size: int = 32,
                 weight_scale: float = WEIGHT_SCALE,
                 rng: Optional[numpy.random.RandomState] = None):
        super().__init__()
        w = _set_common(self, "in_channels", in_channels, size, width, weight_scale, rng)
        if size == 32:  # conv3x3/s1 C->32, then 4x4/s2 to 64, 128, 256, 512
            first = (scaled(32, width), 3, 1, 1)
            widths = [64, 128, 256]
        else:  # conv4x4/s2 C->16, then 4x4/s2 to 32, 64, 128, 256, 512
            first = (scaled(16, width), 4, 2, 1)
            widths = [32, 64, 128, 256]
        top = scaled(BASE_CHANNELS, width)
        self.feature_shape = (top, 2, 2)
        self._hidden = []
        with self.init_scope():
            self.c0 = L.Convolution2D(self.in_channels, first[0], first[1], first[2], first[3], initialW=w)
            c_in = first[0]
            for i, n in enumerate(widths, start=1):
                c_out = scaled(n, width)
                setattr(self, "c{}".format(i), L.Convolution2D(c_in, c_out, 4, 2, 1, initialW=w))
                setattr(self, "bn{}".format(i), L.BatchNormalization(c_out))
                self._hidden.append(("c{}".format(i), "bn{}".format(i)))
                c_in = c_out
            self.c_feature = L.Convolution2D(c_in, top, 4, 2, 1, initialW=w)
            self.bn_feature = L.BatchNormalization(top, use_gamma=False)
            self.l_out = L.Linear(top * 4, 1, initialW=w)

    def forward(self, x):
        h = fused_layer(x, self.c0, None, "leaky_relu", LEAKY_SLOPE)
        for c, bn in self._hidden:
            h = fused_layer(h, getattr(self, c), getattr(self, bn), "leaky_relu", LEAKY_SLOPE)
        feature = fused_layer(h, self.c_feature, self.bn_feature, None)
        return feature, fused_head(feature, self.l_out, LEAKY_SLOPE)


class WGANCritic(chainer.Chain):
    """WGAN-GP critic of chainer-gan-lib, no normalisation: x -> (feature (B, 512, 4, 4), logit (B, 1))."""

    def __init__(self, in_channels: int = 3, width: float = 1.0, size: int = 32,
                 weight_scale: float = WEIGHT_SCALE,
                 rng: Optional[numpy.random.RandomState] = None):
        super().__init__()
        w = _set_common(self, "in_channels", in_channels, size, width, weight_scale, rng)
        # (out channels, kernel, stride, pad) of each conv; 32x32 -> 4x4
        convs = [(64, 3, 1, 1), (128, 4, 2, 1), (128, 3, 1, 1), (256, 4, 2, 1), (256, 3, 1, 1),
                 (512, 4, 2, 1), (512, 3, 1, 1)]
        if size == 128:  # two 4x4/s2 stages in front: 128 -> 32 [inferred]
            convs = [(16, 4, 2, 1), (32, 4, 2, 1)] + convs
        self._convs = []
        top = scaled(BASE_CHANNELS, width)
        self.feature_shape = (top, 4, 4)
        with self.init_scope():
            c_in = self.in_channels
            for i, (n, k, s, p) in enumerate(convs):
                c_out = scaled(n, width)
                setattr(self, "c{}".format(i), L.Convolution2D(c_in, c_out, k, s, p, initialW=w))
                self._convs.append("c{}".format(i))
                c_in = c_out
            self.l_out = L.Linear(top * 16, 1, initialW=w)

    def forward(self, x):
        h = x
        for name in self._convs[:-1]:
            h = fused_layer(h, getattr(self, name), None, "leaky_relu", LEAKY_SLOPE)
        feature = fused_layer(h, getattr(self, self._convs[-1]), None, None)
        return feature, fused_head(feature, self.l_out, LEAKY_SLOPE)


class MLPGenerator(chainer.Chain):
    """``--arch mlp`` generator (not in the paper; module docstring): z (B, latent_dim) -> x (B, C, size, size)."""

    def __init__(self, latent_dim: int = LATENT_DIM, out_channels: int = 1, width: float = 1.0,
                 size: int = 32, weight_scale: float = WEIGHT_SCALE,
                 rng: Optional[numpy.random.RandomState] = None):
        super().__init__()
        self.latent_dim = int(latent_dim)
        w = _set_common(self, "out_channels", out_channels, size, width, weight_scale, rng)
        units = [scaled(n, width) for n in reversed(MLP_HIDDEN)]
        with self.init_scope():
            self.l0 = L.Linear(self.latent_dim, units[0], initialW=w)
            self.bn0 = L.BatchNormalization(units[0])
            self.l1 = L.Linear(units[0], units[1], initialW=w)
            self.bn1 = L.BatchNormalization(units[1])
            self.out = L.Linear(units[1], self.out_channels * size * size, initialW=w)

    def forward(self, z):
        h = fused_layer(z, self.l0, self.bn0, "relu")
        h = fused_layer(h, self.l1, self.bn1, "relu")
        x = fused_layer(h, self.out, None, "tanh")
        return F.reshape(x, (len(z), self.out_channels, self.size, self.size))


class MLPDiscriminator(chainer.Chain):
    """``--arch mlp`` DFM discriminator: x -> (feature f (B, 2048 x width), logit (B, 1)); f after a gamma-free BN.

    ``normalise=False`` drops the BN: :class:`MLPCritic`, the WGAN-GP critic.
    """

    normalise = True

    def __init__(self, in_channels: int = 1, width: float = 1.0, size: int = 32,
                 weight_scale: float = WEIGHT_SCALE,
                 rng: Optional[numpy.random.RandomState] = None):
        super().__init__()
        w = _set_common(self, "in_channels", in_channels, size, width, weight_scale, rng)
        hidden, top = (scaled(n, width) for n in MLP_HIDDEN)
        self.feature_shape = (top,)
        with self.init_scope():
            self.l0 = L.Linear(self.in_channels * size * size, hidden, initialW=w)
            self.l_feature = L.Linear(hidden, top, initialW=w)
            self.bn_feature = L.BatchNormalization(top, use_gamma=False) if self.normalise else None
            self.l_out = L.Linear(top, 1, initialW=w)

    def forward(self, x):
        h = F.reshape(x, (len(x), -1))
        h = fused_layer(h, self.l0, None, "leaky_relu", LEAKY_SLOPE)
        feature = fused_layer(h, self.l_feature, self.bn_feature, None)
        return feature, fused_head(feature, self.l_out, LEAKY_SLOPE)


class MLPCritic(MLPDiscriminator):
    """``--arch mlp`` WGAN-GP critic: :class:`MLPDiscriminator` without normalisation."""

    normalise = False


#: ``--arch``: the generator, and each objective's discriminator class (as its updater names it) -> this
#: architecture's. ``dcgan`` is the paper's (Tables S1/S2); ``mlp`` the CPU study's small alternative.
ARCHS = {
    "dcgan": {"generator": Generator, DFMDiscriminator: DFMDiscriminator, WGANCritic: WGANCritic},
    "mlp": {"generator": MLPGenerator, DFMDiscriminator: MLPDiscriminator, WGANCritic: MLPCritic},
}


def generator_class(arch: str) -> type:
    """The generator class of ``--arch`` ``arch``."""
    return ARCHS[arch]["generator"]


def discriminator_class(arch: str, paper_class: type) -> type:
    """The discriminator of ``--arch`` ``arch`` standing in for ``paper_class`` (an updater's ``discriminator_class``).

    A class this table does not know (a plugin's) is used as it is under ``dcgan``; under another
    architecture that is an error naming the fix."""
    table = ARCHS[arch]
    if paper_class in table:
        return table[paper_class]
    if arch == "dcgan":
        return paper_class
    raise ValueError("--arch {} has no version of {} (a plugin's discriminator); use --arch dcgan or add it to "
                     "chainer_va.nets.ARCHS".format(arch, paper_class.__name__))


class Denoiser(chainer.Chain):
    """DFM denoiser r(f) (Tables S1/S2): MLP with ``n_layers`` x (Linear ``hidden``, BN, lReLU), then Linear back to f's shape."""

    def __init__(self, feature_shape=(BASE_CHANNELS, 2, 2), width: float = 1.0,
                 hidden: int = DENOISER_HIDDEN, n_layers: int = DENOISER_LAYERS,
                 rng: Optional[numpy.random.RandomState] = None):
        super().__init__()
        self.feature_shape = tuple(int(n) for n in feature_shape)
        size = math.prod(self.feature_shape)
        self.feature_size = size
        units = scaled(hidden, width)
        self.n_layers = int(n_layers)
        w = chainer.initializers.LeCunNormal(rng=init_rng(rng))  # Chainer's default for Linear, seeded
        with self.init_scope():
            n_in = size
            for i in range(self.n_layers):
                setattr(self, "l{}".format(i), L.Linear(n_in, units, initialW=w))
                setattr(self, "bn{}".format(i), L.BatchNormalization(units))
                n_in = units
            self.l_out = L.Linear(n_in, size, initialW=w)

    def forward(self, f):
        h = F.reshape(f, (len(f), self.feature_size))
        for i in range(self.n_layers):
            h = fused_layer(h, getattr(self, "l{}".format(i)), getattr(self, "bn{}".format(i)), "leaky_relu",
                            LEAKY_SLOPE)
        return F.reshape(self.l_out(h), (len(f),) + self.feature_shape)


def count_parameters(link: chainer.Link) -> int:
    """Number of trainable scalars in ``link`` (BN running statistics excluded)."""
    return int(sum(p.size for p in link.params()))
