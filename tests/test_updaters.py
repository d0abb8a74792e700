"""Objectives x annealing terms train; annealing gradients, DAE-score and WGAN-GP penalty against closed forms."""
import numpy
import pytest

import chainer
import chainer.links as L

from chainer_va import annealing, nets, train, updaters
from va_core import schedules, tempering
from chainer_va.latent import LatentSampler, NoiseSource, SeededSerialIterator
from node_counter import NodeCounter

TINY = ["--width", "0.0625", "--batchsize", "4", "--iterations", "10", "--channels", "1"]


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "images.npy"
    numpy.save(path, numpy.random.RandomState(0).uniform(-1, 1, (32, 1, 32, 32)).astype(numpy.float32))
    return str(path)


def make_updater(images, *flags):
    config = train.resolve_config(["--dataset", images] + TINY + list(flags))
    return train.build_updater(config, train.load_dataset(config), chainer.get_device("@numpy")), config


def run_steps(updater, n):
    observations = []
    reporter = chainer.Reporter()
    for _ in range(n):
        observation = {}
        with reporter.scope(observation):
            updater.update()
        observations.append({k: float(v.array if isinstance(v, chainer.Variable) else v)
                             for k, v in observation.items()})
    return observations


def snapshot_params(updater):
    return {name: {p: a.array.copy() for p, a in opt.target.namedparams()}
            for name, opt in updater.get_all_optimizers().items()}


def assert_same_params(a, b):
    """Two :func:`snapshot_params` results are equal bit for bit."""
    assert a.keys() == b.keys()
    for name in a:
        for p in a[name]:
            numpy.testing.assert_array_equal(a[name][p], b[name][p], err_msg="{}{}".format(name, p))


def combination_flags(objective, anneal):
    """CLI flags of one objective x annealing combination (lambda0 0.5 with a term, 2 critic steps)."""
    lam = ("--lambda0", "0.5") if anneal != "none" else ()
    return ("--objective", objective, "--anneal", anneal, "--n-critic", "2") + lam


@pytest.mark.parametrize("objective", ["jsd", "rkl", "wgan"])
@pytest.mark.parametrize("anneal", ["none", "lik", "ent", "lgan"])
def test_every_combination_trains(images, objective, anneal):
    lam = ["--lambda0", "0.5"] if anneal != "none" else []
    updater, config = make_updater(images, "--objective", objective, "--anneal", anneal, "--n-critic", "2", *lam)
    before = snapshot_params(updater)
    observations = run_steps(updater, 2)
    expected_opts = {"gen", "dis"}
    if anneal in ("lik", "lgan") or (objective == "jsd" and anneal in ("none", "ent")):
        expected_opts.add("denoiser_data")
    if anneal == "ent":
        expected_opts.add("denoiser_fake")
    assert set(updater.get_all_optimizers()) == expected_opts
    for obs in observations:
        assert ("beta" in obs) == (anneal != "lgan")  # the LGAN term targets no p^beta
        for key in ["loss_gen", "loss_dis", "loss_gen_adv", "lambda"] + ["beta"] * (anneal != "lgan") + [
                "loss_" + n for n in expected_opts if n.startswith("denoiser")]:
            assert numpy.isfinite(obs[key]), (key, obs)
        assert ("loss_dfm" in obs) == (objective == "jsd" and anneal != "lgan")
        assert ("loss_anneal" in obs) == (anneal != "none")
        assert ("loss_gp" in obs) == (objective == "wgan")
        # L_G is the sum of its reported parts
        parts = sum(obs[k] for k in ("loss_gen_adv", "loss_dfm", "loss_anneal") if k in obs)
        assert obs["loss_gen"] == pytest.approx(parts, rel=1e-5, abs=1e-6)
    schedule = schedules.make("linear", config["lambda0"], config["iterations"])
    for t, obs in enumerate(observations):
        assert obs["lambda"] == pytest.approx(schedule(t))
        if anneal != "lgan":
            assert obs["beta"] == pytest.approx(tempering.implied_beta(anneal, schedule(t)))
    after = snapshot_params(updater)
    for name in before:
        changed = [p for p in before[name] if not numpy.array_equal(before[name][p], after[name][p])]
        assert changed, "no parameter of {} changed".format(name)
        # every weight matrix of the link moved (biases before BN may get tiny gradients only)
        for p in before[name]:
            if p.endswith("/W"):
                assert not numpy.array_equal(before[name][p], after[name][p]), (name, p)


