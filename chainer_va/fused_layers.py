"""One function node per layer act(BN(affine(x))) instead of Chainer's two or three (issue 8).

Each node's forward and backward run the *same Chainer functions' own code* on raw arrays (the affine
function, ``BatchNormalization`` or ``FixedBatchNormalization``, ``LeakyReLU`` / ``ReLU`` / ``Tanh``, and
the gradient functions their ``backward`` s apply), in the order Chainer's graph runs them. So outputs,
gradients and running statistics are bit-identical to the unfused layer (tested on the CPU; on a GPU the
same kernels run in the same order), and whatever Chainer selects inside those functions (generic code,
cuDNN, iDeep) it selects here too.

Double backprop (the WGAN-GP penalty) works through layers without BN (:class:`ConvolutionInputGrad`,
:class:`HeadInputGrad`, or Chainer's own gradient nodes); a layer with BN raises, naming ``--layers
chainer``, and is fused only in training mode or without a graph. Whether a layer runs fused is
``chainer.config.fused_layers`` when it is applied (``--layers``; :mod:`chainer_va.speedups`). Design and
measurements: docs/status/gan.md, "Speed-ups inside the Chainer path".
"""
from __future__ import annotations

from typing import Optional

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import chainer.functions as F
import chainer.links as L
from chainer.functions.activation.leaky_relu import LeakyReLU, _LeakyReLUGrad
from chainer.functions.activation.relu import ReLU, ReLUGrad2, ReLUGradCudnn
from chainer.functions.activation.tanh import Tanh, TanhGrad
from chainer.functions.array.cast import Cast
from chainer.functions.array.reshape import Reshape
from chainer.functions.connection.convolution_2d import Convolution2DFunction, Convolution2DGradW
from chainer.functions.connection.deconvolution_2d import Deconvolution2DFunction
from chainer.functions.connection.linear import LinearFunction, LinearGradData, LinearGradWeight
from chainer.functions.math.sum import Sum
from chainer.functions.normalization.batch_normalization import (BatchNormalization,
                                                                 BatchNormalizationGrad,
                                                                 FixedBatchNormalization)

from chainer_va import speedups  # noqa: F401  (defines chainer.config.fused_layers)

__all__ = ["AffineBNActivation", "ConvolutionInputGrad", "LeakyReLULinear", "HeadInputGrad", "fused_layer",
           "fused_head", "can_fuse", "ACTIVATIONS"]

ACTIVATIONS = ("relu", "leaky_relu", "tanh")


def _run(node: chainer.FunctionNode, inputs: tuple) -> tuple:
    """``node.forward(inputs)`` outside the graph machinery. ``FunctionNode.apply`` first records the
    inputs' memory layouts (chainer/function_node.py:304), which these functions read; plain arrays
    have none."""
    node._input_layouts = (None,) * len(inputs)
    return node.forward(inputs)


def _first_order_only(what: str, switch: str) -> None:
    """Raise when a fused gradient node is asked to build a differentiable gradient of its own (its
    backward runs on raw arrays); ``switch`` is the command-line option that turns the fusion off."""
    if chainer.config.enable_backprop:
        raise NotImplementedError("{} (chainer_va) supports double backprop, not triple; train with {}".format(
            what, switch))


def _apply(node: chainer.FunctionNode, inputs: tuple) -> tuple:
    """``node.apply(inputs)``: the same function as a differentiable graph node (for double backprop)."""
    return node.apply(inputs)


# -- the affine part: forward, and the data / weight / bias gradients of its backward ---------------------
class _Linear:
    """``LinearFunction`` and its backward (chainer/functions/connection/linear.py, ``backward``)."""

    def __init__(self, link: L.Linear):
        self.node = None

    def forward(self, x, W, b):
        self.node = LinearFunction()
        return _run(self.node, (x, W, b))[0]

    def backward(self, x, W, gy, indexes, call=_run):
        grads = {}
        if 0 in indexes:
            grads[0] = self._cast(call(LinearGradData(), (W, gy))[0], x.dtype, call)
        if 1 in indexes:
            grads[1] = self._cast(call(LinearGradWeight(W.dtype), (x, gy))[0], W.dtype, call)
        if 2 in indexes:
            grads[2], = call(Sum(axis=0), (gy,))
        return grads

    @staticmethod
    def _cast(g, dtype, call):
        """``F.cast(g, dtype)`` as LinearFunction.backward applies it: a ``Cast`` node in a graph (double
        backprop) even to the same dtype, on raw arrays only a dtype change."""
        if call is _apply or g.dtype != dtype:
            g, = call(Cast(dtype), (g,))
        return g


