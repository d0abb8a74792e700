"""Inception Score and Fréchet distance from class probabilities / feature statistics (SPEC section 5).

- Inception Score (Salimans et al. 2016; as chainer-gan-lib computes it): split the N samples into
  ``splits`` consecutive parts; in each, IS_k = exp(mean_i KL(p(y|x_i) || p_k(y))) with p_k(y) the
  part's mean prediction; report mean and (population) std of the IS_k.
- FID (Heusel et al. 2017, TTUR): ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), with the matrix
  square root taken by ``scipy.linalg.sqrtm``; if it is not finite, eps I is added to both
  covariances; a complex result is accepted only when its imaginary diagonal is negligible.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import scipy.linalg

#: The number of splits of the original IS code and chainer-gan-lib.
IS_SPLITS = 10
#: Diagonal offset added to the covariances when their product's square root is singular (TTUR).
FID_EPS = 1e-6
#: Largest |imaginary part| on sqrtm's diagonal accepted as round-off (TTUR's tolerance).
FID_IMAG_TOL = 1e-3
#: How far from 1 a row of (float32 softmax) probabilities may sum before
#: inception_score refuses it as not probabilities (logits passed by mistake).
PROB_SUM_TOL = 1e-3


def _to_numpy(array) -> np.ndarray:
    if hasattr(array, "get"):  # CuPy
        array = array.get()
    return np.asarray(array, dtype=np.float64)


def inception_score(probs, splits: int = IS_SPLITS) -> Tuple[float, float]:
    """(mean, std) of exp(E_x KL(p(y|x) || p(y))) over ``splits`` consecutive parts of ``probs`` (N, classes).

    Terms with p(y|x) = 0 contribute 0 (the limit of p log p). Accepts NumPy or CuPy arrays.
    """
    p = _to_numpy(probs)
    if p.ndim != 2:
        raise ValueError("probs must be (N, classes), got shape {}".format(p.shape))
    if splits < 1 or p.shape[0] < splits:
        raise ValueError("need at least `splits` ({}) samples, got {}".format(splits, p.shape[0]))
    if not np.all(np.isfinite(p)) or p.min() < 0:
        raise ValueError("probs must be finite and non-negative")
    row_sums = p.sum(axis=1)
    if not np.allclose(row_sums, 1.0, atol=PROB_SUM_TOL):
        raise ValueError("each row of probs must sum to 1 (got sums between {:.4g} and {:.4g}); pass softmax "
                         "outputs, not logits".format(row_sums.min(), row_sums.max()))
    n = p.shape[0]
    scores = []
    for k in range(splits):
        part = p[k * n // splits:(k + 1) * n // splits]
        marginal = part.mean(axis=0, keepdims=True)
        positive = part > 0
        log_ratio = np.zeros_like(part)
        log_ratio[positive] = np.log(part[positive]) - np.log(np.broadcast_to(marginal, part.shape)[positive])
        kl = (part * log_ratio).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    scores = np.asarray(scores)
    return float(scores.mean()), float(scores.std())


def feature_statistics(features) -> Tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64 (TTUR: np.cov(rowvar=False))."""
    f = _to_numpy(features)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError("features must be (N >= 2, D), got shape {}".format(f.shape))
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid_from_stats(mu1, sigma1, mu2, sigma2, eps: float = FID_EPS) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (TTUR's definition of the FID)."""
    mu1, mu2 = np.atleast_1d(_to_numpy(mu1)), np.atleast_1d(_to_numpy(mu2))
    sigma1, sigma2 = np.atleast_2d(_to_numpy(sigma1)), np.atleast_2d(_to_numpy(sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError("shape mismatch: mu {} / {}, sigma {} / {}".format(
            mu1.shape, mu2.shape, sigma1.shape, sigma2.shape))
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(covmean)):
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        largest = np.max(np.abs(np.diagonal(covmean).imag))
        if largest > FID_IMAG_TOL:
            raise ValueError("the square root of S1 S2 has an imaginary component of {:.3g}: the covariances are "
                             "degenerate; use more samples than feature dimensions".format(largest))
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid_from_features(features1, features2) -> float:
    """FID between two feature sets (N1, D) and (N2, D)."""
    return fid_from_stats(*feature_statistics(features1), *feature_statistics(features2))
