"""Stein variational gradient descent (Liu & Wang, NIPS 2016), written in TensorFlow.

Public pieces:

* :func:`median_bandwidth` -- the RBF bandwidth h = med^2 / log(n + 1) of Liu & Wang (2016), Sec. 5.
* :func:`svgd_direction` -- the Stein direction phi(x_i) of their Eq. (8) for particle sets with any
  leading batch dimensions (the soft Q-learning baseline uses one particle set per state).
* :func:`svgd_sample` -- the full sampler: particles moved along phi with an AdaGrad-style step
  (the "adagrad with momentum" step size that their reference description uses).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

#: Liu & Wang's defaults for the step: base step size, AdaGrad history decay, fudge factor.
DEFAULT_STEP_SIZE = 1e-3
DEFAULT_ALPHA = 0.9
DEFAULT_FUDGE = 1e-6


def _pairwise_sq_dists(x: tf.Tensor) -> tf.Tensor:
    """||x_i - x_j||^2 for x of shape (..., n, d) -> (..., n, n), computed from differences (exact, >= 0)."""
    diff = x[..., :, None, :] - x[..., None, :, :]
    return tf.reduce_sum(tf.square(diff), axis=-1)


def median_bandwidth(x: tf.Tensor) -> tf.Tensor:
    """RBF bandwidth h = med^2 / log(n + 1) (Liu & Wang 2016, Sec. 5), per particle set.

    ``x``: particles of shape (..., n, d). ``med`` is the median of the n^2 pairwise distances (the
    zero diagonal included, as in their description); the returned ``h`` has shape (...,) and enters
    the kernel as k(x, x') = exp(-||x - x'||^2 / h). A set whose particles all coincide would give
    h = 0; it is replaced by 1 so the kernel stays finite.
    """
    x = tf.convert_to_tensor(x)
    n = tf.shape(x)[-2]
    sq = _pairwise_sq_dists(x)
    flat = tf.reshape(sq, tf.concat([tf.shape(sq)[:-2], [n * n]], axis=0))
    # Median of the squared distances (= squared median distance), the two middle values averaged.
    sorted_sq = tf.sort(flat, axis=-1)
    m = n * n
    lo = tf.gather(sorted_sq, (m - 1) // 2, axis=-1)
    hi = tf.gather(sorted_sq, m // 2, axis=-1)
    med_sq = 0.5 * (lo + hi)
    h = med_sq / tf.math.log(tf.cast(n, x.dtype) + 1.0)
    return tf.where(h > 0, h, tf.ones_like(h))


def svgd_direction(x: tf.Tensor, grad_log_p: tf.Tensor, bandwidth: tf.Tensor | float | None = None
                   ) -> tf.Tensor:
    """The Stein variational direction of Liu & Wang (2016), Eq. (8), with an RBF kernel.

    phi(x_i) = mean_j [ k(x_j, x_i) grad_log_p(x_j) + grad_{x_j} k(x_j, x_i) ],
    k(x, x') = exp(-||x - x'||^2 / h), so grad_{x_j} k(x_j, x_i) = -2 / h (x_j - x_i) k(x_j, x_i).

    ``x`` and ``grad_log_p`` have shape (..., n, d) with any leading batch dimensions; ``bandwidth``
    is h, a scalar or a tensor broadcastable to the batch shape (...,); None uses
    :func:`median_bandwidth` per particle set (held constant: no gradient flows through it).
    Returns phi of shape (..., n, d).
    """
    x = tf.convert_to_tensor(x)
    grad_log_p = tf.convert_to_tensor(grad_log_p, dtype=x.dtype)
    if x.shape.rank is not None and x.shape.rank < 2:
        raise ValueError("svgd_direction: x must have shape (..., n, d), got shape {}".format(x.shape))
    if x.shape.is_fully_defined() and grad_log_p.shape.is_fully_defined() and x.shape != grad_log_p.shape:
        raise ValueError("svgd_direction: x {} and grad_log_p {} must have the same shape".format(
            x.shape, grad_log_p.shape))
    if bandwidth is None:
        h = tf.stop_gradient(median_bandwidth(x))
    else:
        h = bandwidth if tf.is_tensor(bandwidth) else np.asarray(bandwidth, dtype=x.dtype.as_numpy_dtype)
        h = tf.cast(h, x.dtype)
    h = h[..., None, None]  # broadcast over (n, n)
    n = tf.cast(tf.shape(x)[-2], x.dtype)
    sq = _pairwise_sq_dists(x)               # (..., n, n), symmetric: entry [j, i]
    k = tf.exp(-sq / h)                      # k[j, i] = k(x_j, x_i)
    # sum_j k(x_j, x_i) grad_j  -> (k^T grad)_i ; k is symmetric so k @ grad works the same.
    drive = tf.linalg.matmul(k, grad_log_p, transpose_a=True)
    # sum_j grad_{x_j} k(x_j, x_i) = 2/h sum_j (x_i - x_j) k_ji = 2/h (x_i sum_j k_ji - sum_j k_ji x_j)
    repulse = (2.0 / h) * (x * tf.reduce_sum(k, axis=-2)[..., None]
                           - tf.linalg.matmul(k, x, transpose_a=True))
    return (drive + repulse) / n


@dataclass
class SVGDResult:
    """Final particles (numpy, (n, d)) and the run's settings; ``sample(n)`` draws from the particles."""

    particles: np.ndarray
    steps: int
    step_size: float
    seed: int

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """``n`` particles: the first ``n`` when n <= the particle count, else drawn with replacement."""
        p = self.particles
        if n <= len(p):
            return p[:n].copy()
        rng = np.random.default_rng(self.seed if seed is None else seed)
        return p[rng.integers(0, len(p), size=n)]