class _Convolution:
    """Shared by the two convolution kinds: forward by ``kind``; backward = data gradient (the other
    kind's function), ``Convolution2DGradW``, and the bias sum over (N, H, W)."""

    kind = None  # the forward FunctionNode class

    def __init__(self, link):
        self.args, self.kwargs = self.arguments(link)
        self.node = None

    def forward(self, x, W, b):
        self.node = self.kind(*self.args, **self.kwargs)
        return _run(self.node, (x, W, b))[0]

    def backward(self, x, W, gy, indexes, call=_run):
        grads = {}
        if 0 in indexes:
            grads[0], = call(self.data_gradient(x.shape), (gy, W))
        if 1 in indexes:
            grads[1], = call(Convolution2DGradW(self.node, W.shape, W.dtype, None), self.weight_inputs(x, gy))
        if 2 in indexes:
            grads[2], = call(Sum(axis=(0, 2, 3)), (gy,))
        return grads


class _Convolution2D(_Convolution):
    """``Convolution2DFunction`` and its backward (chainer/functions/connection/convolution_2d.py)."""

    kind = Convolution2DFunction

    @staticmethod
    def arguments(link: L.Convolution2D):
        return (link.stride, link.pad), dict(dilate=link.dilate, groups=link.groups, cudnn_fast=link.cudnn_fast)

    def data_gradient(self, x_shape):
        n = self.node
        return Deconvolution2DFunction((n.sy, n.sx), (n.ph, n.pw), x_shape[2:], dilate=(n.dy, n.dx),
                                       groups=n.groups)

    @staticmethod
    def weight_inputs(x, gy):
        return x, gy


class _Deconvolution2D(_Convolution):
    """``Deconvolution2DFunction`` and its backward (chainer/functions/connection/deconvolution_2d.py)."""

    kind = Deconvolution2DFunction

    @staticmethod
    def arguments(link: L.Deconvolution2D):
        return (link.stride, link.pad, link.outsize), dict(dilate=link.dilate, groups=link.groups)

    def backward(self, x, W, gy, indexes, call=_run):
        if self.node.cover_all is None:
            self.node._set_cover_all(x.shape, W.shape)
        return super().backward(x, W, gy, indexes, call)

    def data_gradient(self, x_shape):
        n = self.node
        return Convolution2DFunction((n.sy, n.sx), (n.ph, n.pw), n.cover_all, dilate=(n.dy, n.dx),
                                     groups=n.groups)

    @staticmethod
    def weight_inputs(x, gy):
        return gy, x


_AFFINE = {L.Linear: _Linear, L.Convolution2D: _Convolution2D, L.Deconvolution2D: _Deconvolution2D}


# -- the activation ------------------------------------------------------------------------------------
class _LeakyReLUPart:
    def __init__(self, slope: float):
        self.slope = slope

    def forward(self, h):
        return _run(LeakyReLU(self.slope), (h,))[0]

    def backward(self, y, gy, call=_run):
        return call(_LeakyReLUGrad(y, self.slope), (gy,))[0]


class _ReLUPart:
    def forward(self, h):
        self.node = ReLU()
        return _run(self.node, (h,))[0]

    def backward(self, y, gy, call=_run):
        if self.node._use_cudnn and chainer.should_use_cudnn(">=auto"):
            return call(ReLUGradCudnn(y), (gy,))[0]
        return call(ReLUGrad2(y), (gy,))[0]


