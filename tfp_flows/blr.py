"""Bayesian logistic regression (paper Sec. 5 / Table S3; prior of Liu & Wang 2016, Sec. 5.2).

Model: y_i ~ Bernoulli(sigmoid(x_i . w)), w | alpha ~ N(0, alpha^-1 I_D), alpha ~ Gamma(a0=1, b0=0.01)
(rate b0). Samplers work on theta = (w, log alpha) in R^(D+1), so the log density carries the
log-Jacobian log alpha of alpha = exp(theta_D):

    log p(theta | data) = sum_i [y_i z_i - softplus(z_i)] + D/2 log alpha - alpha/2 ||w||^2
                          + (a0 - 1) log alpha - b0 alpha + log alpha + const,   z_i = x_i . w.

With a minibatch of B of the N training points the likelihood sum is scaled by N / B (an unbiased
estimate). The constant (-D/2 log 2 pi + a0 log b0 - lgamma(a0)) is included so the value is the exact
log joint density of (theta, y).

Posterior-predictive metrics (:func:`predictive_metrics`) and distances to a reference sample set
(:func:`compare_to_reference`) are here too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

#: Liu & Wang (2016)'s hyper-prior alpha ~ Gamma(a0, b0), b0 a rate.
PRIOR_A0 = 1.0
PRIOR_B0 = 0.01
#: Initial SVGD particles (:meth:`BayesianLogisticRegression.initial_particles`): Liu & Wang's script, or the prior.
SVGD_STARTS = ("liu_wang", "prior")


class BayesianLogisticRegression(tf.Module):
    """The posterior over theta = (w, log alpha) for one training set.

    ``x`` (N, D) already contains the intercept column if one is wanted; ``y`` (N,) in {0, 1}.
    ``batch_size`` None (default) uses all N points; otherwise :meth:`log_density` draws a fresh
    minibatch of ``batch_size`` indices (with replacement) per call from a generator seeded by ``seed``.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, a0: float = PRIOR_A0, b0: float = PRIOR_B0,
                 batch_size: int | None = None, seed: int = 0, dtype: tf.DType = tf.float32,
                 name: str | None = None):
        super().__init__(name=name)
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim != 2 or y.shape != (x.shape[0],):
            raise ValueError("x must be (N, D) and y (N,), got {} and {}".format(x.shape, y.shape))
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("labels y must be 0 or 1")
        if a0 <= 0 or b0 <= 0:
            raise ValueError("Gamma prior needs a0 > 0 and b0 > 0, got {} and {}".format(a0, b0))
        if batch_size is not None and not 0 < batch_size:
            raise ValueError("batch_size must be positive or None, got {}".format(batch_size))
        self.n, self.d = x.shape
        self.dim = self.d + 1
        self.a0, self.b0 = float(a0), float(b0)
        self.dtype = dtype
        self.x = tf.constant(x, dtype)
        self.y = tf.constant(y, dtype)
        self.batch_size = batch_size
        self._rng = tf.random.Generator.from_seed(seed)
        self._const = (-0.5 * self.d * math.log(2 * math.pi) + self.a0 * math.log(self.b0)
                       - math.lgamma(self.a0))

    def log_prior(self, theta: tf.Tensor) -> tf.Tensor:
        """log p(w | alpha) + log p(alpha) + log alpha (Jacobian), shape theta.shape[:-1]."""
        theta = tf.convert_to_tensor(theta, self.dtype)
        w, log_alpha = theta[..., :-1], theta[..., -1]
        alpha = tf.exp(log_alpha)
        d = tf.cast(self.d, self.dtype)
        return (0.5 * d * log_alpha - 0.5 * alpha * tf.reduce_sum(tf.square(w), axis=-1)
                + (self.a0 - 1.0) * log_alpha - self.b0 * alpha + log_alpha + self._const)

    def log_likelihood(self, theta: tf.Tensor, x: tf.Tensor | None = None, y: tf.Tensor | None = None
                       ) -> tf.Tensor:
        """sum_i log p(y_i | x_i, w) over the given points (default: the whole training set)."""
        theta = tf.convert_to_tensor(theta, self.dtype)
        x = self.x if x is None else x
        y = self.y if y is None else y
        z = tf.einsum("...d,bd->...b", theta[..., :-1], x)     # (..., B)
        return tf.reduce_sum(y * z - tf.math.softplus(z), axis=-1)

    def log_density(self, theta: tf.Tensor) -> tf.Tensor:
        """Unnormalised log posterior of theta (..., D + 1) -> (...); a minibatch estimate (likelihood
        scaled by N / batch_size) when the model has a ``batch_size``."""
        if self.batch_size is None or self.batch_size >= self.n:
            return self.log_prior(theta) + self.log_likelihood(theta)
        idx = self._rng.uniform([self.batch_size], 0, self.n, dtype=tf.int32)
        scale = self.n / self.batch_size
        return self.log_prior(theta) + scale * self.log_likelihood(
            theta, tf.gather(self.x, idx), tf.gather(self.y, idx))

    def full_log_density(self, theta: tf.Tensor) -> tf.Tensor:
        """The exact (full-data) log posterior, whatever ``batch_size`` is."""
        return self.log_prior(theta) + self.log_likelihood(theta)

    def marginal_log_density(self, w: tf.Tensor) -> tf.Tensor:
        """log p(w | data) + const with alpha integrated out: the prior of w is then a multivariate
        Student-t, log p(w) = -(a0 + D/2) log(b0 + ||w||^2 / 2) + const (conjugacy of the Gamma
        hyper-prior). Used by the collapsed NUTS reference; the constant is the exact normaliser."""
        w = tf.convert_to_tensor(w, self.dtype)
        a = self.a0 + 0.5 * self.d
        const = (self.a0 * math.log(self.b0) + math.lgamma(a) - math.lgamma(self.a0)
                 - 0.5 * self.d * math.log(2 * math.pi))
        prior = const - a * tf.math.log(self.b0 + 0.5 * tf.reduce_sum(tf.square(w), axis=-1))
        z = tf.einsum("...d,bd->...b", w, self.x)
        return prior + tf.reduce_sum(self.y * z - tf.math.softplus(z), axis=-1)

    def noncentred_log_density(self, eta: tf.Tensor) -> tf.Tensor:
        """log posterior density of eta = (v, log alpha) with w = v exp(-log alpha / 2) (non-centred
        parametrisation, Papaspiliopoulos et al. 2007): the Jacobian exp(-D log alpha / 2) cancels the
        prior's D/2 log alpha, leaving -||v||^2/2 + (a0 - 1) log alpha - b0 alpha + log alpha + log-lik."""
        eta = tf.convert_to_tensor(eta, self.dtype)
        v, log_alpha = eta[..., :-1], eta[..., -1]
        w = v * tf.exp(-0.5 * log_alpha)[..., None]
        prior = (-0.5 * tf.reduce_sum(tf.square(v), axis=-1) + (self.a0 - 1.0) * log_alpha
                 - self.b0 * tf.exp(log_alpha) + log_alpha + self._const)
        z = tf.einsum("...d,bd->...b", w, self.x)
        return prior + tf.reduce_sum(self.y * z - tf.math.softplus(z), axis=-1)

    def sample_log_alpha(self, w: np.ndarray, seed: int) -> np.ndarray:
        """Exact draws of log alpha | w ~ log Gamma(a0 + D/2, rate b0 + ||w||^2 / 2), one per row of w."""
        w = np.asarray(w, dtype=np.float64)
        rate = self.b0 + 0.5 * np.sum(w ** 2, axis=-1)
        return np.log(np.random.default_rng(seed).gamma(self.a0 + 0.5 * self.d, 1.0 / rate))

    def initial_particles(self, n: int, seed: int, start: str = "liu_wang") -> np.ndarray:
        """SVGD's initial particles theta = (w, log alpha): alpha ~ Gamma(a0, .), w | alpha ~ N(0, 1/alpha).

        ``start="liu_wang"`` (default) draws alpha as Liu & Wang's released BLR script does,
        ``numpy.random.gamma(a0, b0)``: numpy reads b0 as a *scale*, so alpha ~ 0.01 and the particles start
        wide (w of order 10), although their model's prior reads b0 as a rate. ``start="prior"`` draws
        from this model's prior (b0 a rate: alpha ~ 100, w of order 0.1, next to the funnel's neck).
        """
        if start not in SVGD_STARTS:
            raise ValueError("unknown SVGD start {!r}; use one of {}".format(start, SVGD_STARTS))
        rng = np.random.default_rng(seed)
        alpha = rng.gamma(self.a0, self.b0 if start == "liu_wang" else 1.0 / self.b0, size=n)
        w = rng.normal(size=(n, self.d)) / np.sqrt(alpha)[:, None]
        return np.concatenate([w, np.log(alpha)[:, None]], axis=1).astype(self.dtype.as_numpy_dtype)