def test_wgan_runs_n_critic_steps_on_fresh_batches(images):
    updater, _ = make_updater(images, "--objective", "wgan", "--n-critic", "3")
    iterator = updater.get_iterator("main")
    run_steps(updater, 1)
    assert iterator.current_position == 3 * 4  # three fresh real batches of 4 for one generator step
    assert updater.get_optimizer("dis").t == 3 and updater.get_optimizer("gen").t == 1


def make_pool(feature_shape, sigma=1.0, seed=0, hidden=16, n_layers=2):
    init_rng = numpy.random.RandomState(seed)
    return annealing.DenoiserPool(
        lambda: nets.Denoiser(feature_shape, hidden=hidden, n_layers=n_layers, rng=init_rng),
        lambda link: updaters.make_adam(link, lr=1e-3, beta1=0.9, beta2=0.999), NoiseSource(seed), sigma=sigma)


@pytest.mark.parametrize("name,sign,source", [("lik", 1.0, "data"), ("ent", -1.0, "fake")])
def test_annealing_term_gradient_is_closed_form(name, sign, source):
    pool = make_pool((4, 2, 2))
    c, lam = 0.03, 0.7
    term = annealing.get(name)(pool, weight=c)
    denoiser = pool.get(source)
    for _ in range(3):  # give the BN running statistics some non-trivial values
        denoiser.update(denoiser.loss(numpy.random.RandomState(1).normal(size=(8, 4, 2, 2)).astype(numpy.float32)))
    f_array = numpy.random.RandomState(2).normal(size=(5, 4, 2, 2)).astype(numpy.float32)
    f = chainer.Variable(f_array.copy())
    denoiser.link.cleargrads()
    loss = term.generator_loss(f, lam)
    loss.backward()
    with chainer.using_config("train", False):
        r = denoiser.link(f_array).array  # r in inference mode, computed independently
    n = f_array.size
    expected = sign * 2.0 * c * lam * (f_array - r) / n
    numpy.testing.assert_allclose(f.grad, expected, rtol=1e-5, atol=1e-9)
    assert float(loss.array) == pytest.approx(sign * c * lam * float(((f_array - r) ** 2).mean()), rel=1e-5)
    # the stop-gradient: the term sends no gradient to the denoiser
    assert all(p.grad is None for p in denoiser.link.params())


def test_lgan_term_gradient_is_closed_form():
    pool = make_pool((4, 2, 2))
    term = annealing.get("lgan")(pool)
    assert not term.keeps_dfm_term
    f_array = numpy.random.RandomState(3).normal(size=(3, 4, 2, 2)).astype(numpy.float32)
    f = chainer.Variable(f_array.copy())
    lam = -0.4
    term.generator_loss(f, lam).backward()
    r = pool.get("data").reconstruct(f_array)
    numpy.testing.assert_allclose(f.grad, lam * (r - 2.0 * f_array) / f_array.size, rtol=1e-5, atol=1e-9)


