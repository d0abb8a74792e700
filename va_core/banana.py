"""The banana density of supplement G and J.2 (numpy): log-density, exact score and exact sampler.

log u(x1, x2) = -1/2 ((x1 - x2^2/4)^2 + x2^2/4): x2 ~ N(0, 2^2), then x1 | x2 ~ N(x2^2/4, 1). One copy
serves the Chainer score-estimator toy (:mod:`chainer_va.score_toy`, Fig. 2) and the U-GAN targets
(:mod:`tfp_flows.targets`, Fig. S1).
"""
from __future__ import annotations

import numpy as np

__all__ = ["BANANA_X2_STD", "BANANA_CURVATURE", "banana_log_density", "banana_score", "sample_banana"]

BANANA_X2_STD = 2.0  # x2 ~ N(0, 4): the x2^2/4 term
BANANA_CURVATURE = 0.25  # x1 | x2 ~ N(x2^2 / 4, 1)


def banana_log_density(x: np.ndarray) -> np.ndarray:
    """log u(x1, x2) = -1/2 ((x1 - x2^2/4)^2 + x2^2/4) (supplement G / J.2) of each row of ``x`` (n, 2)."""
    x = np.asarray(x)
    x1, x2 = x[:, 0], x[:, 1]
    return -0.5 * ((x1 - BANANA_CURVATURE * x2 ** 2) ** 2 + (x2 / BANANA_X2_STD) ** 2)


def banana_score(x: np.ndarray) -> np.ndarray:
    """Exact grad log u of the banana (the exact-score reference sampler of Fig. 2), in ``x``'s dtype."""
    x1, x2 = x[:, 0], x[:, 1]
    d = x1 - BANANA_CURVATURE * x2 ** 2
    return np.stack([-d, -x2 / BANANA_X2_STD ** 2 + 2.0 * BANANA_CURVATURE * d * x2], 1).astype(x.dtype)


def sample_banana(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` exact banana samples (float32): x2 ~ N(0, 2^2), x1 | x2 ~ N(x2^2 / 4, 1)."""
    x2 = BANANA_X2_STD * rng.standard_normal(n)
    x1 = BANANA_CURVATURE * x2 ** 2 + rng.standard_normal(n)
    return np.stack([x1, x2], 1).astype(np.float32)