class _TanhPart:
    """``Tanh``; its backward is ``TanhGrad(x if cuDNN ran it else None)`` on (y, gy), y an input of that
    node, so double backprop needs y in the graph: the fused node retains its output for it."""

    retains_output = True

    def forward(self, h):
        self.node = Tanh()
        self.h = h
        return _run(self.node, (h,))[0]

    def backward(self, y, gy, call=_run):
        return call(TanhGrad(self.h if self.node._use_cudnn else None), (y, gy))[0]


class AffineBNActivation(chainer.FunctionNode):
    """y = act(BN(affine(x; W, b); gamma, beta)) as one node; BN and act are each optional.

    Inputs (x, W, b), then (gamma, beta) with BN. ``affine`` is the Linear / Convolution2D /
    Deconvolution2D link; ``bn`` the BatchNormalization link or None (its running statistics are
    updated in training mode exactly as its own ``forward`` does; without gamma or beta it passes the
    same constant arrays as the link); ``activation`` ``"relu"``, ``"leaky_relu"`` (with ``slope``),
    ``"tanh"`` or None.
    """

    def __init__(self, affine: chainer.Link, bn: Optional[L.BatchNormalization], activation: Optional[str],
                 slope: float = 0.2):
        self.affine = _AFFINE[type(affine)](affine)
        if activation not in ACTIVATIONS + (None,):
            raise ValueError("unknown activation {!r}; use one of {} or None".format(activation, ACTIVATIONS))
        self.activation = {"leaky_relu": lambda: _LeakyReLUPart(slope), "relu": _ReLUPart, "tanh": _TanhPart,
                           None: lambda: None}[activation]()
        self.train = bool(chainer.config.train)
        self.with_bn = bn is not None
        if self.with_bn:
            self.eps, self.axis, self.decay = bn.eps, bn.axis, bn.decay
            self.running = (bn.avg_mean, bn.avg_var)

    def forward(self, inputs):
        x, W, b = inputs[:3]
        z = h = self.affine.forward(x, W, b)
        if self.with_bn:
            gamma, beta = inputs[3:]
            if self.train:
                self._bn = BatchNormalization(self.eps, self.running[0], self.running[1], self.decay, self.axis)
                h, = _run(self._bn, (z, gamma, beta))
            else:
                h, = _run(FixedBatchNormalization(self.eps, self.axis), (z, gamma, beta) + self.running)
        y = self.activation.forward(h) if self.activation else h
        self._z, self._y = z, y  # what the unfused BN and activation nodes retain
        self.retain_inputs((0, 1, 3) if self.with_bn else (0, 1))  # x, W (the affine's grads), gamma (BN's)
        if getattr(self.activation, "retains_output", False):
            self.retain_outputs((0,))
        return y,

    def backward(self, indexes, grad_outputs):
        # Asked for double backprop (chainer.grad(..., enable_double_backprop=True)), the gradient is built
        # from the same Chainer gradient functions as graph nodes, exactly as the unfused layers' backward
        # builds it; otherwise they run on raw arrays. A BN layer's graph would need its (internal) affine
        # output as a variable: not supported.
        graph = chainer.config.enable_backprop
        if graph and self.with_bn:
            raise NotImplementedError(
                "a fused layer with BatchNormalization (chainer_va.fused_layers) does not support double "
                "backprop; train with --layers chainer (chainer.config.fused_layers = False) for "
                "higher-order gradients through BN layers")
        if self.with_bn and not self.train:
            raise NotImplementedError("the fused layer's backward through BN exists only in training mode")
        call = _apply if graph else _run
        retained = self.get_retained_inputs()
        if not graph:
            retained = [v.array for v in retained]
        x, W = retained[:2]
        g = grad_outputs[0] if graph else grad_outputs[0].array
        if graph and tuple(indexes) == (0,) and ConvolutionInputGrad.supports(self):
            # only the input's gradient, differentiably (chainer.grad for the WGAN-GP penalty): one node
            return ConvolutionInputGrad.build(self, g, W),
        if self.activation:
            y = self.get_retained_outputs()[0] if graph and getattr(self.activation, "retains_output", False) \
                else self._y
            g = self.activation.backward(y, g, call)
        if self.with_bn:
            bn = self._bn
            var = bn.var if type(bn._impl).__name__ == "_IDeepBatchNormalizationImpl" else None  # as BN.backward
            grad = BatchNormalizationGrad(bn.eps, bn.expander, bn.axis, bn.mean, var, inv_std=bn.inv_std,
                                          key_axis=bn.key_axis, impl=bn._impl, forward_data=bn.forward_data)
            g, ggamma, gbeta = _run(grad,
                                    (self._z, retained[2], g))
        grads = self.affine.backward(x, W, g, indexes, call)
        if self.with_bn:
            grads[3], grads[4] = ggamma, gbeta
        wrap = (lambda v: v) if graph else chainer.Variable
        return tuple(wrap(grads[i]) if i in grads else None for i in indexes)