def test_dae_score_matches_smoothed_gaussian_score():
    """A denoiser trained on N(0, s^2 I_2) + sigma noise: (r(x) - x)/sigma^2 ~ -x / (s^2 + sigma^2).

    Tolerances: on the 7x7 grid |x_i| <= 1.5 (true score up to 1.7 in norm) the root-mean-square error
    is below 0.1 and the largest error below 0.3 (seeds 0-2 gave RMS 0.06, max 0.15-0.22), and the
    least-squares linear fit of the estimate, a 2x2 matrix, is within 0.08 of -I / (s^2 + sigma^2) =
    -0.8 I entry by entry (r = 0 gives -4 I, r = identity gives 0: both fail).
    """
    s, sigma = 1.0, 0.5
    pool = make_pool((2,), sigma=sigma, hidden=64, n_layers=1)
    denoiser = pool.get("data")
    denoiser.optimizer.hyperparam.alpha = 3e-3
    rng = numpy.random.RandomState(4)
    for step in range(600):
        if step == 450:  # a smaller step for the last quarter: less optimisation noise
            denoiser.optimizer.hyperparam.alpha = 3e-4
        denoiser.update(denoiser.loss((s * rng.standard_normal((512, 2))).astype(numpy.float32)))
    grid = numpy.linspace(-1.5, 1.5, 7, dtype=numpy.float32)
    x = numpy.stack(numpy.meshgrid(grid, grid), axis=-1).reshape(-1, 2)
    estimate = denoiser.score(x)
    truth = -x / (s ** 2 + sigma ** 2)
    assert numpy.sqrt(((estimate - truth) ** 2).mean()) < 0.1, numpy.c_[x, estimate, truth]
    assert numpy.abs(estimate - truth).max() < 0.3, numpy.c_[x, estimate, truth]
    fit = numpy.linalg.lstsq(numpy.c_[x, numpy.ones(len(x))], estimate, rcond=None)[0]
    numpy.testing.assert_allclose(fit[:2], -numpy.eye(2) / (s ** 2 + sigma ** 2), atol=0.08)


class LinearCritic(chainer.Chain):
    def __init__(self, n_in):
        super().__init__()
        with self.init_scope():
            self.l = L.Linear(n_in, 1, initialW=chainer.initializers.Normal(0.7))

    def forward(self, x):
        return x, self.l(x)


def test_gradient_penalty_of_linear_critic():
    numpy.random.seed(5)
    critic = LinearCritic(8)
    w = critic.l.W.array.ravel().astype(numpy.float64)
    norm = numpy.linalg.norm(w)
    rng = numpy.random.RandomState(6)
    x_real = rng.normal(size=(6, 2, 2, 2)).astype(numpy.float32)
    x_fake = rng.normal(size=(6, 2, 2, 2)).astype(numpy.float32)
    u = rng.uniform(size=(6, 1, 1, 1)).astype(numpy.float32)
    penalty = updaters.gradient_penalty(critic, x_real, x_fake, u, weight=10.0)
    assert float(penalty.array) == pytest.approx(10.0 * (norm - 1.0) ** 2, rel=1e-5)
    critic.cleargrads()
    penalty.backward()
    # double backprop: d/dw 10 (||w|| - 1)^2 = 20 (||w|| - 1) w / ||w||
    numpy.testing.assert_allclose(critic.l.W.grad.ravel(), 20.0 * (norm - 1.0) * w / norm, rtol=1e-4)
    assert critic.l.b.grad is None or numpy.all(critic.l.b.grad == 0)


def test_non_finite_loss_names_loss_and_iteration(images):
    updater, _ = make_updater(images, "--objective", "rkl")
    run_steps(updater, 1)
    before = snapshot_params(updater)
    updater.gen.l0.W.array[...] = numpy.nan
    with pytest.raises(updaters.NonFiniteLossError, match=r"loss 'loss_dis' is nan at iteration 1"):
        run_steps(updater, 1)
    assert numpy.array_equal(before["dis"]["/l_out/W"], updater.dis.l_out.W.array)  # no update was applied


def test_latent_sampler_distribution_and_state_roundtrip():
    sampler = LatentSampler(128, seed=7)
    z = sampler(2000)
    assert z.shape == (2000, 128) and z.dtype == numpy.float32
    assert z.min() >= -1.0 and z.max() < 1.0
    assert abs(float(z.mean())) < 0.01 and float(z.var()) == pytest.approx(1.0 / 3.0, rel=0.01)  # U(-1, 1)
    saved = chainer.serializers.DictionarySerializer()
    sampler.serialize(saved)
    expected = sampler(4)
    restored = LatentSampler(128, seed=99)
    restored.serialize(chainer.serializers.NpzDeserializer(saved.target))
    numpy.testing.assert_array_equal(restored(4), expected)


