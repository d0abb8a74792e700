"""The scalar loss terms as one function node each instead of a chain of three to eight (issue 8).

:func:`unary_chain` runs a chain of :class:`Step` s (DFM's ``mean softplus(-y)``, the feature term
``c mean (f - sg r(f))^2``, the critic's ``mean(-y)``, the WGAN-GP penalty) as one node. Each step's
forward runs its Chainer function's own ``forward`` on raw arrays, and its backward runs, on raw arrays,
the functions that function's Chainer ``backward`` applies, in the same order. So the loss value and
every gradient are bit-identical to the unfused chain (tested), on any device.

Whether a chain runs fused is ``chainer.config.fused_losses`` when it is applied (``--losses``;
:mod:`chainer_va.speedups`). A fused chain supports first-order backprop only; asked to build a
differentiable gradient it raises, naming ``--losses chainer``. Design and measurements:
docs/status/gan.md, "Speed-ups inside the Chainer path".
"""
from __future__ import annotations

from typing import Optional, Sequence

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import chainer.functions as F
from chainer.functions.activation.softplus import Softplus as _Softplus, SoftplusGrad
from chainer.functions.array.broadcast import BroadcastTo
from chainer.functions.array.reshape import Reshape as _Reshape
from chainer.functions.math.average import Mean as _Mean
from chainer.functions.math.basic_math import (Add, AddConstant as _AddConstant, Div, Mul, MulConstant, MultiAdd,
                                               Neg, Sub)
from chainer.functions.math.sqrt import Sqrt as _Sqrt
from chainer.functions.math.square import Square as _Square
from chainer.functions.math.sum import Sum as _Sum, SumTo

from chainer_va import speedups  # noqa: F401  (defines chainer.config.fused_losses)
from chainer_va.fused_layers import _run

__all__ = ["Step", "Negate", "AddConstant", "Subtract", "SubtractFrom", "TimesInput", "Square", "Softplus",
           "Mean", "Sum", "Sqrt", "Scale", "Reshape", "UnaryChain", "unary_chain", "mean_softplus",
           "mean_negative", "scaled_mean_square", "scaled_mean_residual_product", "gradient_norm_penalty"]


def _broadcast_to(g, shape):
    """``F.broadcast_to`` on a raw array: no node when the shape already matches."""
    return g if g.shape == tuple(shape) else _run(BroadcastTo(shape), (g,))[0]


def _add_as_backprop_does(grads: list):
    """The sum of one input's gradient contributions in backprop's order (chainer/_backprop_utils.py:
    ``_reduce``: ``F.add`` of the list, i.e. ``Add`` for two and ``MultiAdd`` for more)."""
    if len(grads) == 1:
        return grads[0]
    return _run(Add() if len(grads) == 2 else MultiAdd(), tuple(grads))[0]


class Step:
    """One Chainer function of a chain. ``chainer(x)`` applies it as a Chainer node (the unfused path);
    ``forward(x)`` and then ``backward(gy)`` compute its output and input gradient on raw arrays exactly
    as that node's ``forward`` and ``backward`` do. A step instance serves one application.

    A step that also reads the chain's input (``uses_chain_input``) gets it as ``chain_input`` before
    ``forward`` and leaves that input's gradient contribution in ``chain_input_grad`` after ``backward``.
    """

    uses_chain_input = False
    chain_input = None
    chain_input_grad = None

    def chainer(self, x):
        raise NotImplementedError

    def forward(self, x):
        raise NotImplementedError

    def backward(self, gy):
        raise NotImplementedError


class Negate(Step):
    """``-x`` (``Neg``; backward ``-gy``)."""

    def chainer(self, x):
        return -x

    def forward(self, x):
        return _run(Neg(), (x,))[0]

    def backward(self, gy):
        return _run(Neg(), (gy,))[0]


class AddConstant(Step):
    """``x + value`` for a Python scalar (``AddConstant``; ``x - 1.0`` is ``AddConstant(-1.0)``)."""

    def __init__(self, value: float):
        self.value = value

    def chainer(self, x):
        return x + self.value

    def forward(self, x):
        return _run(_AddConstant(self.value), (x,))[0]

    def backward(self, gy):
        return gy


