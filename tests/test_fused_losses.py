"""Each fused loss chain gives its formula and Chainer's unfused chain's value and gradient exactly, as one node."""
import numpy
import pytest

import chainer
import chainer.functions as F

from chainer_va import fused_losses as FL
from node_counter import NodeCounter

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _rng(seed):
    return numpy.random.RandomState(seed)


Y = _rng(0).normal(scale=3.0, size=(16, 1)).astype(numpy.float32)            # logits
FEAT = _rng(1).normal(size=(16, 8, 2, 2)).astype(numpy.float32)              # features / input gradients
CENTER = _rng(2).normal(size=(16, 8, 2, 2)).astype(numpy.float32)            # sg r(f)

# name -> (loss of x (chainer.config.fused_losses chooses the chain), x, the loss in float64 numpy, its
# x-gradient in numpy)
CASES = {
    "mean_softplus(-y)": (lambda x: FL.mean_softplus(x, negate=True), Y,
                          lambda x: numpy.mean(numpy.log1p(numpy.exp(-x))),
                          lambda x: -1.0 / (1.0 + numpy.exp(x)) / x.size),
    "mean_softplus(y)": (lambda x: FL.mean_softplus(x), Y,
                         lambda x: numpy.mean(numpy.log1p(numpy.exp(x))),
                         lambda x: 1.0 / (1.0 + numpy.exp(-x)) / x.size),
    "mean_negative": (lambda x: FL.mean_negative(x), Y,
                      lambda x: -numpy.mean(x), lambda x: numpy.full(x.shape, -1.0 / x.size)),
    "scaled_mean_square": (lambda x: FL.scaled_mean_square(x, CENTER, -0.021), FEAT,
                           lambda x: -0.021 * numpy.mean((x - CENTER) ** 2),
                           lambda x: -0.021 * 2.0 * (x - CENTER) / x.size),
    "scaled_mean_residual_product": (
        lambda x: FL.scaled_mean_residual_product(x, CENTER, 0.7), FEAT,
        lambda x: 0.7 * numpy.mean((CENTER - x) * x), lambda x: 0.7 * (CENTER - 2.0 * x) / x.size),
    "gradient_norm_penalty": (
        lambda x: FL.gradient_norm_penalty(x, 10.0), FEAT,
        lambda x: 10.0 * numpy.mean((numpy.linalg.norm(x.reshape(len(x), -1), axis=1) - 1.0) ** 2),
        lambda x: 10.0 * 2.0 * ((lambda n: (n - 1.0) / n)(numpy.linalg.norm(x.reshape(len(x), -1), axis=1))
                                .reshape(-1, 1, 1, 1) * x) / len(x)),
}


def _value_and_grad(fn, x0, fused):
    x = chainer.Variable(x0.copy())
    counter = NodeCounter()
    with counter, chainer.using_config("fused_losses", fused):
        loss = fn(x)
        loss.backward()
    return loss, x.grad, counter


@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_chain_is_the_formula_and_chainers_chain_bit_for_bit(name):
    fn, x0, value, grad = CASES[name]
    fused, g_fused, c_fused = _value_and_grad(fn, x0, True)
    plain, g_plain, c_plain = _value_and_grad(fn, x0, False)
    # the formula (float64 numpy against float32 Chainer)
    numpy.testing.assert_allclose(fused.array, value(x0.astype(numpy.float64)), rtol=1e-5)
    numpy.testing.assert_allclose(g_fused, grad(x0.astype(numpy.float64)), rtol=1e-4, atol=1e-9)
    # Chainer's own chain: identical bits, and one node instead of several
    assert fused.array.dtype == plain.array.dtype == numpy.float32
    numpy.testing.assert_array_equal(fused.array, plain.array)
    numpy.testing.assert_array_equal(g_fused, g_plain)
    assert len(c_fused.applied) == 1 and c_fused.applied[0].startswith("UnaryChain(")
    assert len(c_plain.applied) >= 2 and len(c_plain.backward) > len(c_fused.backward) == 1
    # the output keeps the rank of the unfused chain's output (backprop visits nodes by rank)
    assert fused.rank == plain.rank


def test_the_step_count_of_the_penalty_and_its_chainer_nodes():
    # w mean (||g_i|| - 1)^2 is eight Chainer nodes (reshape, square, sum, sqrt, -1, square, mean, *w)
    # whose backward applies twelve more (*w: 1, mean: 2, square: 2, -1: 0, sqrt: 2, sum: 2, square: 2,
    # reshape: 1); fused: one node, nothing applied inside
    _, _, fused = _value_and_grad(CASES["gradient_norm_penalty"][0], FEAT, True)
    _, _, plain = _value_and_grad(CASES["gradient_norm_penalty"][0], FEAT, False)
    assert len(plain.applied) == 8 + 12 and plain.applied[:8] == [
        "Reshape", "square", "Sum", "sqrt", "_ + (-1.0)", "square", "Mean", "_ * 10.0"]
    assert fused.applied == ["UnaryChain(Reshape, Square, Sum, Sqrt, AddConstant, Square, Mean, Scale)"]


def test_a_fused_loss_refuses_double_backprop_and_the_unfused_one_gives_it():
    x = chainer.Variable(FEAT.copy())
    loss = FL.scaled_mean_square(x, CENTER, 0.5)
    with pytest.raises(NotImplementedError, match="double backprop.*--losses chainer"):
        chainer.grad([loss], [x], enable_double_backprop=True)
    # unfused: d/dx of sum(d loss / dx) = 2 * 0.5 / N everywhere
    x = chainer.Variable(FEAT.copy())
    with chainer.using_config("fused_losses", False):
        gx, = chainer.grad([FL.scaled_mean_square(x, CENTER, 0.5)], [x], enable_double_backprop=True)
    ggx, = chainer.grad([F.sum(gx)], [x])
    numpy.testing.assert_allclose(ggx.array, numpy.full(FEAT.shape, 1.0 / FEAT.size), rtol=1e-6)


def test_contributions_to_an_input_read_twice_are_summed_in_backprops_order():
    # (c - x) * x reaches x through Mul (processed first) and Sub; with a third consumer of x whose path
    # is longer (as the discriminator's head is in the LGAN generator loss) Chainer adds the three as
    # (mul + sub) + other, and so must the fused node's one contribution
    def step(fused):
        x = chainer.Variable(FEAT.copy())
        head = F.mean(F.sin(F.tanh(F.sin(x)))) * 1e3
        with chainer.using_config("fused_losses", fused):
            loss = FL.scaled_mean_residual_product(x, CENTER, 0.3) + head
        loss.backward()
        return x.grad

    numpy.testing.assert_array_equal(step(True), step(False))


def test_steps_match_their_chainer_functions_on_broadcast_constants():
    # Subtract / SubtractFrom with a constant that broadcasts: the gradient is summed back (SumTo)
    center = _rng(5).normal(size=(1, 8, 2, 2)).astype(numpy.float32)
    for steps in ([FL.Subtract(center), FL.Square(), FL.Mean()], [FL.SubtractFrom(center), FL.Softplus(), FL.Mean()]):
        out = []
        for fused in (True, False):
            x = chainer.Variable(FEAT.copy())
            loss = FL.unary_chain(x, [type(s)(s.c) if hasattr(s, "c") else type(s)() for s in steps], fused)
            loss.backward()
            out.append((loss.array, x.grad))
        numpy.testing.assert_array_equal(out[0][0], out[1][0])
        numpy.testing.assert_array_equal(out[0][1], out[1][1])
