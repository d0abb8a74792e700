"""Adam that updates every parameter of a link with a few whole-network array operations.

Chainer's :class:`chainer.optimizers.Adam` calls one update rule per parameter: on a GPU that is one
kernel launch (plus Python dispatch) per array, about 40 for the DFM denoiser alone, every step. Here
the parameters and Adam's moment estimates ``m`` and ``v`` live as views into three flat buffers per
link, the gradients are concatenated once, and the update is the same arithmetic as Chainer's
``AdamRule.update_core_cpu`` (Kingma & Ba 2015, Alg. 1, with Loshchilov & Hutter's decoupled weight
decay) applied to the flat arrays: about ten array operations per link instead of ten per parameter
(on the CPU per cache-sized chunk of the link, :data:`CPU_CHUNK`).

Nothing else changes: the optimizer state is stored per parameter under Chainer's names, so snapshots
are interchangeable with plain Adam; on the CPU the result is bit-identical to Chainer's Adam (tested);
on a GPU it is Chainer's CPU formula evaluated by CuPy (Chainer's own GPU kernel groups the last line
differently, so results agree to float32 rounding). Anything the fused path does not cover
(:meth:`FusedAdam._fusable_params`: AMSGrad, hooks, loss scaling, fp16, ...) falls back to Chainer's update.
"""
from __future__ import annotations

from typing import List, Optional

import numpy

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
from chainer import backend

__all__ = ["FusedAdam", "CPU_CHUNK"]


class _Packing:
    """Parameters, m and v of one link as views into three flat buffers."""

    def __init__(self, params: list, xp):
        self.params = params
        sizes = [p.array.size for p in params]
        self.offsets = numpy.concatenate([[0], numpy.cumsum(sizes)]).astype(int)
        total = int(self.offsets[-1])
        dtype = params[0].array.dtype
        self.flat = {name: xp.empty(total, dtype) for name in ("param", "m", "v")}
        self.views = {name: [] for name in self.flat}
        for i, p in enumerate(params):
            start, stop = self.offsets[i], self.offsets[i + 1]
            state = p.update_rule.state
            for name, current in (("param", p.array), ("m", state["m"]), ("v", state["v"])):
                view = self.flat[name][start:stop].reshape(current.shape)
                view[...] = current
                self.views[name].append(view)
            p.array = self.views["param"][i]
            state["m"], state["v"] = self.views["m"][i], self.views["v"][i]

    def intact(self, params: list) -> bool:
        """True while every parameter and state array is still the view this packing made."""
        if len(params) != len(self.params):
            return False
        for i, p in enumerate(params):
            state = p.update_rule.state
            if (p is not self.params[i] or p.array is not self.views["param"][i]
                    or state["m"] is not self.views["m"][i] or state["v"] is not self.views["v"][i]):
                return False
        return True


class FusedAdam(chainer.optimizers.Adam):
    """:class:`chainer.optimizers.Adam` with one fused update per link (same arguments, same state).

    ``fused_updates`` counts the steps that took the fused path (the rest fell back; see the module
    docstring for when).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._packing: Optional[_Packing] = None
        self.fused_updates = 0

    def update(self, lossfun=None, *args, **kwds):
        """One Adam step on every parameter of the target (Chainer's ``GradientMethod.update`` order)."""
        params = self._fusable_params() if lossfun is None else None
        if params is None:
            return super().update(lossfun, *args, **kwds)
        self.reallocate_cleared_grads()
        self.call_hooks("pre")
        self.t += 1
        for p in params:
            rule = p.update_rule
            rule.t += 1
            # every update, as UpdateRule.update does (chainer/optimizer.py:286): creates missing states and
            # sends loaded ones to the parameter's device (a snapshot loads m and v as numpy arrays, which
            # cannot be copied into a CuPy buffer); arrays already there are returned unchanged
            rule._init_states(p)
        with chainer.using_device(params[0].device):  # as UpdateRule.update: buffers on the params' GPU
            self._fused_step(params)
        self.reallocate_cleared_grads()
        self.call_hooks("post")
        self.fused_updates += 1

    def _fusable_params(self) -> Optional[List[chainer.Parameter]]:
        """The parameters when the fused path reproduces Chainer's update exactly, else None."""
        if self._loss_scale is not None or self._loss_scaling_is_dynamic or self._hookable._pre_update_hooks \
                or self._hookable._post_update_hooks:
            return None
        params = list(self.target.params())
        if not params:
            return None
        hp = self.hyperparam
        if hp.amsgrad or hp.adabound:
            return None
        if any(p.update_rule is None or p._loss_scale is not None for p in params):
            # a parameter registered after setup (Chainer's Parameter.update skips it), or a gradient
            # scaled by backward(loss_scale=...) that UpdateRule.update would divide first
            return None
        device, t = params[0].device, params[0].update_rule.t
        for p in params:
            rule = p.update_rule
            own = rule.hyperparam.__dict__  # a rule's hyperparameters are the optimizer's unless set on it
            if (len(own) != 1 or own.get("_parent") is not hp or p.array is None or p.grad is None
                    or p.array.dtype != numpy.float32 or p.grad.dtype != numpy.float32 or not rule.enabled
                    or rule._use_fp32_update or rule._hookable._pre_update_hooks
                    or rule._hookable._post_update_hooks or rule.t != t or p.device != device):
                return None
        return params

    def _fused_step(self, params: list) -> None:
        xp = backend.get_array_module(params[0].array)
        if self._packing is None or not self._packing.intact(params):
            self._packing = _Packing(params, xp)
        flat = self._packing.flat
        rule = params[0].update_rule
        hp = self.hyperparam
        rule._check_eps(numpy.float32)
        grad = xp.concatenate([p.grad.ravel() for p in params])
        alpha_t, scale = rule.alpha_t, 1.0 - hp.eta * hp.weight_decay_rate
        total = grad.size
        # On the CPU, numpy runs each operation over its whole operand: chunks that stay in cache
        # keep the ten operations below from streaming the link's arrays through memory ten times.
        chunk = CPU_CHUNK if xp is numpy else total
        for start in range(0, total, chunk):
            window = slice(start, min(start + chunk, total))
            _adam(grad[window], flat["param"][window], flat["m"][window], flat["v"][window], hp, alpha_t, scale, xp)


#: Elements per chunk of the CPU update (32Ki float32 = 128 KiB per array: four arrays fit in L2).
CPU_CHUNK = 1 << 15


def _adam(grad, param, m, v, hp, alpha_t: float, scale: float, xp) -> None:
    """In place on flat float32 arrays: the operations of ``chainer.optimizers.adam.AdamRule.update_core_cpu``."""
    m += (1.0 - hp.beta1) * (grad - m)
    v += (1.0 - hp.beta2) * (grad * grad - v)
    step = alpha_t / (xp.sqrt(v) + hp.eps)
    if scale == 1:
        param += -hp.eta * (step * m)
    else:
        param[...] = scale * param + -hp.eta * (step * m)
