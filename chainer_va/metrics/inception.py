"""Chainer port of TensorFlow's ``inception-2015-12-05`` graph: pool3 features (2048) and the 1008-way softmax.

This is the network behind the original Inception Score code (Salimans et al. 2016) and TTUR's FID
(Heusel et al. 2017), evaluated by chainer-gan-lib through a Chainer port (SPEC section 5). The port
follows the graph op by op:

- ``ResizeBilinear`` of the input (legacy TF semantics: ``align_corners=False``, no half-pixel
  centres), then ``Sub`` 128 and ``Mul`` 1/128;
- 94 ``Conv2D`` (no bias) + ``BatchNormWithGlobalNormalization`` (``variance_epsilon`` and
  ``scale_after_normalization`` read from the graph) + ReLU units; the batchnorm is folded into
  the convolution at load time;
- ``MaxPool`` / ``AvgPool`` with TF padding. TF's SAME average pool divides by the number of
  *valid* inputs under the window; Chainer's ``average_pooling_2d`` counts the zero padding, so the
  port uses ``average_pooling_nd(..., pad_value=None)``, which excludes it. (chainer-gan-lib's port
  counted the padding; ``pool_padding="chainer-gan-lib"`` reproduces that deviation on request.)
- ``pool_3`` (8x8 average, VALID) -> 2048 features; ``softmax/logits`` = pool3 @ W + b (2048 -> 1008).
"""
from __future__ import annotations

from typing import Mapping, Optional, Tuple

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

from chainer_va.metrics import architecture as arch

#: Resize modes: "tf" = the graph's own ResizeBilinear (TTUR's FID feeds raw images to it);
#: "align_corners" = Chainer's ``F.resize_images`` default, which chainer-gan-lib used before its port.
RESIZE_MODES = ("tf", "align_corners")
POOL_PADDING_MODES = ("tf", "chainer-gan-lib")


def resize_bilinear(x, size: int = arch.INPUT_SIZE, mode: str = "tf"):
    """Bilinear resize of a (N, C, H, W) array to (size, size), as TF's ResizeBilinear or with aligned corners.

    ``mode="tf"``: source coordinate = dst * (in / out) (TF 1.x ``ResizeBilinear``, align_corners=False,
    half_pixel_centers=False, the op in the 2015-12-05 graph). ``mode="align_corners"``: source
    coordinate = dst * (in - 1) / (out - 1) (Chainer's ``F.resize_images``). Works on NumPy and CuPy arrays.
    """
    if mode not in RESIZE_MODES:
        raise ValueError("unknown resize mode {!r}; use one of {}".format(mode, RESIZE_MODES))
    xp = chainer.backend.get_array_module(x)
    n, c, h, w = x.shape
    if (h, w) == (size, size):
        return x

    def axis(n_in: int):
        if mode == "tf":
            scale = n_in / size
        else:
            scale = (n_in - 1) / (size - 1) if size > 1 else 0.0
        src = np.arange(size, dtype=np.float32) * np.float32(scale)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        lo = np.minimum(lo, n_in - 1)
        frac = (src - lo).astype(np.float32)
        return xp.asarray(lo), xp.asarray(hi), xp.asarray(frac)

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    x = x.astype(np.float32, copy=False)
    top = x[:, :, y0, :]
    bottom = x[:, :, y1, :]
    fx = fx[None, None, None, :]
    top = top[:, :, :, x0] + (top[:, :, :, x1] - top[:, :, :, x0]) * fx
    bottom = bottom[:, :, :, x0] + (bottom[:, :, :, x1] - bottom[:, :, :, x0]) * fx
    return top + (bottom - top) * fy[None, None, :, None]


