"""The fused denoiser layer gives Chainer's unfused lReLU(BN(Linear(x))) exactly, with fewer nodes."""
import io

import numpy
import pytest

import chainer
import chainer.functions as F

from chainer_va import nets
from chainer_va.fused_layers import AffineBNActivation, ConvolutionInputGrad, can_fuse, fused_layer
from fused_twins import twins
from node_counter import NodeCounter

pytestmark = pytest.mark.usefixtures("one_blas_thread")

SHAPE = (8, 2, 2)


def _rng():
    """The initial-weight state of the networks built here (a fixed seed: the tests are deterministic)."""
    return numpy.random.RandomState(0)


def twin_denoisers(width=0.05):
    return twins(lambda: nets.Denoiser(SHAPE, width=width, rng=_rng()))


# (network, input shape, loss of its output): each kind of fused layer (Linear/Conv/Deconv + BN +
# lReLU/ReLU) and each place the fused layers sit in (after a raw input, after a reshape, inside)
NETWORKS = {
    "denoiser": (lambda: nets.Denoiser(SHAPE, width=0.05, rng=_rng()), (16,) + SHAPE,
                 lambda y, x: F.mean_squared_error(y, x)),
    "generator": (lambda: nets.Generator(latent_dim=8, out_channels=1, width=0.0625, rng=_rng()), (6, 8),
                  lambda y, x: F.mean(y * y)),
    "discriminator": (lambda: nets.DFMDiscriminator(in_channels=1, width=0.0625, rng=_rng()),
                      (6, 1, 32, 32), lambda out, x: F.mean(out[0] ** 2) + F.mean(F.softplus(out[1]))),
}


def saved(link):
    buf = io.BytesIO()
    chainer.serializers.save_npz(buf, link)
    with numpy.load(io.BytesIO(buf.getvalue())) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_training_steps_are_bit_identical_to_the_unfused_layers(network):
    # outputs, every gradient (input included), the updated parameters and BN's running statistics
    make, shape, lossfun = NETWORKS[network]
    numpy.random.seed(0)
    fused, plain = twins(make)
    optimizers = {}
    for link in (fused, plain):
        optimizers[link] = chainer.optimizers.Adam(alpha=1e-3, beta1=0.5, beta2=0.9)
        optimizers[link].setup(link.link)
    rs = numpy.random.RandomState(1)
    for _ in range(3):
        x0 = rs.normal(size=shape).astype(numpy.float32)
        outputs, input_grads = [], []
        for link in (fused, plain):
            x = chainer.Variable(x0.copy())
            link.cleargrads()
            out = link(x)
            lossfun(out, x0).backward()
            optimizers[link].update()
            outputs.append(out[0].array if isinstance(out, tuple) else out.array)
            input_grads.append(x.grad)
        numpy.testing.assert_array_equal(outputs[0], outputs[1])
        numpy.testing.assert_array_equal(input_grads[0], input_grads[1])
        assert numpy.abs(input_grads[0]).sum() > 0
    for (name, p), (_, q) in zip(sorted(fused.namedparams()), sorted(plain.namedparams())):
        numpy.testing.assert_array_equal(p.array, q.array, err_msg=name)
        numpy.testing.assert_array_equal(p.grad, q.grad, err_msg=name)
    a, b = saved(fused.link), saved(plain.link)
    assert sorted(a) == sorted(b) and any(k.endswith("avg_var") for k in a)  # snapshots interchangeable
    for key in a:
        numpy.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not numpy.array_equal(a["bn1/avg_mean"], numpy.zeros_like(a["bn1/avg_mean"]))  # stats did move
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        out_fused, out_plain = fused(x0), plain(x0)
        for u, v in zip(out_fused if isinstance(out_fused, tuple) else (out_fused,),
                        out_plain if isinstance(out_plain, tuple) else (out_plain,)):
            numpy.testing.assert_array_equal(u.array, v.array)
    assert any(isinstance(n, AffineBNActivation) for n in _creators(fused, x0))  # the fused path ran


def _creators(link, x0):
    """Every function node in the graph of ``link(x0)``."""
    out = link(x0)
    stack = [v.node for v in (out if isinstance(out, tuple) else (out,))]
    seen, nodes = set(), []
    while stack:
        node = stack.pop().creator
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        nodes.append(node)
        stack.extend(node.inputs)
    return nodes


