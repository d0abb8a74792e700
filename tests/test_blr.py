"""The BLR log posterior and its gradient against a NumPy/SciPy computation; minibatch unbiasedness;
predictive metrics against hand-computed values."""
import numpy as np
import pytest
from scipy import special, stats

import tfp_flows  # noqa: F401
import tensorflow as tf

from tfp_flows import blr


def _scipy_log_post(theta, x, y, a0=1.0, b0=0.01):
    w, log_alpha = theta[:-1], theta[-1]
    alpha = np.exp(log_alpha)
    z = x @ w
    lik = np.sum(stats.bernoulli.logpmf(y, special.expit(z)))
    prior_w = np.sum(stats.norm.logpdf(w, 0.0, 1.0 / np.sqrt(alpha)))
    prior_a = stats.gamma.logpdf(alpha, a0, scale=1.0 / b0)
    return lik + prior_w + prior_a + log_alpha   # + log|d alpha / d log alpha|


def _data(n=40, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (rng.random(n) < special.expit(x @ rng.normal(size=d))).astype(float)
    return x, y


def test_log_posterior_matches_scipy():
    x, y = _data()
    model = blr.BayesianLogisticRegression(x, y, dtype=tf.float64)
    rng = np.random.default_rng(1)
    thetas = np.concatenate([rng.normal(size=(5, 4)), rng.normal(size=(5, 1))], axis=1)
    got = model.log_density(tf.constant(thetas)).numpy()
    want = [_scipy_log_post(t, x, y) for t in thetas]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # one theta without a batch dimension works too
    assert model.log_density(tf.constant(thetas[0])).numpy() == pytest.approx(want[0], rel=1e-10)


def test_gradient_matches_finite_differences_and_closed_form():
    x, y = _data(seed=2)
    model = blr.BayesianLogisticRegression(x, y, dtype=tf.float64)
    theta = np.array([0.3, -0.5, 0.1, 0.8, 0.4])
    t = tf.constant(theta)
    with tf.GradientTape() as tape:
        tape.watch(t)
        lp = model.log_density(t)
    grad = tape.gradient(lp, t).numpy()
    # closed form: d/dw = X^T (y - sigmoid(Xw)) - alpha w; d/dlog alpha = D/2 - alpha/2 |w|^2 + a0 - b0 alpha
    w, alpha = theta[:-1], np.exp(theta[-1])
    closed = np.append(x.T @ (y - special.expit(x @ w)) - alpha * w,
                       len(w) / 2 - alpha / 2 * w @ w + 1.0 - 0.01 * alpha)
    np.testing.assert_allclose(grad, closed, rtol=1e-10)
    eps = 1e-6
    fd = [(_scipy_log_post(theta + eps * e, x, y) - _scipy_log_post(theta - eps * e, x, y)) / (2 * eps)
          for e in np.eye(len(theta))]
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


def test_minibatch_estimate_is_unbiased_and_scaled():
    x, y = _data(n=50, seed=3)
    full = blr.BayesianLogisticRegression(x, y, dtype=tf.float64)
    mini = blr.BayesianLogisticRegression(x, y, batch_size=10, seed=4, dtype=tf.float64)
    theta = tf.constant([[0.2, -0.1, 0.4, 0.0, 0.5]], tf.float64)
    many = tf.function(lambda: tf.map_fn(lambda _: mini.log_density(theta)[0], tf.range(3000),
                                         fn_output_signature=tf.float64))
    draws = many().numpy()
    exact = full.log_density(theta).numpy()[0]
    assert np.std(draws) > 0.1                       # it really is a random minibatch
    assert abs(draws.mean() - exact) < 4 * draws.std() / np.sqrt(len(draws))
    assert mini.full_log_density(theta).numpy()[0] == pytest.approx(exact, rel=1e-12)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="0 or 1"):
        blr.BayesianLogisticRegression(np.zeros((3, 2)), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        blr.BayesianLogisticRegression(np.zeros((3, 2)), np.zeros(4))


def test_predictive_metrics_and_reference_distance():
    x = np.array([[1.0, 2.0], [1.0, -1.0]])
    y = np.array([1, 1])
    samples = np.array([[0.0, 1.0, 0.0], [0.0, 3.0, 0.0]])   # w = (0, 1) and (0, 3); last entry log alpha
    p = blr.predictive_probs(samples, x)
    want = [(special.expit(2) + special.expit(6)) / 2, (special.expit(-1) + special.expit(-3)) / 2]
    np.testing.assert_allclose(p, want)
    m = blr.predictive_metrics(samples, x, y)
    assert m.accuracy == 0.5
    assert m.log_likelihood == pytest.approx(np.mean(np.log(want)))
    ref = np.array([[0.5, 1.0, 0.0], [-0.5, 3.0, 1.0]])
    d = blr.compare_to_reference(ref[::-1], ref, x)
    assert d.prob_mae == 0.0 and d.mean_err == 0.0 and d.std_ratio == pytest.approx(1.0)
    shifted = ref + np.array([0.0, 1.0, 0.0])
    d2 = blr.compare_to_reference(shifted, ref, x)
    assert d2.mean_err == pytest.approx(np.sqrt(0.5)) and d2.std_err == 0.0 and d2.prob_mae > 0.01
    wide = np.array([[1.0, 0.0, 0.0], [-1.0, 4.0, 0.0]])   # stds (1, 2) vs the reference's (0.5, 1)
    assert blr.compare_to_reference(wide, ref, x).std_ratio == pytest.approx(2.0)


def test_initial_particles_liu_wang_and_prior():
    model = blr.BayesianLogisticRegression(np.zeros((2, 3)), np.array([0, 1]))
    # Liu & Wang's script: alpha = numpy gamma(1, 0.01), 0.01 a scale: E log alpha = digamma(1) + log(0.01)
    p = model.initial_particles(4000, seed=0)
    assert p.shape == (4000, 4)
    assert p[:, -1].mean() == pytest.approx(special.digamma(1.0) + np.log(0.01), abs=0.06)
    # w | alpha ~ N(0, 1/alpha): w sqrt(alpha) is standard normal
    v = p[:, :-1] * np.exp(0.5 * p[:, -1:].astype(np.float64))
    assert v.std() == pytest.approx(1.0, abs=0.03)
    # the model's prior: Gamma(1, rate 0.01): E log alpha = digamma(1) - log(0.01)
    q = model.initial_particles(4000, seed=0, start="prior")
    assert q[:, -1].mean() == pytest.approx(special.digamma(1.0) - np.log(0.01), abs=0.06)
    with pytest.raises(ValueError, match="unknown SVGD start 'uniform'"):
        model.initial_particles(10, seed=0, start="uniform")


def test_collapsed_and_noncentred_densities_match_the_joint():
    from scipy import integrate

    x, y = _data(n=30, d=3, seed=5)
    model = blr.BayesianLogisticRegression(x, y, dtype=tf.float64)
    w = np.array([0.4, -0.7, 0.2])
    # marginal over alpha: integral of the joint over log alpha (the joint already carries the Jacobian)
    peak = max(_scipy_log_post(np.append(w, la), x, y) for la in np.linspace(-10, 10, 201))
    joint = lambda la: np.exp(_scipy_log_post(np.append(w, la), x, y) - peak)
    want = peak + np.log(integrate.quad(joint, -30.0, 30.0, points=[-5, 0, 5], limit=400, epsabs=0, epsrel=1e-12)[0])
    assert model.marginal_log_density(tf.constant(w)).numpy() == pytest.approx(want, rel=1e-8)
    # non-centred: log p(eta) = log p(theta(eta)) + log |dw/dv| = joint - D/2 log alpha
    eta = np.array([0.3, 1.2, -0.5, 0.9])
    theta = np.append(eta[:-1] * np.exp(-0.5 * eta[-1]), eta[-1])
    got = model.noncentred_log_density(tf.constant(eta)).numpy()
    assert got == pytest.approx(_scipy_log_post(theta, x, y) - 1.5 * eta[-1], rel=1e-10)
    # exact conditional of log alpha: mean of Gamma(a0 + D/2, rate b0 + |w|^2/2)
    la = model.sample_log_alpha(np.tile(w, (20000, 1)), seed=0)
    assert np.exp(la).mean() == pytest.approx((1.0 + 1.5) / (0.01 + 0.5 * w @ w), rel=0.03)


def test_nuts_reference_recovers_a_gaussian_and_reports_rhat():
    from tfp_flows import reference

    mean = np.array([1.0, -0.5])
    std = np.array([0.5, 2.0])

    def log_density(t):
        return -0.5 * tf.reduce_sum(tf.square((t - mean) / std), axis=-1)

    init = np.random.default_rng(0).normal(scale=3.0, size=(4, 2))
    res = reference.run_nuts(log_density, init, draws=300, burnin=200, seed=1)
    assert res.draws.shape == (4, 300, 2)
    # a short run: R-hat below 1.05 (the full BLR runs are held to 1.01), ESS well above a stuck chain's
    assert res.converged(threshold=1.05) and res.min_ess > 200, (res.rhat, res.ess)
    assert np.all(np.abs(res.samples.mean(0) - mean) < 4 * std / np.sqrt(res.ess)), (res.samples.mean(0), res.ess)
    np.testing.assert_allclose(res.samples.std(0), std, rtol=0.12)
    # chains stuck in different places must show up in R-hat
    stuck = np.stack([np.random.default_rng(i).normal(loc=3 * i, size=(400, 2)) for i in range(4)])
    rhat = reference.tfp.mcmc.potential_scale_reduction(np.transpose(stuck, (1, 0, 2)), independent_chain_ndims=1,
                                                        split_chains=True).numpy()
    assert np.all(rhat > 1.5)


def _grid_posterior_moments(x, y, a0=1.0, b0=0.01):
    """E and std of (w0, w1, log alpha) under the BLR posterior by brute-force quadrature on a grid.

    Independent of tfp_flows: p(w, log alpha | data) is proportional to
    prod_i Bern(y_i | sigmoid(x_i w)) N(w | 0, alpha^-1 I) Gamma(alpha | a0, b0) alpha (the Jacobian).
    """
    from scipy.special import log_expit

    w0 = np.linspace(-5, 5, 161)
    w1 = np.linspace(-4, 8, 193)
    la = np.linspace(-9, 7, 161)
    W0, W1 = np.meshgrid(w0, w1, indexing="ij")
    logits = W0[..., None] * x[:, 0] + W1[..., None] * x[:, 1]              # (161, 193, N)
    loglik = np.sum(y * log_expit(logits) + (1 - y) * log_expit(-logits), axis=-1)
    sq = (W0 ** 2 + W1 ** 2)[..., None]
    alpha = np.exp(la)
    d = x.shape[1]
    logp = loglik[..., None] + 0.5 * d * la - 0.5 * alpha * sq + a0 * la - b0 * alpha   # Gamma in log alpha
    p = np.exp(logp - logp.max())
    p /= p.sum()
    moments = []
    for grid in (W0[..., None], W1[..., None], la[None, None, :]):
        m = float(np.sum(p * grid))
        moments.append((m, float(np.sqrt(np.sum(p * (grid - m) ** 2)))))
    return np.array(moments)


@pytest.mark.parametrize("parametrisation", ["noncentred", "collapsed"])
def test_blr_reference_matches_quadrature_on_a_two_weight_model(parametrisation):
    from tfp_flows import reference

    rng = np.random.default_rng(5)
    n = 40
    x = np.stack([np.ones(n), rng.normal(size=n)], axis=1)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(0.3 + 1.5 * x[:, 1])))).astype(np.float64)
    model = blr.BayesianLogisticRegression(x, y, dtype=tf.float64)
    res = reference.blr_reference(model, chains=4, draws=600, burnin=400, seed=2, parametrisation=parametrisation)
    assert res.draws.shape == (4, 600, 3) and res.config["parametrisation"] == parametrisation
    assert res.config["target_accept"] == reference.BLR_TARGET_ACCEPT
    assert res.converged(threshold=1.05), res.rhat
    expected = _grid_posterior_moments(x, y)
    got_mean, got_std = res.samples.mean(0), res.samples.std(0)
    # means within 4 Monte Carlo standard errors, stds within 12 %
    assert np.all(np.abs(got_mean - expected[:, 0]) < 4 * expected[:, 1] / np.sqrt(res.ess)), (got_mean, expected, res.ess)
    np.testing.assert_allclose(got_std, expected[:, 1], rtol=0.12)
