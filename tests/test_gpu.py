"""GPU checks (marked ``gpu``: skipped without CuPy and a CUDA device; see conftest.py).

The same step on the GPU and on the CPU from the same parameters and inputs agrees to float32
rounding; FusedAdam on CuPy agrees with Chainer's own GPU Adam; the fused layers and losses give the unfused ones'
arrays; the NaN check reads CuPy scalars.
"""
import numpy
import pytest

import chainer

from chainer_va import train, updaters
from chainer_va.fused_adam import FusedAdam
from fused_twins import twins

pytestmark = pytest.mark.gpu

FLAGS = ["--width", "0.125", "--batchsize", "8", "--iterations", "10", "--channels", "1"]


def _rng():
    """The initial-weight state of the networks built here (a fixed seed: the tests are deterministic)."""
    return numpy.random.RandomState(0)


@pytest.fixture(autouse=True)
def deterministic_cudnn():
    """With cuDNN (CuPy 13) the backward-filter algorithm may sum in a nondeterministic order; the
    bit-for-bit comparisons below need the deterministic algorithms (no effect without cuDNN)."""
    with chainer.using_config("cudnn_deterministic", True):
        yield


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "images.npy"
    numpy.save(path, numpy.random.RandomState(0).uniform(-1, 1, (64, 1, 32, 32)).astype(numpy.float32))
    return str(path)


def _grads(updater):
    """Every optimizer's gradients after a step (left in place by ``optimize``), on the host; all finite
    (``assert_allclose`` and ``assert_array_equal`` take NaN as equal to NaN)."""
    grads = {(name, p): chainer.backend.CpuDevice().send(a.grad)
             for name, opt in updater.get_all_optimizers().items() for p, a in opt.target.namedparams()}
    assert all(numpy.isfinite(g).all() for g in grads.values())
    return grads


@pytest.mark.parametrize("objective,anneal", [("jsd", "lik"), ("rkl", "ent"), ("wgan", "lgan")])
def test_a_training_step_on_the_gpu_matches_the_cpu(images, objective, anneal):
    # One step from the same initial parameters and inputs: the losses and every gradient agree to
    # float32 rounding of different kernels. (Parameters after Adam's first step are not compared:
    # Adam's first update is about lr * sign(g), so a gradient element at rounding level can flip it.)
    results = {}
    for device in ("@numpy", "@cupy:0"):
        config = train.resolve_config(["--dataset", images, *FLAGS, "--objective", objective, "--anneal", anneal,
                                       "--lambda0", "0.5", "--n-critic", "1"])
        updater = train.build_updater(config, train.load_dataset(config), chainer.get_device(device))
        reporter = chainer.Reporter()
        observation = {}
        with reporter.scope(observation):
            updater.update()
        results[device] = (_grads(updater), {k: float(v.array if isinstance(v, chainer.Variable) else v)
                                             for k, v in observation.items()})
    (cpu_grads, cpu_obs), (gpu_grads, gpu_obs) = results["@numpy"], results["@cupy:0"]
    assert cpu_obs.keys() == gpu_obs.keys()
    for key in cpu_obs:
        assert gpu_obs[key] == pytest.approx(cpu_obs[key], rel=1e-3, abs=1e-5), key
    assert cpu_grads.keys() == gpu_grads.keys()
    # the tolerance scales with the largest gradient of the same network: a bias feeding a BN layer has a
    # true gradient of 0, so its own maximum is rounding residue (1e-14..1e-9) that differs between devices
    scales = {}
    for (name, _), cpu in cpu_grads.items():
        scales[name] = max(scales.get(name, 0.0), float(numpy.abs(cpu).max()))
    for key, cpu in cpu_grads.items():
        numpy.testing.assert_allclose(gpu_grads[key], cpu, rtol=1e-2, atol=1e-3 * (scales[key[0]] or 1.0),
                                      err_msg=str(key))