def _noise_steps(source, steps, snapshot_after=None):
    """Draws of a WGAN-GP-like step pattern (u, then two feature noises), one step changing its shapes
    (a mismatch with what was prefetched), with a snapshot taken after step ``snapshot_after``."""
    draws, saved = [], None
    for step in range(steps):
        shapes = [(3, 5)] if step == 3 else [(4, 6), (2, 3)]  # step 3 asks for other draws than step 2
        draws.append(source.uniform((4, 1, 1, 1)))
        draws += [source.normal(shape) for shape in shapes]
        source.step_done()
        if step == snapshot_after:
            for future in source._ahead:  # the next step's draws are made: the generator has moved on
                future.result()
            saved = chainer.serializers.DictionarySerializer()
            source.serialize(saved)
    return draws, saved


def test_prefetched_noise_is_the_inline_noise_and_snapshots_the_same_state():
    inline, _ = _noise_steps(NoiseSource(5), 6)
    prefetching = NoiseSource(5, prefetch=True)
    prefetched, saved = _noise_steps(prefetching, 6, snapshot_after=1)
    assert len(prefetched) == len(inline) and prefetching._executor is not None
    for a, b in zip(prefetched, inline):
        assert a.dtype == numpy.float32
        numpy.testing.assert_array_equal(a, b)
    # the snapshot after step 1 (step 2's draws already made ahead) holds the state after step 1's
    # draws: a source loaded from it continues with step 2's numbers, prefetching or not
    for prefetch in (False, True):
        resumed = NoiseSource(99, prefetch=prefetch)
        resumed.serialize(chainer.serializers.NpzDeserializer(saved.target))
        numpy.testing.assert_array_equal(resumed.uniform((4, 1, 1, 1)), inline[6])
        numpy.testing.assert_array_equal(resumed.normal((4, 6)), inline[7])
    # saving did not disturb the prefetching source (checked above: its later draws are the inline ones)
    assert float(numpy.std(inline[1])) == pytest.approx(1.0, abs=0.45)  # N(0, 1) draws, not zeros


@pytest.mark.parametrize("objective,anneal", [("jsd", "ent"), ("wgan", "lik")])
def test_noise_prefetch_gives_the_inline_step_exactly(images, objective, anneal):
    flags = combination_flags(objective, anneal)
    prefetching, config = make_updater(images, *flags)
    inline, _ = make_updater(images, *flags, "--noise", "inline")
    assert config["noise"] == "prefetch" and prefetching.noise.prefetch and not inline.noise.prefetch
    assert run_steps(prefetching, 3) == run_steps(inline, 3)
    assert_same_params(snapshot_params(prefetching), snapshot_params(inline))


@pytest.mark.parametrize("objective", ["jsd", "rkl", "wgan"])
@pytest.mark.parametrize("anneal", ["none", "lik", "ent", "lgan"])
def test_backprop_to_the_updated_network_only_gives_the_full_backward_exactly(images, objective, anneal):
    flags = combination_flags(objective, anneal)
    needed, config = make_updater(images, *flags)
    full, _ = make_updater(images, *flags, "--backprop", "all")
    assert config["backprop"] == "needed"
    assert needed.speedups.backprop_needed_only and not full.speedups.backprop_needed_only
    assert run_steps(needed, 3) == run_steps(full, 3)
    assert_same_params(snapshot_params(needed), snapshot_params(full))


def test_backprop_to_the_updated_network_only_gives_the_full_backward_exactly_with_chainers_nodes(images):
    # Chainer's own layer and loss nodes (each with its own backward) and the WGAN-GP double backprop
    flags = combination_flags("wgan", "ent") + ("--layers", "chainer", "--losses", "chainer")
    needed, _ = make_updater(images, *flags)
    full, _ = make_updater(images, *flags, "--backprop", "all")
    assert run_steps(needed, 2) == run_steps(full, 2)
    assert_same_params(snapshot_params(needed), snapshot_params(full))