def predictive_probs(samples: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Posterior-predictive p(y = 1 | x) = mean_s sigmoid(x . w_s) for samples theta_s = (w_s, log alpha_s)."""
    samples = np.asarray(samples, dtype=np.float64)
    z = np.asarray(x, dtype=np.float64) @ samples[:, :-1].T                      # (N, S)
    return np.mean(0.5 * (1.0 + np.tanh(0.5 * z)), axis=1)


@dataclass(frozen=True)
class PredictiveMetrics:
    """Test accuracy (threshold 0.5) and mean test log-likelihood of the posterior predictive."""

    accuracy: float
    log_likelihood: float


def predictive_metrics(samples: np.ndarray, x: np.ndarray, y: np.ndarray, eps: float = 1e-12
                       ) -> PredictiveMetrics:
    """Accuracy and mean log p(y | x) of the posterior predictive on (x, y); probabilities clipped to
    [eps, 1 - eps] so one confident mistake gives a large but finite penalty."""
    p = np.clip(predictive_probs(samples, x), eps, 1.0 - eps)
    y = np.asarray(y)
    acc = float(np.mean((p > 0.5) == (y == 1)))
    ll = float(np.mean(np.where(y == 1, np.log(p), np.log1p(-p))))
    return PredictiveMetrics(accuracy=acc, log_likelihood=ll)


@dataclass(frozen=True)
class ReferenceDistance:
    """Distances of a sampler to the reference posterior.

    ``prob_mae``: mean |p_sampler(y=1|x) - p_ref(y=1|x)| over the test points.
    ``mean_err``: ||E[w] - E_ref[w]|| / sqrt(D) (RMS over coordinates).
    ``std_err``: RMS over coordinates of std[w] - std_ref[w]; ``std_ratio``: mean of std / std_ref
    (below 1 = under-dispersed).
    """

    prob_mae: float
    mean_err: float
    std_err: float
    std_ratio: float


def compare_to_reference(samples: np.ndarray, reference: np.ndarray, x_test: np.ndarray) -> ReferenceDistance:
    """Predictive-probability and posterior mean/std distances of ``samples`` to ``reference`` (both (S, D+1))."""
    samples = np.asarray(samples, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    p = predictive_probs(samples, x_test)
    p_ref = predictive_probs(reference, x_test)
    w, w_ref = samples[:, :-1], reference[:, :-1]
    sd, sd_ref = w.std(axis=0), w_ref.std(axis=0)
    return ReferenceDistance(
        prob_mae=float(np.mean(np.abs(p - p_ref))),
        mean_err=float(np.sqrt(np.mean((w.mean(0) - w_ref.mean(0)) ** 2))),
        std_err=float(np.sqrt(np.mean((sd - sd_ref) ** 2))),
        std_ratio=float(np.mean(sd / np.maximum(sd_ref, 1e-12))))


LogDensity = Callable[[tf.Tensor], tf.Tensor]

__all__ = ["PRIOR_A0", "PRIOR_B0", "BayesianLogisticRegression", "predictive_probs", "PredictiveMetrics",
           "predictive_metrics", "ReferenceDistance", "compare_to_reference", "LogDensity"]
