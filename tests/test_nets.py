"""Networks: parameter counts of the paper's sizes (counted by hand from Tables S1/S2), shapes, width, init."""
import numpy
import pytest

from chainer_va import nets


def conv(c_in, c_out, k):
    """Weights + bias of a k x k (de)convolution."""
    return c_in * c_out * k * k + c_out


def linear(n_in, n_out):
    return n_in * n_out + n_out


def bn(c, gamma=True):
    return 2 * c if gamma else c


# Table S1 (32x32, CIFAR-10 sizes), counted layer by layer
GEN32 = (linear(128, 4 * 4 * 512) + bn(4 * 4 * 512)
         + conv(512, 256, 4) + bn(256) + conv(256, 128, 4) + bn(128) + conv(128, 64, 4) + bn(64)
         + conv(64, 3, 3))
DIS32 = (conv(3, 32, 3) + conv(32, 64, 4) + bn(64) + conv(64, 128, 4) + bn(128) + conv(128, 256, 4) + bn(256)
         + conv(256, 512, 4) + bn(512, gamma=False) + linear(2048, 1))
DENOISER = 9 * (linear(2048, 2048) + bn(2048)) + linear(2048, 2048)
CRITIC32 = (conv(3, 64, 3) + conv(64, 128, 4) + conv(128, 128, 3) + conv(128, 256, 4) + conv(256, 256, 3)
            + conv(256, 512, 4) + conv(512, 512, 3) + linear(512 * 4 * 4, 1))
# Table S2 (128x128, CelebA)
GEN128 = (linear(128, 4 * 4 * 512) + bn(4 * 4 * 512)
          + conv(512, 256, 4) + bn(256) + conv(256, 128, 4) + bn(128) + conv(128, 64, 4) + bn(64)
          + conv(64, 32, 4) + bn(32) + conv(32, 3, 4))
DIS128 = (conv(3, 16, 4) + conv(16, 32, 4) + bn(32) + conv(32, 64, 4) + bn(64) + conv(64, 128, 4) + bn(128)
          + conv(128, 256, 4) + bn(256) + conv(256, 512, 4) + bn(512, gamma=False) + linear(2048, 1))


def test_paper_sizes_parameter_counts():
    # the literals are the sums above, written out once by hand as a cross-check of the expressions
    assert GEN32 == 3_828_739
    assert DIS32 == 2_790_593
    assert nets.count_parameters(nets.Generator()) == GEN32
    assert nets.count_parameters(nets.DFMDiscriminator()) == DIS32
    assert nets.count_parameters(nets.Denoiser()) == DENOISER
    assert nets.count_parameters(nets.WGANCritic()) == CRITIC32
    assert nets.count_parameters(nets.Generator(size=128)) == GEN128
    assert nets.count_parameters(nets.DFMDiscriminator(size=128)) == DIS128


def test_width_and_channels_scale_every_layer():
    w = 0.25
    expected_gen = (linear(128, 16 * 128) + bn(16 * 128) + conv(128, 64, 4) + bn(64) + conv(64, 32, 4) + bn(32)
                    + conv(32, 16, 4) + bn(16) + conv(16, 1, 3))
    assert nets.count_parameters(nets.Generator(out_channels=1, width=w)) == expected_gen
    expected_dis = (conv(1, 8, 3) + conv(8, 16, 4) + bn(16) + conv(16, 32, 4) + bn(32) + conv(32, 64, 4) + bn(64)
                    + conv(64, 128, 4) + bn(128, gamma=False) + linear(512, 1))
    assert nets.count_parameters(nets.DFMDiscriminator(in_channels=1, width=w)) == expected_dis
    assert nets.count_parameters(nets.Denoiser((128, 2, 2), width=w)) == 9 * (linear(512, 512) + bn(512)) + linear(512, 512)


