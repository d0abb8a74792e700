"""Unnormalised toy targets for the U-GAN (supplement J.2, Fig. S1; SPEC section 7) and the
score-estimator toy (supplement G), each with an exact sampler for sample-quality numbers.

Each log-density maps a (n, dim) float32 tensor to (n,) in TensorFlow (so a U-GAN can differentiate
it) and has a numpy twin for plots and for the Chainer toy.

- banana: log u(x) = -1/2 ((x1 - x2^2/4)^2 + x2^2/4) (supplement G and J.2, the same density).
  Exact sampler: x2 ~ N(0, 2^2), then x1 | x2 ~ N(x2^2/4, 1).
- kidney: the supplement prints the ENERGY -log u; the log-density used here (SPEC section 7) is
  log u(x) = -1/2 ((||x|| - 2)/0.4)^2 + log(exp(-1/2((x1 - 2)/0.6)^2) + exp(-1/2((x1 + 2)/0.6)^2)).
  Exact sampler: rejection from a uniform box (u <= 2 everywhere, a ring of radius 2 +- 0.4).
- gaussian: N(m, s^2 I); the tempering theorem's check (mu^beta = N(m, s^2/beta I)).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence, Tuple

import numpy as np

from va_core.banana import BANANA_CURVATURE, BANANA_X2_STD, sample_banana  # one banana for G and J.2
from va_core.banana import banana_log_density as banana_log_density_np

__all__ = ["Target", "banana", "kidney", "gaussian", "get", "NAMES",
           "banana_log_density_np", "kidney_log_density_np", "sample_banana", "sample_kidney"]

KIDNEY_RADIUS = 2.0
KIDNEY_RADIUS_WIDTH = 0.4
KIDNEY_LOBE_CENTRE = 2.0
KIDNEY_LOBE_WIDTH = 0.6
KIDNEY_BOX = 4.0  # rejection box [-4, 4]^2: the ring's density there is below exp(-1/2 (2/0.4)^2) = 4e-6


@dataclasses.dataclass(frozen=True)
class Target:
    """An unnormalised density: TF log-density, numpy twin, exact sampler and a plotting window."""

    name: str
    dim: int
    log_density: Callable  # tf.Tensor (n, dim) -> (n,)
    log_density_np: Callable[[np.ndarray], np.ndarray]
    sample: Callable[[int, np.random.Generator], np.ndarray]
    plot_limits: Tuple[Tuple[float, float], ...]


def _banana_log_density_tf(x):
    import tensorflow as tf

    x1, x2 = x[:, 0], x[:, 1]
    return -0.5 * (tf.square(x1 - BANANA_CURVATURE * tf.square(x2)) + tf.square(x2 / BANANA_X2_STD))


def kidney_log_density_np(x: np.ndarray) -> np.ndarray:
    """log u of the kidney (SPEC section 7: the supplement's formula is the energy), numpy."""
    x = np.asarray(x, dtype=np.float64)
    r = np.sqrt((x ** 2).sum(1))
    ring = -0.5 * ((r - KIDNEY_RADIUS) / KIDNEY_RADIUS_WIDTH) ** 2
    a = -0.5 * ((x[:, 0] - KIDNEY_LOBE_CENTRE) / KIDNEY_LOBE_WIDTH) ** 2
    b = -0.5 * ((x[:, 0] + KIDNEY_LOBE_CENTRE) / KIDNEY_LOBE_WIDTH) ** 2
    return ring + np.logaddexp(a, b)


def _kidney_log_density_tf(x):
    import tensorflow as tf

    r = tf.sqrt(tf.reduce_sum(tf.square(x), 1) + 1e-12)
    ring = -0.5 * tf.square((r - KIDNEY_RADIUS) / KIDNEY_RADIUS_WIDTH)
    a = -0.5 * tf.square((x[:, 0] - KIDNEY_LOBE_CENTRE) / KIDNEY_LOBE_WIDTH)
    b = -0.5 * tf.square((x[:, 0] + KIDNEY_LOBE_CENTRE) / KIDNEY_LOBE_WIDTH)
    return ring + tf.reduce_logsumexp(tf.stack([a, b], 1), 1)


def sample_kidney(n: int, rng: np.random.Generator) -> np.ndarray:
    """Exact kidney samples by rejection from the uniform box [-4, 4]^2 with the bound u <= 2."""
    out = []
    have = 0
    log_bound = np.log(2.0)
    while have < n:
        prop = rng.uniform(-KIDNEY_BOX, KIDNEY_BOX, size=(max(4 * (n - have), 1024), 2))
        keep = np.log(rng.uniform(size=len(prop))) < kidney_log_density_np(prop) - log_bound
        out.append(prop[keep])
        have += int(keep.sum())
    return np.concatenate(out, 0)[:n].astype(np.float32)


def gaussian(mean: Sequence[float], std: float) -> Target:
    """N(mean, std^2 I) as an unnormalised target (log u = -||x - mean||^2 / (2 std^2))."""
    mean_np = np.asarray(mean, dtype=np.float32)
    if mean_np.ndim != 1 or not std > 0:
        raise ValueError("gaussian needs a 1-D mean and std > 0, got mean shape {} std {}".format(
            mean_np.shape, std))
    std = float(std)

    def log_density(x):
        import tensorflow as tf

        return -0.5 * tf.reduce_sum(tf.square((x - mean_np) / std), 1)

    def log_density_np(x):
        return -0.5 * (((np.asarray(x) - mean_np) / std) ** 2).sum(1)

    def sample(n, rng):
        return (mean_np + std * rng.standard_normal((n, len(mean_np)))).astype(np.float32)

    lim = tuple((float(m) - 4 * std, float(m) + 4 * std) for m in mean_np)
    return Target("gaussian", len(mean_np), log_density, log_density_np, sample, lim)


banana = Target("banana", 2, _banana_log_density_tf, banana_log_density_np, sample_banana,
                ((-3.0, 9.0), (-6.0, 6.0)))
kidney = Target("kidney", 2, _kidney_log_density_tf, kidney_log_density_np, sample_kidney,
                ((-3.5, 3.5), (-3.5, 3.5)))

NAMES = ("banana", "kidney", "gaussian")


def get(name: str) -> Target:
    """The toy target ``name`` (banana, kidney; gaussian = N(0, I_2))."""
    if name == "banana":
        return banana
    if name == "kidney":
        return kidney
    if name == "gaussian":
        return gaussian([0.0, 0.0], 1.0)
    raise ValueError("unknown target {!r}; choose one of {}".format(name, ", ".join(NAMES)))
