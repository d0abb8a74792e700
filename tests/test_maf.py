"""tfp_flows.maf: normalisation on a grid, agreement with TFP's TransformedDistribution, sample/log_prob
consistency (also conditional), the log-scale clamp, maximum-likelihood fitting and bad input."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from tfp_flows.maf import MAF, fit_maf  # noqa: E402

GRID_HALF_WIDTH = 6.0
GRID_POINTS = 241  # (241)^2 = 58k density evaluations, cell 0.05


def _mixture(n, rng):
    """Two correlated Gaussian blobs: a non-Gaussian 2-D target the flow must bend to."""
    comp = rng.integers(0, 2, n)
    centre = np.where(comp[:, None] == 0, [-1.5, -0.5], [1.5, 0.5])
    return (centre + rng.normal(size=(n, 2)) @ np.array([[0.6, 0.2], [0.0, 0.4]])).astype(np.float32)


def _conditional_data(n, rng):
    """x | c ~ N((2c, -c), diag(0.5^2, 1)) with c ~ U(-1, 1)."""
    c = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    x = np.concatenate([2 * c + 0.5 * rng.normal(size=(n, 1)), -c + rng.normal(size=(n, 1))], 1)
    return x.astype(np.float32), c


@pytest.fixture(scope="module")
def flows():
    rng = np.random.default_rng(0)
    maf = MAF(2, hidden_units=(32, 32), num_blocks=3, seed=1)
    losses = fit_maf(maf, _mixture(4000, rng), steps=250, lr=3e-3, batch_size=256, seed=2)
    cmaf = MAF(2, hidden_units=(32, 32), num_blocks=2, conditional_dim=1, seed=3)
    x, c = _conditional_data(4000, rng)
    closses = fit_maf(cmaf, x, steps=250, lr=3e-3, batch_size=256, seed=4, conditional=c)
    return maf, cmaf, losses, closses


def _grid():
    g = np.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, GRID_POINTS)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32), (g[1] - g[0]) ** 2


def test_density_integrates_to_one_and_matches_its_entropy(flows):
    maf, cmaf, losses, closses = flows
    assert losses[-1] < losses[0] - 0.5 and closses[-1] < closses[0] - 0.5  # fitting did something
    pts, cell = _grid()
    for flow, cond in ((maf, None), (cmaf, np.full((len(pts), 1), 0.7, np.float32))):
        log_q = flow.log_prob(pts, conditional=cond).numpy().astype(np.float64)
        q = np.exp(log_q)
        assert q.sum() * cell == pytest.approx(1.0, abs=0.01)
        # entropy by quadrature vs the Monte-Carlo estimate from forward samples
        h_grid = -(q * log_q).sum() * cell
        n = 20000
        c_mc = None if cond is None else cond[:n]
        h_mc = float(flow.entropy_estimate(n, conditional=c_mc, seed=5))
        assert h_mc == pytest.approx(h_grid, abs=0.04)


def test_log_prob_matches_tfp_transformed_distribution(flows):
    maf, cmaf, _, _ = flows
    x = np.random.default_rng(6).normal(size=(500, 2)).astype(np.float32) * 2
    np.testing.assert_allclose(maf.log_prob(x).numpy(), maf.distribution().log_prob(x).numpy(),
                               rtol=1e-5, atol=1e-5)
    c = np.full((500, 1), -0.3, np.float32)
    np.testing.assert_allclose(cmaf.log_prob(x, conditional=c).numpy(),
                               cmaf.distribution(c).log_prob(x).numpy(), rtol=1e-5, atol=1e-5)
    # the conditioning input changes the density
    c2 = np.full((500, 1), 0.8, np.float32)
    assert np.abs(cmaf.log_prob(x, conditional=c).numpy() - cmaf.log_prob(x, conditional=c2).numpy()).mean() > 0.3


def test_sampling_and_log_prob_agree(flows):
    maf, cmaf, _, _ = flows
    for flow, cond in ((maf, None), (cmaf, np.full((3000, 1), 0.5, np.float32))):
        x, log_q_forward = flow.sample_and_log_prob(3000, conditional=cond, seed=7)
        assert x.shape == (3000, 2) and log_q_forward.shape == (3000,)
        # a fresh tensor: no bijector cache, the inverse pass is really run
        log_q_inverse = flow.log_prob(np.array(x.numpy()), conditional=cond).numpy()
        np.testing.assert_allclose(log_q_inverse, log_q_forward.numpy(), atol=2e-3)
        # seeded sampling is reproducible; sample() and sample_and_log_prob() draw the same x
        np.testing.assert_allclose(flow.sample(3000, conditional=cond, seed=7).numpy(), x.numpy(), atol=1e-5)
        entropy = float(flow.entropy_estimate(20000, conditional=None if cond is None else
                                              np.full((20000, 1), 0.5, np.float32), seed=8))
        assert -log_q_inverse.mean() == pytest.approx(entropy, abs=0.08)


def test_conditional_flow_learned_the_conditional_mean(flows):
    _, cmaf, _, _ = flows
    for c in (-0.8, 0.6):
        x = cmaf.sample(20000, conditional=np.full((20000, 1), c, np.float32), seed=9).numpy()
        np.testing.assert_allclose(x.mean(0), [2 * c, -c], atol=0.15)
        np.testing.assert_allclose(x.std(0), [0.5, 1.0], rtol=0.15)


def test_log_scale_is_clamped():
    maf = MAF(2, hidden_units=(8,), num_blocks=2, max_log_scale=2.0, seed=0)
    for made in maf.mades:
        for v in made.trainable_variables:
            v.assign(tf.fill(v.shape, 50.0))  # raw log-scales of order 1e3-1e4
    x = np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32)
    ildj = maf.bijector.inverse_log_det_jacobian(x, event_ndims=1).numpy()
    assert np.all(np.isfinite(ildj))
    assert np.all(np.abs(ildj) <= 2 * 2 * 2.0 + 1e-4)  # num_blocks * dim * max_log_scale
    assert np.all(np.abs(ildj) >= 2 * 2 * 2.0 - 1e-2)  # saturated, not zeroed


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="conditional_dim"):
        MAF(2, hidden_units=(4,), num_blocks=1).log_prob(np.zeros((3, 2), np.float32),
                                                         conditional=np.zeros((3, 1), np.float32))
    cmaf = MAF(2, hidden_units=(4,), num_blocks=1, conditional_dim=2)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        cmaf.sample(3)
    with pytest.raises(ValueError, match="one conditioning row per sample"):
        cmaf.sample(3, conditional=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        cmaf.log_prob(np.zeros((3, 3), np.float32), conditional=np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        fit_maf(MAF(2, hidden_units=(4,), num_blocks=1), np.full((5, 2), np.nan), steps=1)
