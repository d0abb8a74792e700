"""chainer_va.score_toy: DAE-score vs the known Gaussian answer, the residual estimator vs finite
differences and vs its closed form for a linear denoiser, the Langevin sampler vs the exact stationary
variance of the discretised Ornstein-Uhlenbeck process, the banana's score vs its log-density."""
import numpy as np
import pytest
import threadpoolctl

from chainer_va import score_toy as st

DATA_STD = 1.0
TEST_SIGMA = 0.5  # larger than the figure's 0.2 so a few hundred steps learn the (linear) optimum


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """Small matrices: BLAS threads only fight over the shared CPUs."""
    with threadpoolctl.threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def gaussian_dae(one_blas_thread):
    rng = np.random.default_rng(0)
    data = (DATA_STD * rng.standard_normal((20000, 2))).astype(np.float32)
    den = st.make_denoiser(hidden=(32, 32), sigma=TEST_SIGMA, lr=3e-3, seed=1)
    losses = st.train_denoiser(den, data, steps=700, batch_size=256, seed=2)
    den.optimizer.alpha = 3e-4  # a short low-lr phase: the score amplifies r's error by 1/sigma^2
    losses += st.train_denoiser(den, data, steps=300, batch_size=512, seed=3)
    return den, losses


def test_dae_score_recovers_the_smoothed_gaussian_score(gaussian_dae):
    den, losses = gaussian_dae
    # optimal denoiser for N(0, s^2 I) data: r(y) = s^2/(s^2 + sigma^2) y, so the DAE-score is
    # -x / (s^2 + sigma^2), the score of the noise-smoothed density N(0, (s^2 + sigma^2) I)
    x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.7, 0.7], [-1.2, 0.4]], np.float32)
    expected = -x / (DATA_STD ** 2 + TEST_SIGMA ** 2)
    np.testing.assert_allclose(st.dae_score(den, x), expected, atol=0.12)
    # and the optimum's loss: E||E[x|y] - x||^2 per coordinate = s^2 sigma^2 / (s^2 + sigma^2) = 0.2
    assert np.mean(losses[-100:]) == pytest.approx(0.2, abs=0.01)


def test_residual_estimator_is_the_gradient_through_r(gaussian_dae):
    den, _ = gaussian_dae
    x = np.array([[0.3, -0.4], [1.1, 0.9], [-0.8, 0.2]], np.float64)
    c = 1.0 / (2 * TEST_SIGMA ** 4)
    got = st.dae_residual_score(den, x.astype(np.float32))

    def energy(p):
        r = den.reconstruct(p[None].astype(np.float32))[0].astype(np.float64)
        return ((r - p) ** 2).sum()
    h = 1e-2
    for i in range(len(x)):
        fd = np.array([(energy(x[i] + h * e) - energy(x[i] - h * e)) / (2 * h) for e in np.eye(2)])
        np.testing.assert_allclose(got[i], -c * fd, rtol=0.02, atol=2e-3)
    # for the (near-)linear optimum r = a x: -c grad (1 - a)^2 ||x||^2 = -2 c (1 - a)^2 x
    a = DATA_STD ** 2 / (DATA_STD ** 2 + TEST_SIGMA ** 2)
    np.testing.assert_allclose(got, -2 * c * (1 - a) ** 2 * x, atol=0.15)


def test_langevin_matches_discrete_ou_stationary_variance():
    # x' = (1 - eta/s^2) x + sqrt(2 eta) xi has stationary variance 2 eta / (1 - (1 - eta/s^2)^2),
    # 1.176 for eta = 0.3, s = 1 (the continuous-time answer would be 1.0)
    eta, s = 0.3, 1.0
    out = st.langevin(lambda x: -x / s ** 2, np.zeros((40000, 1), np.float32), step_size=eta, n_steps=60,
                      rng=np.random.default_rng(0), record_every=30)
    v = 2 * eta / (1 - (1 - eta / s ** 2) ** 2)
    assert out["samples"].var() == pytest.approx(v, rel=0.03)
    assert abs(out["samples"].mean()) < 0.03 and len(out["trace"]) == 2 and out["diverged"] == 0.0
    with pytest.raises(ValueError, match="rng"):
        st.langevin(lambda x: -x, np.zeros((2, 1)), rng=None)


def test_banana_score_and_exact_sampler():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 2)) * 2
    h = 1e-5
    fd = np.stack([(st.banana_log_density(x + h * e) - st.banana_log_density(x - h * e)) / (2 * h)
                   for e in np.eye(2)], 1)
    np.testing.assert_allclose(st.banana_score(x), fd, rtol=1e-5, atol=1e-6)
    s = st.sample_banana(200000, rng).astype(np.float64)
    # x2 ~ N(0, 4); x1 = x2^2/4 + N(0, 1): E x1 = 1, Var x1 = Var(x2^2)/16 + 1 = 2 * 16 / 16 + 1 = 3
    np.testing.assert_allclose([s[:, 0].mean(), s[:, 0].var(), s[:, 1].var()], [1.0, 3.0, 4.0], rtol=0.03)