def _first_layer_gradients(monkeypatch, updater):
    """(data gradient?, weight gradient?) that each backward of D's first layer was asked for in one step."""
    from chainer_va import fused_layers
    asked = []
    backward = fused_layers.AffineBNActivation.backward

    def recording(node, indexes, grad_outputs):
        if node.inputs[0].shape[1:] == (1, 32, 32):  # the image batch's shape: the first conv
            asked.append((0 in indexes, 1 in indexes))
        return backward(node, indexes, grad_outputs)

    monkeypatch.setattr(fused_layers.AffineBNActivation, "backward", recording)
    run_steps(updater, 1)
    monkeypatch.undo()
    return sorted(asked)


@pytest.mark.parametrize("objective", ["jsd", "wgan"])
def test_backprop_computes_no_gradient_that_no_update_reads(images, monkeypatch, objective):
    # D's first layer is differentiated by the generator's backward through D(x_fake) (data gradient only:
    # D's weights are not the generator's), by the discriminator's on the real and the fake batch (weights
    # only: nothing reads d/dx_real or d/dx_fake) and, in WGAN-GP's critic steps, by the penalty's
    # chainer.grad for d/dx_hat (data only)
    flags = combination_flags(objective, "none")
    needed, _ = make_updater(images, *flags)
    full, _ = make_updater(images, *flags, "--backprop", "all")
    if objective == "jsd":  # one step: G through D(fake), then D on the real and the (unchained) fake batch
        assert _first_layer_gradients(monkeypatch, needed) == [(False, True), (False, True), (True, False)]
        assert _first_layer_gradients(monkeypatch, full) == [(False, True), (True, True), (True, True)]
    else:  # 2 critic steps (the penalty's d/dx_hat, D on real and fake), then G through D(fake)
        assert _first_layer_gradients(monkeypatch, needed) == [(False, True)] * 4 + [(True, False)] * 3
        assert _first_layer_gradients(monkeypatch, full) == [(False, True)] * 4 + [(True, False)] * 2 + [(True, True)]


def test_iterator_order_state_roundtrip():
    data = numpy.arange(10, dtype=numpy.float32)[:, None]
    it = SeededSerialIterator(data, 3, seed=1)
    for _ in range(5):
        it.next()
    saved = chainer.serializers.DictionarySerializer()
    it.serialize(saved)
    expected = [numpy.stack(it.next()) for _ in range(6)]  # crosses epoch boundaries (reshuffles)
    other = SeededSerialIterator(data, 3, seed=2)
    other.serialize(chainer.serializers.NpzDeserializer(saved.target))
    for e in expected:
        numpy.testing.assert_array_equal(numpy.stack(other.next()), e)


def test_unknown_names_are_clear_errors():
    # Plugins registered by other tests in this worker (e.g. the LSGAN example) may join the list,
    # so check the message's shape and that every built-in objective is offered, not an exact list.
    with pytest.raises(ValueError, match=r"unknown objective 'foo'; choose one of: .*--plugin") as error:
        updaters.get("foo")
    offered = str(error.value).split("choose one of: ")[1].split(" (")[0].split(", ")
    assert {"jsd", "rkl", "wgan"} <= set(offered)
    assert offered == sorted(offered)
    with pytest.raises(ValueError, match=r"unknown annealing term 'bar'; choose one of: ") as error:
        annealing.get("bar")
    offered = str(error.value).split("choose one of: ")[1].split(" (")[0].split(", ")
    assert {"ent", "lgan", "lik", "none"} <= set(offered) and offered == sorted(offered)
    assert updaters.options("jsd") == ["dfm_weight"]
    assert updaters.options("wgan") == ["gp_weight", "n_critic"]