@pytest.mark.parametrize("size,channels", [(32, 1), (32, 3), (128, 3)])
def test_shapes(size, channels):
    w = 0.0625
    z = numpy.random.RandomState(0).uniform(-1, 1, (2, 128)).astype(numpy.float32)
    x = nets.Generator(out_channels=channels, width=w, size=size)(z)
    assert x.shape == (2, channels, size, size)
    assert numpy.abs(x.array).max() <= 1.0
    dis = nets.DFMDiscriminator(in_channels=channels, width=w, size=size)
    f, y = dis(x)
    assert f.shape == (2,) + dis.feature_shape == (2, 32, 2, 2) and y.shape == (2, 1)
    critic = nets.WGANCritic(in_channels=channels, width=w, size=size)
    f, y = critic(x)
    assert f.shape == (2,) + critic.feature_shape == (2, 32, 4, 4) and y.shape == (2, 1)
    r = nets.Denoiser(critic.feature_shape, width=w)
    assert r(f).shape == f.shape


def test_initialisation_is_normal_002():
    dis = nets.DFMDiscriminator(rng=numpy.random.RandomState(0))
    w = dis.c_feature.W.array
    assert abs(float(w.mean())) < 1e-3
    assert float(w.std()) == pytest.approx(0.02, rel=0.02)
    assert float(abs(nets.Generator().l0.W.array).std()) > 0


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="size 64 is not supported"):
        nets.Generator(size=64)
    with pytest.raises(ValueError, match="in_channels must be 1"):
        nets.DFMDiscriminator(in_channels=2)
    with pytest.raises(ValueError, match="width must be a positive"):
        nets.Generator(width=0)


@pytest.mark.parametrize("cls", [nets.Generator, nets.DFMDiscriminator, nets.WGANCritic, nets.Denoiser])
def test_initial_weights_come_from_the_given_state_not_numpy_global_one(cls):
    kwargs = {} if cls is nets.Denoiser else {"width": 0.125}

    def weights(seed, global_seed):
        numpy.random.seed(global_seed)
        before = numpy.random.get_state()[1].copy()
        link = cls(rng=numpy.random.RandomState(seed), **kwargs)
        assert numpy.array_equal(numpy.random.get_state()[1], before), "building changed the global state"
        return {name: p.array.copy() for name, p in link.namedparams()}

    a, b, c = weights(7, 1), weights(7, 2), weights(8, 1)
    for name in a:
        numpy.testing.assert_array_equal(a[name], b[name])  # the global state does not matter
    # another seed gives other weights; every weight matrix is drawn (biases, BN start at constants)
    drawn = [name for name in a if a[name].ndim >= 2]
    assert drawn and all(not numpy.array_equal(a[name], c[name]) for name in drawn)
    # no rng: a fresh state each time, and the global one untouched
    numpy.random.seed(7)
    unseeded = {n: p.array for n, p in cls(**kwargs).namedparams()}
    assert numpy.array_equal(numpy.random.get_state()[1], numpy.random.RandomState(7).get_state()[1])
    assert all(not numpy.array_equal(unseeded[name], a[name]) for name in drawn)


def test_generator_first_layer_is_the_states_first_draw():
    # Chainer's Normal(0.02) draws rng.normal(0, 0.02, shape) and casts: the same numbers as it drew from
    # the global state after numpy.random.seed(7), so runs recorded before networks took an rng keep them
    gen = nets.Generator(width=0.125, rng=numpy.random.RandomState(7))
    expected = numpy.random.RandomState(7).normal(0.0, 0.02, gen.l0.W.shape).astype(numpy.float32)
    numpy.testing.assert_array_equal(gen.l0.W.array, expected)


# --- --arch mlp: the CPU study's small fully connected networks (not in the paper) ------------------------

W8 = 0.125  # the study's width: hidden 512 and 256, feature 256
GEN_MLP = linear(128, 256) + bn(256) + linear(256, 512) + bn(512) + linear(512, 1024)
DIS_MLP = linear(1024, 512) + linear(512, 256) + bn(256, gamma=False) + linear(256, 1)
CRITIC_MLP = linear(1024, 512) + linear(512, 256) + linear(256, 1)


