"""Framework-free sample-quality numbers: energy distance and MMD (Gaussian kernel, median heuristic).

Used to measure how close a sampler's output is to exact (or long-run MCMC) samples of a target, for
the score-estimator toy (main-text Fig. 2, supplement G) and the U-GAN toys (supplement Fig. S1, J.2).
Numpy only, so the Chainer and the TensorFlow parts of the project share one implementation.

- Energy distance (Szekely & Rizzo 2004): D^2 = 2 E||X - Y|| - E||X - X'|| - E||Y - Y'||, >= 0 and 0
  iff the distributions are equal. The V-statistic (all pairs, including i = j) is returned; it is
  non-negative for any pair of samples.
- MMD^2 with k(x, y) = exp(-||x - y||^2 / (2 h^2)) (Gretton et al. 2012), unbiased U-statistic; the
  bandwidth h defaults to the median pairwise distance of the pooled samples (the median heuristic).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["pairwise_distances", "energy_distance", "median_bandwidth", "mmd2", "subsample"]

DEFAULT_CHUNK = 2048  # rows per block of the pairwise-distance computation (bounds memory at ~32 MB)


def _as_samples(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError("{} must be an (n, d) array of n >= 2 samples, got shape {}".format(name, x.shape))
    if not np.all(np.isfinite(x)):
        raise ValueError("{} contains NaN or inf: a diverged sampler has no sample-quality number; "
                         "drop or fix those samples first".format(name))
    return x


def _check_pair(x, y):
    x = _as_samples(x, "x")
    y = _as_samples(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError("x and y must have the same dimension, got {} and {}".format(x.shape[1], y.shape[1]))
    return x, y


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d2, 0.0)


def pairwise_distances(a, b) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` (n, d) and ``b`` (m, d): an (n, m) array."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.sqrt(_sq_dists(a, b))


def _mean_kernel(a: np.ndarray, b: np.ndarray, fn, exclude_diagonal: bool, chunk: int) -> float:
    """Mean of fn(squared distance) over all pairs (or the off-diagonal ones, when a is b)."""
    total = 0.0
    for i in range(0, a.shape[0], chunk):
        block = fn(_sq_dists(a[i:i + chunk], b))
        if exclude_diagonal:
            rows = np.arange(block.shape[0])
            block[rows, rows + i] = 0.0
        total += block.sum()
    n_pairs = a.shape[0] * b.shape[0] - (a.shape[0] if exclude_diagonal else 0)
    return total / n_pairs


def energy_distance(x, y, chunk: int = DEFAULT_CHUNK) -> float:
    """Squared energy distance 2 E||X-Y|| - E||X-X'|| - E||Y-Y'|| between two samples (V-statistic).

    Zero iff the samples' empirical distributions coincide; grows with any difference in location,
    scale or shape. Units: those of x (a distance).
    """
    x, y = _check_pair(x, y)
    sqrt = np.sqrt
    xy = _mean_kernel(x, y, sqrt, False, chunk)
    xx = _mean_kernel(x, x, sqrt, False, chunk)
    yy = _mean_kernel(y, y, sqrt, False, chunk)
    return float(max(2.0 * xy - xx - yy, 0.0))


def median_bandwidth(x, y, max_points: int = 2000, rng: Optional[np.random.Generator] = None) -> float:
    """Median pairwise distance of the pooled samples (at most ``max_points`` of them, drawn with ``rng``).

    Without ``rng`` the subsample is drawn with ``default_rng(0)``: a fixed seed, so the bandwidth (and the
    MMD^2 that uses it) is a deterministic function of the samples, as a metric should be.
    """
    x, y = _check_pair(x, y)
    pooled = np.concatenate([x, y], 0)
    if pooled.shape[0] > max_points:
        rng = rng if rng is not None else np.random.default_rng(0)
        pooled = pooled[rng.choice(pooled.shape[0], max_points, replace=False)]
    d = pairwise_distances(pooled, pooled)
    h = float(np.median(d[np.triu_indices(d.shape[0], 1)]))
    if h <= 0.0:
        raise ValueError("median pairwise distance is 0 (all samples equal?): pass bandwidth explicitly")
    return h


def mmd2(x, y, bandwidth: Optional[float] = None, chunk: int = DEFAULT_CHUNK) -> float:
    """Unbiased MMD^2 with a Gaussian kernel of width ``bandwidth`` (default: the median heuristic).

    Can be slightly negative for equal distributions (it is an unbiased estimate of 0).
    """
    x, y = _check_pair(x, y)
    h = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    if not h > 0.0:
        raise ValueError("bandwidth must be positive, got {}".format(bandwidth))

    def kernel(d2):
        return np.exp(-d2 / (2.0 * h * h))
    kxx = _mean_kernel(x, x, kernel, True, chunk)
    kyy = _mean_kernel(y, y, kernel, True, chunk)
    kxy = _mean_kernel(x, y, kernel, False, chunk)
    return float(kxx + kyy - 2.0 * kxy)


def subsample(x, n: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``n`` rows of ``x`` drawn without replacement (keeps the O(n^2) metrics affordable)."""
    x = np.asarray(x)
    if x.shape[0] <= n:
        return x
    return x[rng.choice(x.shape[0], n, replace=False)]