def preprocess(images, size: int = arch.INPUT_SIZE, resize: str = "tf"):
    """Images with values in [0, 255], (N, 3, H, W) -> the graph's ``Mul`` tensor: resized, (x - 128) / 128."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            "Inception expects images of shape (N, 3, H, W), got {}; repeat 1-channel images to 3 "
            "channels first (chainer_va.metrics.evaluation.to_rgb)".format(images.shape))
    x = resize_bilinear(images, size, resize)
    return (x - np.float32(arch.SUB_VALUE)) * np.float32(arch.MUL_VALUE)


class Inception2015(chainer.Chain):
    """The ``inception-2015-12-05`` network in Chainer. Load weights with :meth:`load_arrays`.

    ``forward(x)`` takes the graph's ``Mul`` tensor (N, 3, 299, 299) and returns ``(pool3, logits)``;
    ``logits`` is None for weights without the softmax layer (e.g. FID-only TorchScript copies).
    """

    def __init__(self, pool_padding: str = "tf", with_logits: bool = True):
        super().__init__()
        if pool_padding not in POOL_PADDING_MODES:
            raise ValueError("pool_padding must be one of {}, got {!r}".format(POOL_PADDING_MODES, pool_padding))
        self.pool_padding = pool_padding
        self.with_logits = with_logits
        with self.init_scope():
            for spec in arch.conv_specs():
                conv = L.Convolution2D(spec.in_channels, spec.out_channels, spec.ksize, stride=spec.stride,
                                       pad=spec.pad, initialW=chainer.initializers.Zero(),
                                       initial_bias=chainer.initializers.Zero())
                setattr(self, arch.link_name(spec.name), conv)
            if with_logits:
                self.logits = L.Linear(arch.POOL3_DIM, arch.NUM_LOGITS, initialW=chainer.initializers.Zero())

    # --- weights ---------------------------------------------------------------------------------
    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> "Inception2015":
        """Load converted weights (the ``.npz`` layout of :mod:`chainer_va.metrics.convert`), folding each batchnorm.

        For unit ``name``: ``name/W`` (O, I, kh, kw), ``name/beta``, ``name/mean``, ``name/var``,
        ``name/eps`` and, when ``name/scale`` is true, ``name/gamma``. Folded: scale
        s = gamma / sqrt(var + eps) (gamma = 1 without scale_after_normalization), W' = W s, b' = beta - mean s.
        """
        missing = []
        for spec in arch.conv_specs():
            keys = [spec.name + suffix for suffix in ("/W", "/beta", "/mean", "/var", "/eps")]
            absent = [k for k in keys if k not in arrays]
            if absent:
                missing.extend(absent)
                continue
            W = np.asarray(arrays[spec.name + "/W"], dtype=np.float64)
            expected = (spec.out_channels, spec.in_channels) + tuple(spec.ksize)
            if W.shape != expected:
                raise ValueError("{}: weight shape {} != expected {}".format(spec.name, W.shape, expected))
            var = np.asarray(arrays[spec.name + "/var"], dtype=np.float64)
            eps = float(np.asarray(arrays[spec.name + "/eps"]))
            scale = 1.0 / np.sqrt(var + eps)
            if bool(np.asarray(arrays.get(spec.name + "/scale", False))):
                scale = scale * np.asarray(arrays[spec.name + "/gamma"], dtype=np.float64)
            bias = np.asarray(arrays[spec.name + "/beta"], np.float64) - np.asarray(
                arrays[spec.name + "/mean"], np.float64) * scale
            conv = getattr(self, arch.link_name(spec.name))
            conv.W.array[...] = conv.xp.asarray((W * scale[:, None, None, None]).astype(np.float32))
            conv.b.array[...] = conv.xp.asarray(bias.astype(np.float32))
        if missing:
            raise KeyError("Inception weights are missing {} arrays, e.g. {}".format(len(missing), missing[:3]))
        if self.with_logits:
            if "softmax/W" not in arrays:
                raise KeyError(
                    "these Inception weights have no softmax layer (pool3 only); build "
                    "Inception2015(with_logits=False) for FID, or use the TF graph's weights for the IS")
            self.logits.W.array[...] = self.xp.asarray(np.asarray(arrays["softmax/W"], np.float32))
            self.logits.b.array[...] = self.xp.asarray(np.asarray(arrays["softmax/b"], np.float32))
        return self

    # --- graph -----------------------------------------------------------------------------------
    def _unit(self, name: str, h):
        return F.relu(getattr(self, arch.link_name(name))(h))

    def _tower(self, prefix: str, names: Tuple[str, ...], h):
        for name in names:
            h = self._unit(prefix + name, h)
        return h

    def _avg_pool_same(self, h):
        if self.pool_padding == "tf":
            return F.average_pooling_nd(h, 3, 1, 1, pad_value=None)
        return F.average_pooling_2d(h, 3, 1, 1)

    @staticmethod
    def _max_pool(h, stride: int, pad: int):
        return F.max_pooling_2d(h, 3, stride, pad, cover_all=False)

    def _block_a(self, b: str, x):
        t0 = self._unit(b + "/conv", x)
        t1 = self._unit(b + "/tower/conv_1", self._unit(b + "/tower/conv", x))
        t2 = self._tower(b + "/tower_1/", ("conv", "conv_1", "conv_2"), x)
        t3 = self._unit(b + "/tower_2/conv", self._avg_pool_same(x))
        return F.concat((t0, t1, t2, t3), axis=1)

    def _block_b(self, x):
        t0 = self._unit("mixed_3/conv", x)
        t1 = self._tower("mixed_3/tower/", ("conv", "conv_1", "conv_2"), x)
        return F.concat((t0, t1, self._max_pool(x, 2, 0)), axis=1)

    def _block_c(self, b: str, x):
        t0 = self._unit(b + "/conv", x)
        t1 = self._tower(b + "/tower/", ("conv", "conv_1", "conv_2"), x)
        t2 = self._tower(b + "/tower_1/", ("conv", "conv_1", "conv_2", "conv_3", "conv_4"), x)
        t3 = self._unit(b + "/tower_2/conv", self._avg_pool_same(x))
        return F.concat((t0, t1, t2, t3), axis=1)

    def _block_d(self, x):
        t0 = self._unit("mixed_8/tower/conv_1", self._unit("mixed_8/tower/conv", x))
        t1 = self._tower("mixed_8/tower_1/", ("conv", "conv_1", "conv_2", "conv_3"), x)
        return F.concat((t0, t1, self._max_pool(x, 2, 0)), axis=1)

    def _block_e(self, b: str, x, max_pool: bool):
        t0 = self._unit(b + "/conv", x)
        a = self._unit(b + "/tower/conv", x)
        t1 = F.concat((self._unit(b + "/tower/mixed/conv", a), self._unit(b + "/tower/mixed/conv_1", a)), axis=1)
        c = self._unit(b + "/tower_1/conv_1", self._unit(b + "/tower_1/conv", x))
        t2 = F.concat((self._unit(b + "/tower_1/mixed/conv", c), self._unit(b + "/tower_1/mixed/conv_1", c)), axis=1)
        pooled = self._max_pool(x, 1, 1) if max_pool else self._avg_pool_same(x)
        t3 = self._unit(b + "/tower_2/conv", pooled)
        return F.concat((t0, t1, t2, t3), axis=1)

    def forward(self, x) -> Tuple[chainer.Variable, Optional[chainer.Variable]]:
        """(pool3 (N, 2048), logits (N, 1008) or None) from the graph's ``Mul`` tensor (N, 3, 299, 299)."""
        h = self._tower("", ("conv", "conv_1", "conv_2"), x)
        h = self._max_pool(h, 2, 0)                                   # pool
        h = self._unit("conv_4", self._unit("conv_3", h))
        h = self._max_pool(h, 2, 0)                                   # pool_1
        for b in ("mixed", "mixed_1", "mixed_2"):
            h = self._block_a(b, h)
        h = self._block_b(h)                                          # mixed_3
        for b in ("mixed_4", "mixed_5", "mixed_6", "mixed_7"):
            h = self._block_c(b, h)
        h = self._block_d(h)                                          # mixed_8
        h = self._block_e("mixed_9", h, max_pool=False)
        h = self._block_e("mixed_10", h, max_pool=True)
        if h.shape[2:] != (8, 8):
            raise ValueError("pool_3 expects an 8x8 map (299x299 input), got {}".format(h.shape[2:]))
        pool3 = F.reshape(F.average_pooling_2d(h, 8, 1), (h.shape[0], arch.POOL3_DIM))   # pool_3
        logits = self.logits(pool3) if self.with_logits else None
        return pool3, logits

    def features_and_probs(self, images, resize: str = "tf"):
        """pool3 features and softmax probabilities (xp arrays) of images with values in [0, 255] (N, 3, H, W)."""
        with chainer.using_config("train", False), chainer.no_backprop_mode():
            pool3, logits = self.forward(preprocess(self.xp.asarray(images, dtype=np.float32), resize=resize))
            probs = F.softmax(logits).array if logits is not None else None
        return pool3.array, probs