class Subtract(Step):
    """``x - c`` for a constant array ``c`` of x's shape or broadcastable to it (``Sub``; no gradient to c)."""

    def __init__(self, c):
        self.c = c

    def chainer(self, x):
        return x - self.c

    def forward(self, x):
        self.shape = x.shape
        return _run(Sub(), (x, self.c.astype(x.dtype, copy=False)))[0]  # the rhs as basic_math passes it

    def backward(self, gy):
        return gy if gy.shape == self.shape else _run(SumTo(self.shape), (gy,))[0]


class SubtractFrom(Subtract):
    """``c - x`` for a constant array ``c`` (``Sub`` with the constant first; backward ``-gy``)."""

    def chainer(self, x):
        return self.c - x

    def forward(self, x):
        self.shape = x.shape
        return _run(Sub(), (self.c.astype(x.dtype, copy=False), x))[0]

    def backward(self, gy):
        return _run(Neg(), (super().backward(gy),))[0]


class TimesInput(Step):
    """``h * x0`` with x0 the chain's input (``Mul``; backward ``gy * x0`` to h and ``gy * h`` to x0)."""

    uses_chain_input = True

    def chainer(self, x):
        return x * self.chain_input

    def forward(self, x):
        self.h = x
        return _run(Mul(), (x, self.chain_input))[0]

    def backward(self, gy):
        self.chain_input_grad = _run(Mul(), (gy, self.h))[0]
        return _run(Mul(), (gy, self.chain_input))[0]


class Square(Step):
    """``x ** 2`` (``Square``; backward ``gy * 2.0 * x``)."""

    def chainer(self, x):
        return F.square(x)

    def forward(self, x):
        self.x = x
        return _run(_Square(), (x,))[0]

    def backward(self, gy):
        return _run(Mul(), (_run(MulConstant(2.0), (gy,))[0], self.x))[0]


class Softplus(Step):
    """``log(1 + exp(x))`` (``Softplus``, beta 1; backward ``SoftplusGrad``)."""

    def chainer(self, x):
        return F.softplus(x)

    def forward(self, x):
        self.x = x
        self.node = _Softplus()
        return _run(self.node, (x,))[0]

    def backward(self, gy):
        return _run(SoftplusGrad((self.node.beta,)), (self.x, gy))[0]


class Mean(Step):
    """Mean over all elements (``Mean``; backward ``gy * (1 / size)`` broadcast to x's shape)."""

    def chainer(self, x):
        return F.mean(x)

    def forward(self, x):
        self.shape = x.shape
        self.node = _Mean(None, False)
        return _run(self.node, (x,))[0]

    def backward(self, gy):
        return _broadcast_to(_run(MulConstant(self.node.multiplier), (gy,))[0], self.shape)


class Sum(Step):
    """Sum over one axis (``Sum``; backward: gy with that axis restored as 1, broadcast to x's shape)."""

    def __init__(self, axis: int):
        self.axis = axis

    def chainer(self, x):
        return F.sum(x, axis=self.axis)

    def forward(self, x):
        self.shape = x.shape
        return _run(_Sum(self.axis), (x,))[0]

    def backward(self, gy):
        shape = list(gy.shape)
        shape.insert(self.axis % len(self.shape), 1)
        return _broadcast_to(_run(_Reshape(shape), (gy,))[0], self.shape)


class Sqrt(Step):
    """``sqrt(x)`` (``Sqrt``; backward ``gy / (y * 2.0)``)."""

    def chainer(self, x):
        return F.sqrt(x)

    def forward(self, x):
        self.y = _run(_Sqrt(), (x,))[0]
        return self.y

    def backward(self, gy):
        return _run(Div(), (gy, _run(MulConstant(2.0), (self.y,))[0]))[0]


class Scale(Step):
    """``x * value`` for a Python scalar (``MulConstant``; backward ``value * gy``)."""

    def __init__(self, value: float):
        self.value = value

    def chainer(self, x):
        return x * self.value

    def forward(self, x):
        return _run(MulConstant(self.value), (x,))[0]

    def backward(self, gy):
        return _run(MulConstant(self.value), (gy,))[0]