@pytest.mark.parametrize("objective", ["jsd", "wgan"])
def test_celeba_size_networks_train(tmp_path, objective):
    """128x128 RGB (Table S2 networks; the critic's 128x128 front is [inferred]) through the same updaters."""
    path = tmp_path / "faces.npy"
    numpy.save(path, numpy.random.RandomState(1).uniform(-1, 1, (8, 3, 128, 128)).astype(numpy.float32))
    config = train.resolve_config(["--dataset", str(path), "--channels", "3", "--image-size", "128", "--width",
                                   "0.0625", "--batchsize", "4", "--iterations", "5", "--objective", objective,
                                   "--anneal", "lik", "--lambda0", "1", "--n-critic", "1"])
    updater = train.build_updater(config, train.load_dataset(config), chainer.get_device("@numpy"))
    assert updater.gen.size == 128 and updater.dis.size == 128
    obs = run_steps(updater, 1)[0]
    assert all(numpy.isfinite(obs[k]) for k in ("loss_gen", "loss_dis", "loss_anneal", "loss_denoiser_data"))


@pytest.mark.parametrize("objective,anneal,forwards_per_step", [("jsd", "lik", (1, 2)), ("jsd", "none", (1, 1)),
                                                                 ("rkl", "lik", (1, 1))])
def test_reused_reconstruction_gives_the_unoptimised_step_exactly(images, objective, anneal, forwards_per_step):
    # JSD + lik needs sg r_data(f_fake) twice per step (DFM's term and the annealing term): the pool's
    # denoisers compute it once. The optimised step must be bit-identical to the step that recomputes it.
    flags = ("--objective", objective, "--anneal", anneal) + (("--lambda0", "0.5") if anneal != "none" else ())
    optimised, _ = make_updater(images, *flags)
    plain, _ = make_updater(images, *flags)
    for _, denoiser in plain.denoisers.items():
        denoiser.reuse_reconstruction = False
    assert all(d.reuse_reconstruction for _, d in optimised.denoisers.items())
    steps = 3
    obs_optimised, obs_plain = run_steps(optimised, steps), run_steps(plain, steps)
    assert obs_optimised == obs_plain
    assert_same_params(snapshot_params(optimised), snapshot_params(plain))
    data_optimised = dict(optimised.denoisers.items())["data"]
    data_plain = dict(plain.denoisers.items())["data"]
    assert (data_optimised.forward_count, data_plain.forward_count) == tuple(steps * n for n in forwards_per_step)


def test_reuse_never_returns_a_reconstruction_from_before_an_update():
    pool = make_pool((4, 2, 2))
    denoiser = pool.get("data")
    f = numpy.random.RandomState(4).normal(size=(6, 4, 2, 2)).astype(numpy.float32)
    first = denoiser.reconstruct(f)
    assert denoiser.reconstruct(f) is first and denoiser.forward_count == 1
    assert denoiser.reconstruct(f.copy()) is not first          # another array object: recomputed
    denoiser.update(denoiser.loss(f))
    again = denoiser.reconstruct(f)
    assert denoiser.forward_count == 3 and not numpy.array_equal(again, first)


def test_type_checks_run_on_the_first_step_only_and_change_nothing(images, monkeypatch):
    calls = []
    original = chainer.FunctionNode._check_data_type_forward

    def counting(self, in_data):
        calls.append(type(self).__name__)
        return original(self, in_data)

    monkeypatch.setattr(chainer.FunctionNode, "_check_data_type_forward", counting)
    flags = ("--objective", "wgan", "--anneal", "ent", "--lambda0", "0.5", "--n-critic", "2")
    first_only, _ = make_updater(images, *flags)
    every, _ = make_updater(images, *flags)
    every.check_types_every_step = True
    per_step = {}
    for name, updater in (("first_only", first_only), ("every", every)):
        counts = []
        for _ in range(3):
            del calls[:]
            run_steps(updater, 1)
            counts.append(len(calls))
        per_step[name] = counts
    assert per_step["first_only"][0] > 0 and per_step["first_only"][1:] == [0, 0]
    assert per_step["every"] == [per_step["first_only"][0]] * 3
    assert_same_params(snapshot_params(first_only), snapshot_params(every))
    # a process-wide CHAINER_TYPE_CHECK=0 is respected on the first step too
    fresh, _ = make_updater(images, *flags)
    del calls[:]
    with chainer.using_config("type_check", False):
        run_steps(fresh, 1)
    assert calls == []