def svgd_sample(log_density: Callable[[tf.Tensor], tf.Tensor], initial: np.ndarray, steps: int = 1000,
                step_size: float = DEFAULT_STEP_SIZE, alpha: float = DEFAULT_ALPHA,
                fudge: float = DEFAULT_FUDGE, bandwidth: float | None = None, seed: int = 0,
                progress: Callable[[int, int], None] | None = None,
                progress_every: int = 100) -> SVGDResult:
    """Run SVGD (Liu & Wang 2016, Algorithm 1) from ``initial`` particles of shape (n, d).

    Each step x <- x + step_size * phi / (fudge + sqrt(hist)), with the AdaGrad-style history
    hist <- phi^2 on the first step and hist <- alpha hist + (1 - alpha) phi^2 afterwards (the step size
    rule their reference description uses; defaults step 1e-3, alpha 0.9, fudge 1e-6).
    ``log_density`` maps a (n, d) tensor to (n,) unnormalised log densities (a minibatch estimate
    works: it is called once per step). ``bandwidth`` None uses the median heuristic every step.
    ``seed`` is only recorded (and used by ``SVGDResult.sample`` for resampling); the initial
    particles carry the randomness.
    """
    initial = np.asarray(initial)
    if initial.ndim != 2:
        raise ValueError("svgd_sample: initial particles must have shape (n, d), got {}".format(initial.shape))
    if steps < 0:
        raise ValueError("svgd_sample: steps must be >= 0, got {}".format(steps))
    dtype = tf.float32 if initial.dtype != np.float64 else tf.float64
    x = tf.Variable(tf.constant(initial, dtype=dtype))
    hist = tf.Variable(tf.zeros_like(x))
    h_arg = None if bandwidth is None else tf.constant(bandwidth, dtype)

    def one_step(first: tf.Tensor) -> None:
        with tf.GradientTape() as tape:
            tape.watch(x)
            lp = tf.reduce_sum(log_density(x))
        grad = tape.gradient(lp, x)
        phi = svgd_direction(x, grad, h_arg)
        new_hist = tf.where(first, tf.square(phi), alpha * hist + (1.0 - alpha) * tf.square(phi))
        hist.assign(new_hist)
        x.assign_add(step_size * phi / (fudge + tf.sqrt(new_hist)))

    @tf.function(jit_compile=False)
    def run_chunk(start: tf.Tensor, count: tf.Tensor) -> None:
        # Several steps per call: the Python loop's per-step dispatch cost dominated small problems.
        for i in tf.range(count):
            one_step(tf.equal(start + i, 0))

    done = 0
    while done < steps:
        count = min(progress_every, steps - done)
        run_chunk(tf.constant(done), tf.constant(count))
        done += count
        if progress is not None:
            progress(done, steps)
    particles = x.numpy()
    if not np.all(np.isfinite(particles)):
        raise FloatingPointError("svgd_sample: particles became non-finite; lower step_size (now {})".format(
            step_size))
    return SVGDResult(particles=particles, steps=steps, step_size=step_size, seed=seed)


__all__ = ["median_bandwidth", "svgd_direction", "svgd_sample", "SVGDResult",
           "DEFAULT_STEP_SIZE", "DEFAULT_ALPHA", "DEFAULT_FUDGE"]