def test_one_node_per_layer_instead_of_three():
    fused, plain = twin_denoisers()
    f = numpy.random.RandomState(2).normal(size=(8,) + SHAPE).astype(numpy.float32)
    counts = {}
    for name, link in (("fused", fused), ("plain", plain)):
        with NodeCounter() as counter:
            F.sum(link(f)).backward()
        counts[name] = counter
    layers = fused.n_layers
    assert counts["fused"].applied.count("AffineBNActivation") == layers
    assert counts["plain"].applied.count("BatchNormalization") == layers
    # forward: 3 nodes -> 1 per layer; backward: the 5 nodes Chainer applies per layer (lReLU grad, BN
    # grad, Linear's data and weight grads, bias sum) are gone; the first layer needs no data grad
    assert len(counts["plain"].applied) - len(counts["fused"].applied) == (3 - 1) * layers + 5 * layers - 1
    assert len(counts["plain"].backward) - len(counts["fused"].backward) == (3 - 1) * layers


def test_inference_mode_fuses_without_a_graph_and_falls_back_with_one():
    fused, plain = twin_denoisers()
    f = numpy.random.RandomState(3).normal(size=(8,) + SHAPE).astype(numpy.float32)
    with chainer.using_config("train", False):
        with chainer.no_backprop_mode():
            assert can_fuse(fused.l0, fused.bn0)
            numpy.testing.assert_array_equal(fused(f).array, plain(f).array)
        # eval mode with a graph (differentiating through r): the unfused layers, same gradient
        assert not can_fuse(fused.l0, fused.bn0)
        grads = []
        for link in (fused, plain):
            x = chainer.Variable(f)
            F.sum(link(x) ** 2).backward()
            grads.append(x.grad)
        numpy.testing.assert_array_equal(grads[0], grads[1])


def test_the_layer_matches_its_formula_and_refuses_double_backprop():
    link = nets.Denoiser(SHAPE, width=0.05, rng=_rng())
    rs = numpy.random.RandomState(4)
    x = rs.normal(size=(6, link.l0.W.shape[1])).astype(numpy.float32)
    y = fused_layer(x, link.l0, link.bn0, "leaky_relu", 0.2)
    assert isinstance(y.creator, AffineBNActivation)
    z = x @ link.l0.W.array.T + link.l0.b.array
    h = (z - z.mean(0)) / numpy.sqrt(z.var(0) + link.bn0.eps) * link.bn0.gamma.array + link.bn0.beta.array
    numpy.testing.assert_allclose(y.array, numpy.where(h > 0, h, 0.2 * h), rtol=1e-4, atol=1e-5)
    xv = chainer.Variable(x)
    y = fused_layer(xv, link.l0, link.bn0, "leaky_relu", 0.2)
    with pytest.raises(NotImplementedError, match="double backprop.*--layers chainer"):
        chainer.grad([F.sum(y)], [xv], enable_double_backprop=True)