class ConvolutionInputGrad(chainer.FunctionNode):
    """The input gradient of a fused conv [+ lReLU] layer without BN as one differentiable node.

    It computes gx = deconv(lrelu_grad(gy), W) with the forward code of ``_LeakyReLUGrad`` and
    ``Deconvolution2DFunction``, and its backward runs, on raw arrays, what their Chainer ``backward`` s
    apply (``Convolution2DFunction``, ``Convolution2DGradW``, ``_LeakyReLUGrad``), in the same order. Its
    output keeps the rank the unfused pair's would have. Its own backward is first order only.
    """

    def __init__(self, layer: "AffineBNActivation"):
        self.slope = layer.activation.slope if layer.activation is not None else None
        self.cond = layer._y  # what _LeakyReLUGrad(y, slope) holds
        self.data_gradient = None  # the Deconvolution2DFunction giving the layer's input gradient

    @staticmethod
    def supports(layer: "AffineBNActivation") -> bool:
        return (type(layer.affine) is _Convolution2D and not layer.with_bn
                and (layer.activation is None or type(layer.activation) is _LeakyReLUPart))

    @classmethod
    def build(cls, layer: "AffineBNActivation", gy, W) -> chainer.Variable:
        node = cls(layer)
        node.data_gradient = layer.affine.data_gradient(layer.get_retained_inputs()[0].shape)
        gx, = node.apply((gy, W))
        # the output's rank is the unfused pair's output's; the node runs where the pair's data-gradient
        # node would (its contribution to W is that node's), as fused_head does
        gx.node._rank = node.rank + 1 + (layer.activation is not None)
        node.rank += layer.activation is not None
        return gx

    def forward(self, inputs):
        gy, W = inputs
        self.g = gy if self.slope is None else _run(_LeakyReLUGrad(self.cond, self.slope), (gy,))[0]
        self.W = W
        self.retain_inputs(())
        return _run(self.data_gradient, (self.g, W))[0],

    def backward(self, indexes, grad_outputs):
        _first_order_only("the fused layer's input gradient", "--layers chainer")
        ggx = grad_outputs[0].array
        deconv = self.data_gradient
        grads = {}
        # Deconvolution2DFunction.backward on inputs (g, W): the gradient to g, then to W
        if deconv.cover_all is None:
            deconv._set_cover_all(self.g.shape, self.W.shape)
        if 0 in indexes:
            gg, = _run(Convolution2DFunction((deconv.sy, deconv.sx), (deconv.ph, deconv.pw), deconv.cover_all,
                                             dilate=(deconv.dy, deconv.dx), groups=deconv.groups), (ggx, self.W))
        if 1 in indexes:
            grads[1], = _run(Convolution2DGradW(deconv, self.W.shape, self.W.dtype, None), (ggx, self.g))
        if 0 in indexes:  # _LeakyReLUGrad.backward: the same function on the incoming gradient
            grads[0] = gg if self.slope is None else _run(_LeakyReLUGrad(self.cond, self.slope), (gg,))[0]
        return tuple(chainer.Variable(grads[i]) if i in grads else None for i in indexes)


def _hooks_see_links(link: chainer.Link) -> bool:
    """Whether a link hook (the link's own or a global one, ``with SomeLinkHook():``) would observe this
    link's call; the fused node calls no link, so it must not stand in for one that is watched."""
    return bool(link.local_link_hooks) or bool(chainer._get_link_hooks())