def test_mlp_sizes_shapes_and_the_architecture_table():
    assert nets.count_parameters(nets.MLPGenerator(width=W8)) == GEN_MLP
    assert nets.count_parameters(nets.MLPDiscriminator(width=W8)) == DIS_MLP
    assert nets.count_parameters(nets.MLPCritic(width=W8)) == CRITIC_MLP
    z = numpy.random.RandomState(0).uniform(-1, 1, (3, 128)).astype(numpy.float32)
    x = nets.MLPGenerator(width=W8)(z)
    assert x.shape == (3, 1, 32, 32) and numpy.abs(x.array).max() <= 1.0
    for cls in (nets.MLPDiscriminator, nets.MLPCritic):
        dis = cls(width=W8)
        f, y = dis(x)
        assert f.shape == (3,) + dis.feature_shape == (3, 256) and y.shape == (3, 1)
        assert nets.Denoiser(dis.feature_shape, width=W8)(f).shape == f.shape
    assert nets.generator_class("mlp") is nets.MLPGenerator and nets.generator_class("dcgan") is nets.Generator
    assert nets.discriminator_class("mlp", nets.WGANCritic) is nets.MLPCritic
    assert nets.discriminator_class("mlp", nets.DFMDiscriminator) is nets.MLPDiscriminator
    assert nets.discriminator_class("dcgan", nets.DFMDiscriminator) is nets.DFMDiscriminator

    class PluginDiscriminator(nets.DFMDiscriminator):
        pass
    assert nets.discriminator_class("dcgan", PluginDiscriminator) is PluginDiscriminator
    with pytest.raises(ValueError, match="--arch mlp has no version of PluginDiscriminator"):
        nets.discriminator_class("mlp", PluginDiscriminator)


def test_mlp_discriminator_feature_is_batch_normalised_and_the_critic_is_not():
    x = numpy.random.RandomState(1).uniform(-1, 1, (16, 1, 32, 32)).astype(numpy.float32)
    f, _ = nets.MLPDiscriminator(width=W8, rng=numpy.random.RandomState(0))(x)
    numpy.testing.assert_allclose(f.array.mean(axis=0), 0, atol=1e-5)  # gamma-free BN: zero mean, unit variance
    numpy.testing.assert_allclose(f.array.var(axis=0), 1, rtol=1e-2)
    critic = nets.MLPCritic(width=W8, rng=numpy.random.RandomState(0))
    f, y = critic(x)
    h = numpy.maximum(x.reshape(16, -1) @ critic.l0.W.array.T + critic.l0.b.array, 0) \
        + 0.2 * numpy.minimum(x.reshape(16, -1) @ critic.l0.W.array.T + critic.l0.b.array, 0)
    f_hand = h @ critic.l_feature.W.array.T + critic.l_feature.b.array
    numpy.testing.assert_allclose(f.array, f_hand, rtol=1e-4, atol=1e-6)  # no normalisation anywhere
    y_hand = numpy.where(f_hand > 0, f_hand, 0.2 * f_hand) @ critic.l_out.W.array.T + critic.l_out.b.array
    numpy.testing.assert_allclose(y.array, y_hand, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cls", [nets.MLPGenerator, nets.MLPDiscriminator, nets.MLPCritic])
def test_mlp_fused_layers_match_chainer_links(cls):
    """The fused nodes give the plain links' outputs and gradients; the critic's also through the WGAN-GP
    penalty's double backprop (fused BN layers have none: the BN networks are never differentiated twice)."""
    import chainer
    import chainer.functions as F
    rs = numpy.random.RandomState(2)
    inputs = (rs.uniform(-1, 1, (4, 128)) if cls is nets.MLPGenerator else rs.uniform(-1, 1, (4, 1, 32, 32)))

    def grads(fused):
        link = cls(width=W8, rng=numpy.random.RandomState(0))
        x = chainer.Variable(inputs.astype(numpy.float32))
        with chainer.using_config("fused_layers", fused):
            out = link(x)
            y = out if cls is nets.MLPGenerator else out[1]
            twice = cls is nets.MLPCritic
            gx, = chainer.grad([F.sum(y * y)], [x], enable_double_backprop=twice)
            loss = F.sum(y) + (F.sum(gx * gx) if twice else 0)  # the penalty's form: a function of the input gradient
            link.cleargrads()
            loss.backward()
        return [y.array, gx.array] + [p.grad for _, p in sorted(link.namedparams())]

    for a, b in zip(grads(True), grads(False)):
        numpy.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