@pytest.mark.parametrize("bn_kind", [None, "full", "no_gamma"])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu", "tanh"])
def test_every_variant_matches_the_unfused_links(bn_kind, activation):
    import chainer.links as L

    def make():
        numpy.random.seed(5)
        affine = L.Convolution2D(3, 4, 3, 2, 1)
        bn = {None: None, "full": L.BatchNormalization(4), "no_gamma": L.BatchNormalization(4, use_gamma=False)}[bn_kind]
        return affine, bn

    x0 = numpy.random.RandomState(6).normal(size=(5, 3, 8, 8)).astype(numpy.float32)
    results = []
    for fused in (True, False):
        affine, bn = make()
        x = chainer.Variable(x0.copy())
        y = fused_layer(x, affine, bn, activation, 0.3, fused=fused)
        assert isinstance(y.creator, AffineBNActivation) == fused
        links = [affine] + ([bn] if bn is not None else [])
        for link in links:
            link.cleargrads()  # a new link's gradients are NaN until cleared (Chainer's Parameter)
        F.sum(y * y).backward()
        results.append([y.array, x.grad] + [p.grad for link in links for _, p in sorted(link.namedparams())]
                       + ([bn.avg_mean, bn.avg_var] if bn is not None else []))
    assert len(results[0]) == len(results[1])
    for a, b in zip(*results):
        assert numpy.isfinite(a).all()  # NaN == NaN would pass assert_array_equal
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("activation", ["leaky_relu", "relu", "tanh", None])
def test_double_backprop_through_a_layer_without_bn_is_chainers(activation):
    # the WGAN-GP pattern: penalise the input gradient, then back-propagate the penalty to the weights
    import chainer.links as L

    x0 = numpy.random.RandomState(7).normal(size=(4, 3, 8, 8)).astype(numpy.float32)
    results = []
    for fused in (True, False):
        numpy.random.seed(8)
        conv = L.Convolution2D(3, 5, 4, 2, 1)
        x = chainer.Variable(x0.copy())
        y = fused_layer(x, conv, None, activation, 0.2, fused=fused)
        assert isinstance(y.creator, AffineBNActivation) == fused
        gx, = chainer.grad([F.sum(y * y)], [x], enable_double_backprop=True)
        # conv [+ lReLU]: the input gradient is one node (ConvolutionInputGrad), else Chainer's nodes
        assert isinstance(gx.creator, ConvolutionInputGrad) == (fused and activation in ("leaky_relu", None))
        penalty = F.mean(F.square(F.sqrt(F.sum(F.square(F.reshape(gx, (4, -1))), axis=1)) - 1.0))
        conv.cleargrads()
        penalty.backward()
        results.append([gx.array, penalty.array, conv.W.grad, conv.b.grad])
        assert numpy.abs(conv.W.grad).sum() > 0
    for a, b in zip(*results):
        numpy.testing.assert_array_equal(a, b)


def test_wgan_critic_penalty_and_wasserstein_gradients_are_chainers():
    # several passes (real, fake, the penalty's x_hat and its double backprop) add up in each weight's
    # gradient; the fused nodes keep Chainer's ranks, so the sums run in Chainer's order (bit-identical)
    from chainer_va import updaters

    rs = numpy.random.RandomState(4)
    x_real, x_fake = (rs.uniform(-1, 1, (4, 1, 32, 32)).astype(numpy.float32) for _ in range(2))
    u = rs.uniform(0, 1, (4, 1, 1, 1)).astype(numpy.float32)
    grads = []
    for fused in (True, False):
        critic = nets.WGANCritic(in_channels=1, width=0.0625, rng=numpy.random.RandomState(3))
        critic.cleargrads()  # a new link's gradients are NaN until cleared (Chainer's Parameter)
        with chainer.using_config("fused_layers", fused):
            loss = (F.mean(-critic(x_real)[1]) + F.mean(critic(x_fake)[1])
                    + updaters.gradient_penalty(critic, x_real, x_fake, u))
            loss.backward()
        grads.append({name: p.grad for name, p in critic.namedparams()})
    assert sorted(grads[0]) == sorted(grads[1])
    for name in grads[0]:
        assert numpy.isfinite(grads[0][name]).all(), name
        assert numpy.abs(grads[0][name]).max() > 0 or name == "/l_out/b", name  # d(mean y_f - mean y_r)/db = 0
        numpy.testing.assert_array_equal(grads[0][name], grads[1][name], err_msg=name)


def test_the_fused_input_gradient_refuses_a_third_order():
    import chainer.links as L

    conv = L.Convolution2D(3, 4, 3, 1, 1)
    x = chainer.Variable(numpy.random.RandomState(9).normal(size=(2, 3, 6, 6)).astype(numpy.float32))
    gx, = chainer.grad([F.sum(fused_layer(x, conv, None, "leaky_relu", 0.2) ** 2)], [x], enable_double_backprop=True)
    assert isinstance(gx.creator, ConvolutionInputGrad)
    with pytest.raises(NotImplementedError, match="not triple.*--layers chainer"):
        chainer.grad([F.sum(gx * gx)], [x], enable_double_backprop=True)