def test_fused_adam_on_cupy_matches_chainers_gpu_adam():
    import cupy

    def run(optimizer_class):
        numpy.random.seed(0)
        link = chainer.links.Linear(64, 32)
        link.to_device("@cupy:0")
        optimizer = optimizer_class(alpha=1e-3, beta1=0.5, beta2=0.9)
        optimizer.setup(link)
        for step in range(5):
            rng = numpy.random.RandomState(step)
            for p in link.params():
                p.grad = cupy.asarray(rng.normal(size=p.shape).astype(numpy.float32))
            optimizer.update()
        return {name: cupy.asnumpy(p.array) for name, p in link.namedparams()}, optimizer

    fused, optimizer = run(FusedAdam)
    plain, _ = run(chainer.optimizers.Adam)
    assert optimizer.fused_updates == 5
    for name in plain:  # Chainer's GPU kernel groups the last line differently: float32 rounding apart
        numpy.testing.assert_allclose(fused[name], plain[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_fused_adam_resumes_from_a_snapshot_on_cupy(tmp_path):
    """A snapshot loads Adam's m and v as numpy arrays; the fused update sends them to the device (as
    Chainer's own update does) before packing them into its CuPy buffers, and continues the run."""
    import cupy

    def link_and_optimizer():
        numpy.random.seed(0)
        link = chainer.links.Linear(16, 8)
        link.to_device("@cupy:0")
        optimizer = FusedAdam(alpha=1e-3, beta1=0.5, beta2=0.9)
        optimizer.setup(link)
        return link, optimizer

    def step(link, optimizer, seed):
        rng = numpy.random.RandomState(seed)
        for p in link.params():
            p.grad = cupy.asarray(rng.normal(size=p.shape).astype(numpy.float32))
        optimizer.update()

    link, optimizer = link_and_optimizer()
    for seed in range(2):
        step(link, optimizer, seed)
    chainer.serializers.save_npz(str(tmp_path / "link.npz"), link)
    chainer.serializers.save_npz(str(tmp_path / "opt.npz"), optimizer)
    step(link, optimizer, 2)
    resumed_link, resumed = link_and_optimizer()
    chainer.serializers.load_npz(str(tmp_path / "link.npz"), resumed_link)
    chainer.serializers.load_npz(str(tmp_path / "opt.npz"), resumed)
    step(resumed_link, resumed, 2)
    assert resumed.fused_updates == 1 and resumed.t == 3
    for (name, a), (_, b) in zip(sorted(link.namedparams()), sorted(resumed_link.namedparams())):
        numpy.testing.assert_array_equal(cupy.asnumpy(b.array), cupy.asnumpy(a.array), err_msg=name)


def test_non_finite_check_reads_cupy_scalars(images):
    config = train.resolve_config(["--dataset", images, *FLAGS, "--objective", "rkl"])
    updater = train.build_updater(config, train.load_dataset(config), chainer.get_device("@cupy:0"))
    import cupy

    with pytest.raises(updaters.NonFiniteLossError, match="loss_x"):
        updater.check_finite({"loss_x": chainer.Variable(cupy.asarray(numpy.float32("nan")))})


@pytest.mark.parametrize("network", ["denoiser", "generator", "discriminator"])
def test_fused_layers_on_cupy_match_the_unfused_ones(network):
    # the fused node runs Chainer's own GPU kernels in the same order: identical arrays
    import cupy

    from chainer_va import nets

    make, shape = {
        "denoiser": (lambda: nets.Denoiser((8, 2, 2), width=0.05, rng=_rng()), (16, 8, 2, 2)),
        "generator": (lambda: nets.Generator(latent_dim=8, out_channels=1, width=0.0625, rng=_rng()), (6, 8)),
        "discriminator": (lambda: nets.DFMDiscriminator(in_channels=1, width=0.0625, rng=_rng()), (6, 1, 32, 32)),
    }[network]
    numpy.random.seed(0)
    fused, plain = twins(make)
    x0 = numpy.random.RandomState(1).normal(size=shape).astype(numpy.float32)
    results = []
    for link in (fused, plain):
        link.to_device("@cupy:0")
        link.cleargrads()  # a new link's gradients are NaN until cleared (Chainer's Parameter)
        x = chainer.Variable(cupy.asarray(x0))
        out = link(x)
        y = out[0] if isinstance(out, tuple) else out
        chainer.functions.sum(y * y).backward()
        results.append([cupy.asnumpy(y.array), cupy.asnumpy(x.grad), cupy.asnumpy(link.bn1.avg_var)]
                       + [cupy.asnumpy(p.grad) for _, p in sorted(link.namedparams()) if p.grad is not None])
    assert len(results[0]) == len(results[1])
    for a, b in zip(*results):
        assert numpy.isfinite(a).all()  # NaN == NaN would pass assert_array_equal
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("objective,anneal", [("jsd", "lik"), ("wgan", "lgan")])
def test_fused_losses_on_cupy_give_the_unfused_step(images, objective, anneal):
    # the fused loss chains run Chainer's own GPU kernels in the same order: identical losses and gradients
    results = []
    for losses in ("fused", "chainer"):
        config = train.resolve_config(["--dataset", images, *FLAGS, "--objective", objective, "--anneal", anneal,
                                       "--lambda0", "0.5", "--n-critic", "1", "--losses", losses])
        updater = train.build_updater(config, train.load_dataset(config), chainer.get_device("@cupy:0"))
        observation = {}
        with chainer.Reporter().scope(observation):
            updater.update()
        results.append((_grads(updater), {k: float(v.array if isinstance(v, chainer.Variable) else v)
                                          for k, v in observation.items()}))
    assert results[0][1] == results[1][1]
    for key, grad in results[0][0].items():
        numpy.testing.assert_array_equal(grad, results[1][0][key], err_msg=str(key))


def test_fused_critic_penalty_gradients_on_cupy_match_the_unfused_ones():
    # the WGAN-GP penalty's double backprop through the fused conv + lReLU layers (ConvolutionInputGrad)
    # runs Chainer's own GPU kernels in the same order: identical weight gradients
    import cupy

    from chainer_va import nets

    rs = numpy.random.RandomState(4)
    x_real, x_fake = (cupy.asarray(rs.uniform(-1, 1, (4, 1, 32, 32)).astype(numpy.float32)) for _ in range(2))
    u = cupy.asarray(rs.uniform(0, 1, (4, 1, 1, 1)).astype(numpy.float32))
    grads = []
    for fused in (True, False):
        critic = nets.WGANCritic(in_channels=1, width=0.0625, rng=numpy.random.RandomState(3))
        critic.to_device("@cupy:0")
        critic.cleargrads()  # a new link's gradients are NaN until cleared (Chainer's Parameter)
        with chainer.using_config("fused_layers", fused):
            loss = (chainer.functions.mean(critic(x_fake)[1]) - chainer.functions.mean(critic(x_real)[1])
                    + updaters.gradient_penalty(critic, x_real, x_fake, u))
            loss.backward()
        grads.append({name: cupy.asnumpy(p.grad) for name, p in critic.namedparams()})
    for name in grads[0]:
        assert numpy.isfinite(grads[0][name]).all(), name
        numpy.testing.assert_array_equal(grads[0][name], grads[1][name], err_msg=name)