class Reshape(Step):
    """``x.reshape(shape)`` (``Reshape``; backward reshapes gy back). ``shape`` must differ from x's."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def chainer(self, x):
        return F.reshape(x, self.shape)

    def forward(self, x):
        self.in_shape = x.shape
        return _run(_Reshape(self.shape), (x,))[0]

    def backward(self, gy):
        return _run(_Reshape(self.in_shape), (gy,))[0]


class UnaryChain(chainer.FunctionNode):
    """``steps[-1](...steps[0](x))`` as one node; see the module docstring."""

    def __init__(self, steps: Sequence[Step]):
        self.steps = list(steps)

    @property
    def label(self):
        return "UnaryChain({})".format(", ".join(type(s).__name__ for s in self.steps))

    def forward(self, inputs):
        self.retain_inputs(())  # the steps keep what their backward reads, as the unfused nodes retain it
        x, = inputs
        for step in self.steps:
            if step.uses_chain_input:
                step.chain_input = inputs[0]
            x = step.forward(x)
        return x,

    def backward(self, indexes, grad_outputs):
        if chainer.config.enable_backprop:
            raise NotImplementedError(
                "a fused loss (chainer_va.fused_losses) does not support double backprop through the loss; "
                "train with --losses chainer (chainer.config.fused_losses = False) for higher-order gradients of a "
                "loss")
        g = grad_outputs[0].array
        contributions = []  # to the input from steps that read it again, in the order backprop adds them
        for step in reversed(self.steps):
            g = step.backward(g)
            if step.uses_chain_input:
                contributions.append(step.chain_input_grad)
        return chainer.Variable(_add_as_backprop_does(contributions + [g])),


def unary_chain(x, steps: Sequence[Step], fused: Optional[bool] = None) -> chainer.Variable:
    """Apply ``steps`` in order to ``x``: as one :class:`UnaryChain` node when ``fused`` (None:
    ``chainer.config.fused_losses``), else as Chainer's own nodes. Both give the same numbers.

    With a step that reads ``x`` again (:class:`TimesInput`), the node hands backprop the sum of x's
    contributions from the chain as one; that equals Chainer's sum where no other node's contribution
    to x comes between them (the objectives' tests check the shipped ones)."""
    if not (chainer.config.fused_losses if fused is None else fused):
        h = x
        for step in steps:
            step.chain_input = x
            h = step.chainer(h)
        return chainer.as_variable(h)
    node = UnaryChain(steps)
    y, = node.apply((x,))
    # Backprop visits nodes by rank, ties in the order it found them (chainer/_backprop.py:164), and sums
    # an input's gradient contributions in that order. The output gets the rank the unfused chain's
    # output would have (one per step), so the nodes downstream keep theirs; the node keeps the rank of
    # the chain's first node. It is found earlier than that node would be (when its consumer runs, not
    # after the chain's second node), so among nodes of its own rank it can run earlier: write a sum of
    # two loss terms with the shorter chain first (as WGANGPUpdater.critic_step does), and the
    # objectives' tests check that whole steps stay bit-identical to the unfused ones.
    y.node._rank = node.rank + len(steps)
    return y


# -- the loss terms of the objectives (SPEC section 2) -----------------------------------------------
def mean_softplus(x, negate: bool = False) -> chainer.Variable:
    """``mean softplus(-x)`` if ``negate`` else ``mean softplus(x)``: the logistic GAN losses (DFM)."""
    return unary_chain(x, ([Negate()] if negate else []) + [Softplus(), Mean()])


def mean_negative(x) -> chainer.Variable:
    """``mean(-x)``: the Wasserstein and RKL generator/critic terms."""
    return unary_chain(x, [Negate(), Mean()])


def scaled_mean_square(x, center, scale: Optional[float] = None) -> chainer.Variable:
    """``scale * mean (x - center)^2`` with ``center`` a constant array (DFM's feature term with
    center = sg r(f)); without ``scale``, no multiplication."""
    steps = [Subtract(center), Square(), Mean()]
    return unary_chain(x, steps + ([Scale(scale)] if scale is not None else []))


def scaled_mean_residual_product(x, center, scale: float) -> chainer.Variable:
    """``scale * mean((center - x) * x)`` with ``center`` a constant array: the LGAN release's annealing
    term with center = sg r_data(f)."""
    return unary_chain(x, [SubtractFrom(center), TimesInput(), Mean(), Scale(scale)])


def gradient_norm_penalty(grad, weight: float) -> chainer.Variable:
    """``weight * mean_i (||grad_i||_2 - 1)^2`` over the batch axis: the WGAN-GP penalty on the critic's
    input gradient (Gulrajani et al. 2017, eq. 3)."""
    steps = [Reshape((len(grad), -1)), Square(), Sum(axis=1), Sqrt(), AddConstant(-1.0), Square(), Mean(),
             Scale(weight)]
    return unary_chain(grad, steps)
