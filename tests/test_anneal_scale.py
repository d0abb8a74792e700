"""--anneal-scale: each term's feature gradient against its closed form at both scales, beta_effective by
hand, the logged gradient ratio against an independent computation, and the one-line refusals."""
import math

import numpy
import pytest

import chainer

from chainer_va import annealing, train
from test_updaters import TINY, make_pool, make_updater, run_steps, snapshot_params, assert_same_params, images  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_blas_thread")

SHAPE = (4, 2, 2)  # D = 16 feature values per sample


def _trained_pool(source, sigma):
    pool = make_pool(SHAPE, sigma=sigma)
    denoiser = pool.get(source)
    for _ in range(3):  # non-trivial BN running statistics
        denoiser.update(denoiser.loss(numpy.random.RandomState(1).normal(size=(8,) + SHAPE).astype(numpy.float32)))
    return pool, denoiser


@pytest.mark.parametrize("scale", ["faithful", "calibrated"])
@pytest.mark.parametrize("name,sign,source", [("lik", 1.0, "data"), ("ent", -1.0, "fake")])
@pytest.mark.parametrize("sigma", [1.0, 0.5])
def test_term_gradient_is_lambda_times_the_score_when_calibrated(scale, name, sign, source, sigma):
    """calibrated: d term / d f_i = -sign lambda score(f_i) / B exactly, score = (r(f) - f) / sigma^2;
    faithful: the released 2 c lambda (f - r) / (B D), i.e. lambda_eff = 2 c sigma^2 lambda / D."""
    pool, denoiser = _trained_pool(source, sigma)
    lam, c, batch, d = 0.7, 0.03, 5, 16
    term = annealing.get(name)(pool, weight=c, scale=scale)
    f_array = numpy.random.RandomState(2).normal(size=(batch,) + SHAPE).astype(numpy.float32)
    f = chainer.Variable(f_array.copy())
    term.generator_loss(f, lam).backward()
    with chainer.using_config("train", False):
        r = denoiser.link(f_array).array
    score = (r - f_array) / sigma ** 2
    if scale == "calibrated":
        expected = -sign * lam * score / batch
        lam_eff = lam
    else:
        expected = sign * 2.0 * c * lam * (f_array - r) / (batch * d)
        lam_eff = 2.0 * c * sigma ** 2 * lam / d
    numpy.testing.assert_allclose(f.grad, expected, rtol=1e-5, atol=1e-9)
    numpy.testing.assert_allclose(f.grad, -sign * lam_eff * score / batch, rtol=1e-5, atol=1e-9)
    assert term.effective_lambda(lam, d) == pytest.approx(lam_eff, rel=1e-12)


def test_beta_effective_by_hand():
    pool = make_pool(SHAPE)
    lik = annealing.get("lik")(pool, weight=0.03)
    ent = annealing.get("ent")(pool, weight=0.03)
    # the numbers: D = 2048, sigma = 1, c = 0.03 -> lambda_eff = 0.06 / 2048 = 2.9297e-5 per unit lambda
    assert lik.effective_beta(1.0, 2048) == pytest.approx(1.0 + 0.06 / 2048, rel=1e-12)
    assert ent.effective_beta(2.0, 8192) == pytest.approx(1.0 / (1.0 + 0.12 / 8192), rel=1e-12)
    calibrated = annealing.get("ent")(pool, scale="calibrated")
    assert calibrated.coefficient(2048) == 1024.0
    assert calibrated.effective_beta(1.0, 2048) == pytest.approx(0.5)
    assert math.isnan(annealing.get("lgan")(pool).effective_beta(1.0, 2048))
    assert math.isnan(annealing.get("none")(pool).effective_beta(1.0, 2048))


def test_unknown_scale_and_lgan_calibrated_are_one_line_config_errors(images):  # noqa: F811
    with pytest.raises(train.ConfigError, match="unknown annealing scale 'strong'.*faithful.*calibrated") as e:
        train.resolve_config(["--dataset", images, "--anneal", "lik", "--lambda0", "1", "--anneal-scale", "strong"])
    assert "\n" not in str(e.value)
    with pytest.raises(train.ConfigError, match="not defined for --anneal lgan: its gradient .* not a multiple of the "
                                                "DAE score.*use --anneal-scale faithful") as e:
        train.resolve_config(["--dataset", images, "--anneal", "lgan", "--schedule", "lgan", "--lambda0", "1",
                              "--knot-interval", "1", "--anneal-scale", "calibrated"])
    assert "\n" not in str(e.value)
    config = train.resolve_config(["--dataset", images, "--anneal", "lik", "--lambda0", "1", "--anneal-scale",
                                   "calibrated", "--anneal-weight", "0.5"])
    assert any("--anneal-weight has no effect with --anneal-scale calibrated" in n
               for n in train.unused_settings(config, ["anneal_weight", "anneal_scale"]))


@pytest.mark.parametrize("objective", ["jsd", "rkl", "wgan"])
def test_logged_gradient_ratio_is_the_ratio_of_feature_gradients(images, objective):  # noqa: F811
    """grad_ratio_anneal = ||d loss_anneal/d f|| / ||d loss_gen_adv/d f|| recomputed from the step's own f."""
    updater, _ = make_updater(images, "--objective", objective, "--anneal", "lik", "--lambda0", "1",
                              "--anneal-scale", "calibrated", "--n-critic", "1")
    updater.diagnostics_every = 1
    seen = {}
    original = updater.report_anneal_strength

    def spy(f_fake, parts, lam):
        grads = {n: chainer.grad([parts[n]], [f_fake])[0].array for n in parts}
        seen["ratio"] = numpy.linalg.norm(grads["loss_anneal"]) / numpy.linalg.norm(grads["loss_gen_adv"])
        seen["d"] = f_fake.size // len(f_fake)
        original(f_fake, parts, lam)

    updater.report_anneal_strength = spy
    observation = run_steps(updater, 1)[0]
    assert observation["grad_ratio_anneal"] == pytest.approx(seen["ratio"], rel=1e-5)
    assert observation["lambda_effective"] == pytest.approx(observation["lambda"], rel=1e-12)
    assert ("grad_ratio_dfm" in observation) == (objective == "jsd")


def test_measuring_the_ratio_changes_no_parameter(images):  # noqa: F811
    flags = ("--objective", "jsd", "--anneal", "lik", "--lambda0", "1")
    measured, _ = make_updater(images, *flags)
    measured.diagnostics_every = 1
    plain, _ = make_updater(images, *flags)
    plain.diagnostics_every = 0
    run_steps(measured, 3)
    observations = run_steps(plain, 3)
    assert "grad_ratio_anneal" not in observations[0]
    assert_same_params(snapshot_params(measured), snapshot_params(plain))


def test_faithful_is_the_default_and_unchanged(images):  # noqa: F811
    """No flag = faithful = the released c: the same parameters as an explicit --anneal-scale faithful."""
    a, config = make_updater(images, "--anneal", "ent", "--lambda0", "1")
    assert config["anneal_scale"] == "faithful"
    b, _ = make_updater(images, "--anneal", "ent", "--lambda0", "1", "--anneal-scale", "faithful")
    run_steps(a, 2)
    run_steps(b, 2)
    assert_same_params(snapshot_params(a), snapshot_params(b))
