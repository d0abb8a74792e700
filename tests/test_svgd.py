"""SVGD: the Stein direction against a NumPy double loop, batching, the median bandwidth, and a sampler
that recovers a correlated 2-D Gaussian's mean and covariance."""
import numpy as np
import pytest

import tfp_flows  # noqa: F401  (sets TF_USE_LEGACY_KERAS)
import tensorflow as tf

from tfp_flows.svgd import median_bandwidth, svgd_direction, svgd_sample


def _phi_loop(x, g, h):
    """Eq. (8) of Liu & Wang (2016), written as the literal double sum."""
    n, d = x.shape
    phi = np.zeros_like(x)
    for i in range(n):
        for j in range(n):
            k = np.exp(-np.sum((x[j] - x[i]) ** 2) / h)
            phi[i] += k * g[j] + (-2.0 / h) * (x[j] - x[i]) * k
    return phi / n


def _median_h(x):
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    med = np.median(np.sqrt(d2))
    return med ** 2 / np.log(len(x) + 1)


def test_direction_matches_double_loop_and_median_heuristic():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3))
    g = rng.normal(size=(7, 3))
    h = _median_h(x)
    np.testing.assert_allclose(median_bandwidth(tf.constant(x)).numpy(), h, rtol=1e-10)
    np.testing.assert_allclose(svgd_direction(tf.constant(x), tf.constant(g)).numpy(), _phi_loop(x, g, h),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(svgd_direction(x, g, bandwidth=0.7).numpy(), _phi_loop(x, g, 0.7),
                               rtol=1e-9, atol=1e-12)


def test_direction_with_leading_batch_dims_is_per_set():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 5, 2))
    g = rng.normal(size=(2, 3, 5, 2))
    h = median_bandwidth(tf.constant(x)).numpy()
    assert h.shape == (2, 3)
    phi = svgd_direction(tf.constant(x), tf.constant(g)).numpy()
    assert phi.shape == x.shape
    for a in range(2):
        for b in range(3):
            assert h[a, b] == pytest.approx(_median_h(x[a, b]), rel=1e-10)
            np.testing.assert_allclose(phi[a, b], _phi_loop(x[a, b], g[a, b], h[a, b]), rtol=1e-9, atol=1e-12)


def test_direction_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        svgd_direction(tf.zeros((4, 2)), tf.zeros((4, 3)))


def test_svgd_recovers_2d_gaussian_mean_and_covariance():
    mean = np.array([1.0, -2.0])
    cov = np.array([[1.0, 0.6], [0.6, 0.8]])
    prec = tf.constant(np.linalg.inv(cov), tf.float64)
    mu = tf.constant(mean, tf.float64)

    def log_density(x):
        r = x - mu
        return -0.5 * tf.reduce_sum(tf.matmul(r, prec) * r, axis=-1)

    rng = np.random.default_rng(2)
    init = rng.normal(loc=[-3.0, 3.0], scale=0.5, size=(100, 2))
    out = svgd_sample(log_density, init, steps=800, step_size=0.05, seed=2).particles
    # Started far away (mean (-3, 3), std 0.5): the particles must travel and spread to the target.
    np.testing.assert_allclose(out.mean(0), mean, atol=0.06)
    # 100 SVGD particles under-disperse by a few percent (finite-particle bias); a wrong repulsive
    # term collapses them (cov -> 0) or blows them apart.
    np.testing.assert_allclose(np.cov(out.T), cov, atol=0.1)