def _negative_slope(activation: Optional[str], slope: float) -> bool:
    """Chainer's LeakyReLU takes its backward mask from the output only for slope >= 0 (from the input
    for a negative slope; chainer/functions/activation/leaky_relu.py); the fused nodes use the output."""
    return activation == "leaky_relu" and slope < 0


def can_fuse(affine: chainer.Link, bn: Optional[chainer.Link], x=None, activation: Optional[str] = None,
             slope: float = 0.2) -> bool:
    """Whether :func:`fused_layer` reproduces the unfused layer for these links, this input ``x`` (when
    given), activation and slope in this configuration."""
    if bn is not None and (type(bn) is not L.BatchNormalization or bn.avg_mean is None or _hooks_see_links(bn)):
        return False
    if _negative_slope(activation, slope):
        return False
    if x is not None and type(affine) is L.Linear and x.ndim != 2:  # F.linear flattens N-d input first
        return False
    return (type(affine) in _AFFINE and affine.W.array is not None and affine.b is not None
            and not _hooks_see_links(affine)
            and (chainer.config.train or bn is None or not chainer.config.enable_backprop)
            and not chainer.config.in_recomputing)


def _bn_inputs(bn: L.BatchNormalization) -> tuple:
    """gamma and beta as the link passes them: its parameters, or its constant ones/zeros without them."""
    gamma = bn.gamma if bn.gamma is not None else bn._get_gamma()[0]
    beta = bn.beta if bn.beta is not None else bn._get_beta()[0]
    return gamma, beta


def fused_layer(x, affine: chainer.Link, bn: Optional[L.BatchNormalization], activation: Optional[str],
                slope: float = 0.2, fused: Optional[bool] = None) -> chainer.Variable:
    """``act(bn(affine(x)))`` (act = F.relu, F.leaky_relu(., slope), F.tanh or none; bn optional), as one
    node when ``fused`` (None: ``chainer.config.fused_layers``) and :func:`can_fuse`, else with Chainer's
    own links and functions."""
    fused = chainer.config.fused_layers if fused is None else fused
    if not fused or not can_fuse(affine, bn, x, activation, slope):
        h = affine(x)
        h = bn(h) if bn is not None else h
        if activation is None:
            return h
        return {"leaky_relu": lambda: F.leaky_relu(h, slope), "relu": lambda: F.relu(h),
                "tanh": lambda: F.tanh(h)}[activation]()
    inputs = (x, affine.W, affine.b) + (_bn_inputs(bn) if bn is not None else ())
    node = AffineBNActivation(affine, bn, activation, slope)
    y, = node.apply(inputs)
    # Backprop visits nodes by rank (chainer/_backprop.py:164), and the order in which a parameter's
    # gradient contributions are summed follows it. The node keeps the affine node's rank (its weight
    # gradients are summed when the unfused affine's would be) and its output gets the rank the unfused
    # layer's output would have (one per absorbed node), so every node downstream keeps its rank too.
    y.node._rank = node.rank + 1 + (bn is not None) + (activation is not None)
    return y


class LeakyReLULinear(chainer.FunctionNode):
    """y = linear(lrelu(f).reshape(B, -1); W, b) as one node: the discriminators' logit head.

    Unfused it is ``LeakyReLU``, ``Reshape`` and ``LinearFunction``; forward and backward run those
    functions' own code on raw arrays. Asked for a differentiable gradient (the WGAN-GP penalty), it gives
    the input's only, as one :class:`HeadInputGrad` node.
    """

    def __init__(self, linear: L.Linear, slope: float):
        self.linear = _Linear(linear)
        self.activation = _LeakyReLUPart(slope)

    def forward(self, inputs):
        f, W, b = inputs
        self.a = self.activation.forward(f)
        h, = _run(Reshape((len(f), -1)), (self.a,))
        self.h = h
        self.retain_inputs((1,))  # W (the data gradient's); the flattened activation is kept as self.h
        return self.linear.forward(h, W, b),

    def backward(self, indexes, grad_outputs):
        graph = chainer.config.enable_backprop
        if graph and tuple(indexes) != (0,):
            raise NotImplementedError("the fused discriminator head (chainer_va.fused_layers) gives a differentiable "
                                      "gradient for its input only; train with --layers chainer")
        call = _apply if graph else _run
        W, = self.get_retained_inputs()
        W = W if graph else W.array
        gy = grad_outputs[0] if graph else grad_outputs[0].array
        if graph:  # the input's gradient, differentiably (chainer.grad for the WGAN-GP penalty): one node
            return HeadInputGrad.build(self, gy, W),
        grads = self.linear.backward(self.h, W, gy, indexes, call)
        if 0 in grads:
            g, = call(Reshape(self.a.shape), (grads[0],))
            grads[0] = self.activation.backward(self.a, g, call)
        wrap = (lambda v: v) if graph else chainer.Variable
        return tuple(wrap(grads[i]) if i in grads else None for i in indexes)