def test_the_fused_head_is_chainers_leaky_relu_and_linear_to_second_order():
    # logit = Linear(lReLU(f)) with f flattened, as one node: value, first-order gradients, and the input
    # gradient's own gradient (the WGAN-GP penalty) bit for bit; weight gradients only to first order
    import chainer.links as L

    from chainer_va.fused_layers import HeadInputGrad, LeakyReLULinear, fused_head

    f0 = numpy.random.RandomState(10).normal(size=(4, 6, 2, 2)).astype(numpy.float32)
    results = []
    for fused in (True, False):
        numpy.random.seed(11)
        linear = L.Linear(24, 1)
        linear.cleargrads()
        f = chainer.Variable(f0.copy())
        y = fused_head(f, linear, 0.2, fused=fused)
        assert isinstance(y.creator, LeakyReLULinear) == fused
        gf, = chainer.grad([F.sum(y * y)], [f], enable_double_backprop=True)
        assert isinstance(gf.creator, HeadInputGrad) == fused  # the input gradient is one node too
        penalty = F.sum(F.square(gf))
        F.sum(y).backward()
        penalty.backward()
        results.append([y.array, gf.array, f.grad, linear.W.grad, linear.b.grad])
    for a, b in zip(*results):
        assert numpy.isfinite(a).all() and numpy.abs(a).max() > 0
        numpy.testing.assert_array_equal(a, b)
    linear = L.Linear(24, 1)
    y = fused_head(chainer.Variable(f0.copy()), linear, 0.2)
    with pytest.raises(NotImplementedError, match="input only.*--layers chainer"):
        chainer.grad([F.sum(y * y)], [linear.W], enable_double_backprop=True)
    f = chainer.Variable(f0.copy())
    gf, = chainer.grad([F.sum(fused_head(f, linear, 0.2) ** 2)], [f], enable_double_backprop=True)
    with pytest.raises(NotImplementedError, match="not triple.*--layers chainer"):
        chainer.grad([F.sum(gf * gf)], [f], enable_double_backprop=True)


@pytest.mark.parametrize("case", ["negative_slope", "linear_on_nd_input", "global_link_hook"])
def test_what_the_fused_nodes_compute_differently_falls_back_to_chainer(case):
    # Chainer's LeakyReLU masks its backward by the input for a negative slope (the fused nodes use the
    # output), F.linear flattens N-d input, and a global link hook must see the links it watches
    import chainer.link_hooks
    import chainer.links as L

    from chainer_va.fused_layers import LeakyReLULinear, fused_head

    slope = -0.3 if case == "negative_slope" else 0.2
    x0 = numpy.random.RandomState(12).normal(size=(4, 3, 2) if case == "linear_on_nd_input" else (4, 6))
    results = []
    for fused in (True, False):
        numpy.random.seed(13)
        with chainer.using_config("dtype", numpy.float64):
            layer, head = L.Linear(6, 5), L.Linear(5, 1)
        x = chainer.Variable(x0.copy())
        hook = chainer.link_hooks.TimerHook()
        with hook if case == "global_link_hook" else chainer.using_config("train", True):
            h = fused_layer(x, layer, None, "leaky_relu", slope=slope, fused=fused)
            y = fused_head(h, head, slope, fused=fused)
        assert not isinstance(h.creator, AffineBNActivation)
        assert isinstance(y.creator, LeakyReLULinear) == (fused and case == "linear_on_nd_input")
        if case == "global_link_hook":
            assert [name for name, _ in hook.call_history] == ["Linear", "Linear"]
        F.sum(y * y).backward()
        results.append([y.array, x.grad, layer.W.grad, head.W.grad])
    for a, b in zip(*results):
        numpy.testing.assert_array_equal(a, b)
    # the input gradient against central differences (this is where a mask from the output goes wrong)
    def value(x):
        return float(F.sum(head(F.leaky_relu(F.leaky_relu(layer(x), slope), slope)) ** 2).array)

    fd, eps = numpy.zeros_like(x0), 1e-6
    for i in numpy.ndindex(x0.shape):
        up, down = x0.copy(), x0.copy()
        up[i] += eps
        down[i] -= eps
        fd[i] = (value(up) - value(down)) / (2 * eps)
    numpy.testing.assert_allclose(results[0][1], fd, rtol=1e-5, atol=1e-7)