@pytest.mark.parametrize("objective", ["jsd", "rkl", "wgan"])
@pytest.mark.parametrize("anneal", ["none", "lik", "ent", "lgan"])
def test_fused_layers_give_the_unfused_step_exactly(images, objective, anneal):
    # --layers fused (default) runs each affine + BN + activation layer of G, D and the denoisers, the
    # discriminator's head and the critic's input gradient for the penalty as one node each; the steps
    # must be bit-identical to Chainer's own nodes
    flags = combination_flags(objective, anneal)
    fused, config = make_updater(images, *flags)
    plain, _ = make_updater(images, *flags, "--layers", "chainer")
    assert config["layers"] == "fused" and fused.speedups.layers and not plain.speedups.layers
    fused_steps, fused_nodes = counted_steps(fused, 3)
    plain_steps, plain_nodes = counted_steps(plain, 3)
    assert "AffineBNActivation" in fused_nodes and "AffineBNActivation" not in plain_nodes  # each step chose
    assert fused_steps == plain_steps
    assert_same_params(snapshot_params(fused), snapshot_params(plain))
    numpy.testing.assert_array_equal(fused.gen.bn1.avg_var, plain.gen.bn1.avg_var)
    for (_, d), (_, e) in zip(fused.denoisers.items(), plain.denoisers.items()):
        numpy.testing.assert_array_equal(d.link.bn3.avg_var, e.link.bn3.avg_var)


@pytest.mark.parametrize("objective", ["jsd", "rkl", "wgan"])
@pytest.mark.parametrize("anneal", ["none", "lik", "ent", "lgan"])
def test_fused_losses_give_the_unfused_step_exactly(images, objective, anneal):
    # --losses fused (default) builds each loss chain (softplus means, feature terms, the LGAN term, the
    # penalty) as one node; every objective's steps must be bit-identical to Chainer's own nodes (a
    # fused node is found earlier in backprop than the unfused chain's first node: this checks that
    # no gradient sum changes order), alone and with every speed-up off
    flags = combination_flags(objective, anneal)
    fused, config = make_updater(images, *flags)
    assert config["losses"] == "fused" and fused.speedups.losses
    steps, nodes = counted_steps(fused, 3)
    reference = steps, snapshot_params(fused)
    assert any(label.startswith("UnaryChain(") for label in nodes)
    offs = [("--losses", "chainer")]
    if anneal in ("ent", "lgan"):
        offs.append(("--losses", "chainer", "--layers", "chainer", "--adam", "chainer"))
    for off in offs:
        plain, _ = make_updater(images, *flags, *off)
        steps, nodes = counted_steps(plain, 3)
        assert not plain.speedups.losses and not any(label.startswith("UnaryChain(") for label in nodes)
        assert steps == reference[0]
        assert_same_params(reference[1], snapshot_params(plain))


def counted_steps(updater, n):
    """``run_steps(updater, n)`` and the labels of the function nodes its steps applied."""
    with NodeCounter() as counter:
        steps = run_steps(updater, n)
    return steps, counter.applied


def test_check_finite_names_the_first_bad_loss_of_many(images):
    updater, _ = make_updater(images, "--objective", "rkl")
    f32 = numpy.float32
    ok = {"loss_a": chainer.Variable(numpy.asarray(f32(1.5))), "loss_b": numpy.asarray(f32(-2.0))}
    updater.check_finite(ok)
    updater.check_finite({})
    bad = dict(ok, loss_c=chainer.Variable(numpy.asarray(f32("inf"))), loss_d=numpy.asarray(f32("nan")))
    with pytest.raises(updaters.NonFiniteLossError, match=r"loss 'loss_c' is inf at iteration 0") as info:
        updater.check_finite(bad)
    assert info.value.loss_name == "loss_c" and info.value.value == float("inf")