def fused_head(f, linear: L.Linear, slope: float = 0.2, fused: Optional[bool] = None) -> chainer.Variable:
    """``linear(F.leaky_relu(f, slope))`` (the linear flattening f), as one node when ``fused`` (None:
    ``chainer.config.fused_layers``)."""
    fused = chainer.config.fused_layers if fused is None else fused
    if not fused or type(linear) is not L.Linear or linear.W.array is None or linear.b is None \
            or _hooks_see_links(linear) or _negative_slope("leaky_relu", slope) \
            or chainer.config.in_recomputing:
        return linear(F.leaky_relu(f, slope))
    node = LeakyReLULinear(linear, slope)
    y, = node.apply((f, linear.W, linear.b))
    # The output's rank is the unfused LinearFunction's output's (as in fused_layer). Backprop visits
    # nodes by rank, ties in the order it found them, and sums gradient contributions in that order. The
    # unfused LeakyReLU, whose contribution to f this node makes, is found only after the Reshape ran, so
    # it comes after the nodes of its rank found before (the feature terms' first nodes on f in the
    # generator loss; the penalty's gradient nodes in the WGAN-GP critic). A rank half a step below the
    # LeakyReLU's puts the node after all of them (tests: every objective's steps bit for bit).
    y.node._rank = node.rank + 3
    node.rank -= 0.5
    return y


class HeadInputGrad(chainer.FunctionNode):
    """The fused head's input gradient as one differentiable node (the WGAN-GP penalty's first step).

    Unfused, ``chainer.grad`` applies ``LinearGradData`` on (W, gy), ``Cast``, ``Reshape`` and
    ``_LeakyReLUGrad``; this node runs the same functions, and in backward what their ``backward`` s apply,
    on raw arrays. Its own backward is first order.
    """

    def __init__(self, head: LeakyReLULinear):
        self.cond, self.slope = head.a, head.activation.slope
        self.h_shape = head.h.shape

    @classmethod
    def build(cls, head: LeakyReLULinear, gy, W) -> chainer.Variable:
        node = cls(head)
        gf, = node.apply((gy, W))
        gf.node._rank = node.rank + 4  # as the unfused four nodes' output
        return gf

    def forward(self, inputs):
        gy, W = inputs
        self.gy, self.W = gy, W
        self.retain_inputs(())
        g, = _run(LinearGradData(), (W, gy))
        g = _Linear._cast(g, self.cond.dtype, _run)  # F.cast(gx, x.dtype), x the flattened activation
        g, = _run(Reshape(self.cond.shape), (g,))
        return _run(_LeakyReLUGrad(self.cond, self.slope), (g,))[0],

    def backward(self, indexes, grad_outputs):
        _first_order_only("the fused discriminator head's input gradient", "--layers chainer")
        g, = _run(_LeakyReLUGrad(self.cond, self.slope), (grad_outputs[0].array,))
        g, = _run(Reshape(self.h_shape), (g,))
        grads = {}
        if 1 in indexes:  # LinearGradData.backward: W's gradient first, then gy's
            grads[1] = _Linear._cast(_run(LinearGradWeight(self.W.dtype), (g, self.gy))[0], self.W.dtype, _run)
        if 0 in indexes:
            grads[0] = _Linear._cast(_run(LinearFunction(), (g, self.W))[0], self.gy.dtype, _run)
        return tuple(chainer.Variable(grads[i]) if i in grads else None for i in indexes)
