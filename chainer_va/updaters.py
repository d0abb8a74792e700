"""GAN objectives as Chainer updaters: one base class, one small subclass per family (SPEC section 2).

:class:`GANUpdater` owns what every objective shares (real batches, latents, noise, denoisers, the
annealing term and its weight lambda_t = schedule(iteration), the finiteness check, reporting); each
subclass's ``update_core`` reads like its equations:

* ``jsd`` (:class:`JSDUpdater`, = DFM): L_D = mean softplus(-y_real) + mean softplus(y_fake);
  L_G = mean softplus(-y_fake) + 0.03 mean (f - sg r_data(f))^2 + annealing term.
* ``rkl`` (:class:`RKLUpdater`): same D; L_G = mean(-y_fake) + annealing term.
* ``wgan`` (:class:`WGANGPUpdater`, WGAN-GP): L_D = mean(-y_real) + mean(y_fake) + 10 mean((||grad D(xhat)|| - 1)^2),
  5 critic steps per generator step, each on a fresh real batch; L_G = mean(-y_fake) + annealing term.

A non-finite loss raises :class:`NonFiniteLossError` before the update it would drive (in WGAN-GP, a
generator loss after the step's critic updates). Optimizers are named ``gen``, ``dis``, ``denoiser_data``,
``denoiser_fake`` (snapshot keys). :meth:`GANUpdater.update` applies the run's :class:`Speedups`
(:mod:`chainer_va.speedups`). Adding an objective: docs/extending.md.
"""
from __future__ import annotations

import functools
import inspect
import math
import operator
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import chainer.functions as F
from chainer.training import StandardUpdater

from chainer_va import nets
from chainer_va.array_types import Array, ArrayOrVariable, DeviceSpec
from chainer_va.fused_adam import FusedAdam
from chainer_va.annealing import AnnealingTerm, DenoiserPool, FeatureDenoiser, feature_size, residual_energy
from chainer_va.fused_losses import gradient_norm_penalty, mean_negative, mean_softplus
from chainer_va.latent import LatentSampler, NoiseSource
from chainer_va.speedups import Speedups

__all__ = ["NonFiniteLossError", "GANUpdater", "OneStepUpdater", "JSDUpdater", "RKLUpdater", "WGANGPUpdater", "register",
           "names", "get", "options", "option_defaults", "gradient_penalty", "total", "make_adam", "LR", "BETA1", "BETA2",
           "DFM_WEIGHT", "GP_WEIGHT", "N_CRITIC"]

LR = 1e-4  # Adam learning rate (supplement J.1)
BETA1 = 0.5  # Adam beta1 (DFM script)
BETA2 = 0.9  # Adam beta2 (DFM script)
DFM_WEIGHT = 0.03  # weight of DFM's feature term in the JSD generator loss
GP_WEIGHT = 10.0  # WGAN-GP penalty weight (Gulrajani et al. 2017)
N_CRITIC = 5  # WGAN-GP critic steps per generator step


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; raised before the step updates any parameter."""

    def __init__(self, name: str, iteration: int, value: float):
        self.loss_name = name
        self.iteration = iteration
        self.value = value
        super().__init__("loss {!r} is {} at iteration {} (the parameters were not updated with it)".format(
            name, value, iteration))


def make_adam(link: chainer.Link, lr: float = LR, beta1: float = BETA1, beta2: float = BETA2,
              fused: bool = True) -> chainer.Optimizer:
    """Adam(lr 1e-4, beta1 0.5, beta2 0.9) set up on ``link`` (supplement J.1, DFM script).

    ``fused`` (default): :class:`chainer_va.fused_adam.FusedAdam`, the same update as Chainer's Adam
    (bit-identical on the CPU) in a few whole-link array operations instead of one call per parameter.
    """
    optimizer = (FusedAdam if fused else chainer.optimizers.Adam)(alpha=lr, beta1=beta1, beta2=beta2)
    optimizer.setup(link)
    return optimizer


def gradient_penalty(critic: chainer.Link, x_real: ArrayOrVariable, x_fake: ArrayOrVariable, u: Array,
                     weight: float = GP_WEIGHT) -> chainer.Variable:
    """WGAN-GP penalty weight * mean_i (||grad_x D(xhat_i)||_2 - 1)^2, xhat = u x_real + (1 - u) x_fake.

    The input gradient comes from ``chainer.grad(..., enable_double_backprop=True)``, so the
    penalty's own gradient reaches the critic's weights (Gulrajani et al. 2017; SPEC section 2).
    ``u`` has shape (B, 1, 1, 1) (or broadcastable to the inputs).
    """
    x_real = x_real.array if isinstance(x_real, chainer.Variable) else x_real
    x_fake = x_fake.array if isinstance(x_fake, chainer.Variable) else x_fake
    x_hat = chainer.Variable(u * x_real + (1.0 - u) * x_fake)
    _, y_hat = critic(x_hat)
    grad, = chainer.grad([F.sum(y_hat)], [x_hat], enable_double_backprop=True)
    return gradient_norm_penalty(grad, weight)


def total(losses: Iterable[chainer.Variable]) -> chainer.Variable:
    """The sum of loss terms (without the ``0 +`` node that the builtin ``sum`` would add)."""
    return functools.reduce(operator.add, losses)


class GANUpdater(StandardUpdater):
    """Shared machinery of the annealed GAN objectives; subclasses implement ``update_core``.

    Args:
        iterator: the real-data iterator (batches of (C, H, W) float32 arrays in [-1, 1]).
        generator, discriminator: links; the discriminator returns ``(feature, logit)``.
        gen_optimizer, dis_optimizer: their optimizers (registered as ``gen`` and ``dis``).
        annealing: the annealing term (holds its denoisers).
        schedule: callable iteration -> lambda_t.
        latent: sampler of z; noise: source of eps and u; denoisers: the run's denoiser pool.
        device: the Chainer device the links live on.
    """

    discriminator_class = nets.DFMDiscriminator
    #: Run Chainer's type checks on every step, not only on this process's first (shapes and dtypes never change
    #: after it; docs/status/gan.md, "Type checks on the first step only"). ``CHAINER_TYPE_CHECK=0`` is respected.
    check_types_every_step = False
    #: The speed-ups of this updater's steps (:mod:`chainer_va.speedups`; ``chainer_va.train`` sets the run's).
    #: ``backprop_needed_only``: :meth:`optimize` back-propagates each loss only to its optimizer's link, with the
    #: same gradients bit for bit (docs/status/gan.md, "Gradients only for the network being updated").
    speedups = Speedups()
    #: Measure the gradient ratios of :meth:`report_anneal_strength` every this many iterations (0: never).
    #: ``chainer_va.train`` sets it to ``--log-interval``; each measurement is one small backward per part.
    diagnostics_every = 0

    def __init__(self, iterator: chainer.dataset.Iterator, generator: chainer.Link, discriminator: chainer.Link,
                 gen_optimizer: chainer.Optimizer, dis_optimizer: chainer.Optimizer,
                 annealing: AnnealingTerm, schedule: Callable[[int], float], latent: LatentSampler,
                 noise: NoiseSource, denoisers: DenoiserPool, device: DeviceSpec = None):
        super().__init__(iterator, {"gen": gen_optimizer, "dis": dis_optimizer})
        self.gen = generator
        self.dis = discriminator
        self.annealing = annealing
        self.schedule = schedule
        self.latent = latent
        self.noise = noise
        self.denoisers = denoisers
        self.target_device = chainer.get_device(device if device is not None else "@numpy")
        self._types_checked = False
        self._register_denoisers()

    # -- helpers for update_core -------------------------------------------------------------------
    def _register_denoisers(self) -> None:
        for _, denoiser in self.denoisers.items():
            self._optimizers[denoiser.name] = denoiser.optimizer

    def require_denoiser(self, source: str) -> FeatureDenoiser:
        """The pool's ``source`` denoiser, with its optimizer registered for updates and snapshots."""
        denoiser = self.denoisers.get(source)
        self._register_denoisers()
        return denoiser

    def real_batch(self, requires_grad: bool = False) -> chainer.Variable:
        """The next real batch on the device.

        Nothing differentiates the losses with respect to the data, so by default the batch asks for no
        gradient and backprop skips D's first-layer data gradient for it (the parameters' gradients are
        the same); an objective that needs d/dx_real (an R1 penalty) passes ``requires_grad=True``.
        """
        batch = self.get_iterator("main").next()
        array = self.target_device.send(numpy.stack([numpy.asarray(x, numpy.float32) for x in batch]))
        return chainer.Variable(array, requires_grad=requires_grad)

    def sample_latent(self, batchsize: int) -> Array:
        """z ~ U(-1, 1)^latent_dim on the device."""
        return self.target_device.send(self.latent(batchsize))

    def generate(self, batchsize: int) -> chainer.Variable:
        """x_fake = G(z) for a fresh z."""
        return self.gen(self.sample_latent(batchsize))

    def lambda_t(self) -> float:
        """The annealing weight of this iteration."""
        return float(self.schedule(self.iteration))

    def annealing_loss(self, f_fake: chainer.Variable, lam: float) -> Dict[str, chainer.Variable]:
        """The annealing term as a (possibly empty) dict of generator-loss parts."""
        term = self.annealing.generator_loss(f_fake, lam)
        return {} if term is None else {"loss_anneal": term}

    def denoiser_losses(self, real: Optional[chainer.Variable] = None,
                        fake: Optional[chainer.Variable] = None) -> Dict[str, chainer.Variable]:
        """L_r of every denoiser in the pool on the (detached) features of its source."""
        features = {"data": real, "fake": fake}
        losses = {}
        for source, denoiser in self.denoisers.items():
            if features[source] is None:
                raise ValueError("the {} denoiser needs {} features this step".format(source, source))
            losses["loss_" + denoiser.name] = denoiser.loss(features[source])
        return losses

    def check_finite(self, losses: Dict[str, chainer.Variable]) -> None:
        """Raise :class:`NonFiniteLossError` naming the first NaN/inf loss. The losses are stacked and brought
        to the host once: on a GPU one synchronisation per check instead of one per loss."""
        names = list(losses)
        if not names:
            return
        arrays = [losses[name].array if isinstance(losses[name], chainer.Variable) else losses[name]
                  for name in names]
        xp = chainer.backend.get_array_module(*arrays)
        values = chainer.backend.CpuDevice().send(xp.stack([xp.asarray(a) for a in arrays]))
        for name, value in zip(names, values.tolist()):
            if not math.isfinite(value):
                raise NonFiniteLossError(name, self.iteration, value)

    def optimize(self, name: str, loss: chainer.Variable) -> None:
        """Clear the gradients of optimizer ``name``'s link, back-propagate ``loss`` to its parameters, step.

        Only that link's parameter gradients are computed (``chainer.grad``), unless ``--backprop all``.
        """
        optimizer = self.get_optimizer(name)
        link = optimizer.target
        link.cleargrads()
        params = [p for p in link.params() if p.array is not None]
        if not (self.speedups.backprop_needed_only and params):
            loss.backward()
        else:
            chainer.grad([loss], params, set_grad=True)
        optimizer.update()

    def update_denoisers(self, losses: Dict[str, chainer.Variable]) -> None:
        """Step every denoiser of the pool on its loss ``losses["loss_<name>"]`` (L_r, SPEC section 2)."""
        for _, denoiser in self.denoisers.items():
            denoiser.update(losses["loss_" + denoiser.name])

    def report(self, losses: Dict[str, chainer.Variable], lam: float) -> None:
        """Report losses, lambda_t and the implied beta_t (Corollary 2.2; left out where no p^beta is targeted)."""
        values = {name: loss for name, loss in losses.items()}
        values["lambda"] = lam
        beta = self.annealing.implied_beta(lam)
        if not math.isnan(beta):
            values["beta"] = beta
        chainer.reporter.report(values)

    def report_anneal_strength(self, f_fake: chainer.Variable, parts: Dict[str, chainer.Variable], lam: float) -> None:
        """Report what the annealing term actually does (module ``annealing``, "Scale").

        Every step ``lambda_effective`` and ``beta_effective`` (targeted in feature space); every
        ``diagnostics_every`` iterations ``grad_ratio_<part>`` = ||d part / d f_fake|| / ||d loss_gen_adv /
        d f_fake|| for each other generator-loss part. Must run before any update (it reads D's weights).
        """
        size = feature_size(f_fake)
        values = {"lambda_effective": self.annealing.effective_lambda(lam, size),
                  "beta_effective": self.annealing.effective_beta(lam, size)}
        every = self.diagnostics_every
        if every and (self.iteration + 1) % every == 0 and len(parts) > 1:
            names = list(parts)
            grads = [chainer.grad([parts[n]], [f_fake])[0] for n in names]
            norms = dict(zip(names, (float(self._norm(g)) for g in grads)))
            adversarial = norms.pop("loss_gen_adv")
            for name, norm in norms.items():
                values["grad_ratio_" + name[len("loss_"):]] = norm / adversarial if adversarial > 0 else math.inf
        chainer.reporter.report({k: v for k, v in values.items() if not math.isnan(v)})

    @staticmethod
    def _norm(grad: Optional[chainer.Variable]) -> float:
        """The Frobenius norm of a gradient (0 for None: the part does not reach the tensor)."""
        if grad is None:
            return 0.0
        xp = chainer.backend.get_array_module(grad.array)
        return float(xp.sqrt(xp.sum(grad.array.astype(xp.float64) ** 2)))

    def update(self) -> None:
        """One iteration with this run's speed-ups; denoisers forget reconstructions remembered from the
        previous one first. Type checks run on the first step only, unless ``check_types_every_step``.
        """
        for _, denoiser in self.denoisers.items():
            denoiser.forget()
        check = chainer.config.type_check and (self.check_types_every_step or not self._types_checked)
        with chainer.using_config("type_check", check), self.speedups.using():
            super().update()
        self._types_checked = True
        self.noise.step_done()  # with prefetch, the next step's noise is drawn while the host moves on

    def serialize(self, serializer) -> None:
        for _, denoiser in self.denoisers.items():
            denoiser.forget()  # loading may replace the parameters
        super().serialize(serializer)
        self.latent.serialize(serializer["latent"])
        self.noise.serialize(serializer["noise"])

    def update_core(self):
        raise NotImplementedError


class OneStepUpdater(GANUpdater):
    """One D/G/r step from one forward pass (DFM's update); the logistic discriminator loss by default.

    A variant overrides ``generator_adversarial_loss(y_fake)`` (see :class:`RKLUpdater`) and, for a
    non-logistic discriminator, ``discriminator_loss(y_real, y_fake)`` (docs/examples/lsgan.py).
    """

    def discriminator_loss(self, y_real: chainer.Variable, y_fake: chainer.Variable) -> chainer.Variable:
        """L_D = mean softplus(-y_real) + mean softplus(y_fake) (SPEC section 2)."""
        return mean_softplus(y_real, negate=True) + mean_softplus(y_fake)

    def generator_adversarial_loss(self, y_fake: chainer.Variable) -> chainer.Variable:
        """The objective's adversarial part of L_G from D's logits on the fake batch (each subclass's own)."""
        raise NotImplementedError

    def generator_extra_losses(self, f_fake: chainer.Variable) -> Dict[str, chainer.Variable]:
        """Further named parts of L_G besides the annealing term (JSD: DFM's feature term); none here."""
        return {}

    def update_core(self):
        lam = self.lambda_t()
        x_real = self.real_batch()
        f_real, y_real = self.dis(x_real)
        x_fake = self.generate(len(x_real))
        f_fake, y_fake = self.dis(x_fake)

        loss_dis = self.discriminator_loss(y_real, y_fake)
        parts = {"loss_gen_adv": self.generator_adversarial_loss(y_fake)}
        parts.update(self.generator_extra_losses(f_fake))
        parts.update(self.annealing_loss(f_fake, lam))
        loss_gen = total(parts.values())
        den_losses = self.denoiser_losses(real=f_real, fake=f_fake)

        losses = {"loss_dis": loss_dis, "loss_gen": loss_gen, **parts, **den_losses}
        self.check_finite(losses)
        self.report_anneal_strength(f_fake, parts, lam)
        self.update_denoisers(den_losses)
        self.optimize("gen", loss_gen)
        x_fake.unchain_backward()  # D's loss must not reach G
        self.optimize("dis", loss_dis)
        self.report(losses, lam)


_OBJECTIVES: Dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: register a :class:`GANUpdater` subclass under ``name`` (for ``--objective``)."""
    def decorator(cls):
        if name in _OBJECTIVES and _OBJECTIVES[name] is not cls:
            raise ValueError("objective {!r} is already registered ({})".format(name, _OBJECTIVES[name]))
        if not (isinstance(cls, type) and issubclass(cls, GANUpdater)):
            raise TypeError("@register({!r}) expects a GANUpdater subclass, got {!r}".format(name, cls))
        cls.objective_name = name
        _OBJECTIVES[name] = cls
        return cls
    return decorator


def names() -> List[str]:
    """Names accepted by ``--objective``."""
    return sorted(_OBJECTIVES)


def get(name: str) -> type:
    """The updater class registered under ``name``; a clear error for an unknown name."""
    if name not in _OBJECTIVES:
        raise ValueError("unknown objective {!r}; choose one of: {} (add your own with --plugin, see "
                         "docs/extending.md)".format(name, ", ".join(names())))
    return _OBJECTIVES[name]


def option_defaults(name: str) -> Dict[str, Any]:
    """The named constants of objective ``name`` with their defaults: keyword arguments with defaults of its
    own ``__init__``s (the most derived class's default wins)."""
    found: Dict[str, Any] = {}
    for klass in get(name).__mro__:
        if klass is GANUpdater or not issubclass(klass, GANUpdater):
            break
        if "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.default is not p.empty and p.name not in found:
                found[p.name] = p.default
    return found


def options(name: str) -> list:
    """The names of :func:`option_defaults` (``--dfm-weight`` of jsd, ``--gp-weight``/``--n-critic`` of wgan)."""
    return list(option_defaults(name))


@register("jsd")
class JSDUpdater(OneStepUpdater):
    """JSD-GAN = DFM: L_G = mean softplus(-y_fake) + 0.03 mean (f - sg r_data(f))^2 (+ annealing term)."""

    def __init__(self, *args, dfm_weight: float = DFM_WEIGHT, **kwargs):
        super().__init__(*args, **kwargs)
        self.dfm_weight = float(dfm_weight)
        keep = self.annealing.keeps_dfm_term and self.dfm_weight != 0.0
        self.dfm_denoiser = self.require_denoiser("data") if keep else None

    def generator_adversarial_loss(self, y_fake):
        return mean_softplus(y_fake, negate=True)

    def generator_extra_losses(self, f_fake):
        if self.dfm_denoiser is None:
            return {}
        return {"loss_dfm": residual_energy(f_fake, self.dfm_denoiser, self.dfm_weight)}


@register("rkl")
class RKLUpdater(OneStepUpdater):
    """RKL-GAN: L_G = mean(-y_fake) (+ annealing term): with the optimal D, y = log p - log q."""

    def generator_adversarial_loss(self, y_fake):
        return mean_negative(y_fake)


@register("wgan")
class WGANGPUpdater(GANUpdater):
    """WGAN-GP: n_critic critic steps on fresh real batches, then L_G = mean(-y_fake) (+ annealing term)."""

    discriminator_class = nets.WGANCritic

    def __init__(self, *args, gp_weight: float = GP_WEIGHT, n_critic: int = N_CRITIC, **kwargs):
        super().__init__(*args, **kwargs)
        if int(n_critic) < 1:
            raise ValueError("n_critic must be >= 1, got {}".format(n_critic))
        self.gp_weight = float(gp_weight)
        self.n_critic = int(n_critic)

    def critic_step(self) -> tuple:
        """One critic update: L_D = mean D(x_fake) - mean D(x_real) + penalty (Gulrajani et al. 2017, Algorithm 1).
        Returns (x_real, losses)."""
        x_real = self.real_batch()
        with chainer.no_backprop_mode():
            x_fake = chainer.Variable(self.generate(len(x_real)).array, requires_grad=False)  # no d/dx_fake
        _, y_real = self.dis(x_real)
        _, y_fake = self.dis(x_fake)
        u = self.target_device.send(self.noise.uniform((len(x_real), 1, 1, 1)))
        loss_gp = gradient_penalty(self.dis, x_real, x_fake, u, self.gp_weight)
        # (written fake first, as in the paper: with the fused losses the order of a sum's terms can matter
        # in the last bit; tests/test_updaters.py checks every step against Chainer's own nodes)
        loss_wasserstein = F.mean(y_fake) + mean_negative(y_real)
        loss_dis = loss_wasserstein + loss_gp
        losses = {"loss_dis": loss_dis, "loss_gp": loss_gp}
        self.check_finite(losses)
        self.optimize("dis", loss_dis)
        return x_real, losses

    def update_core(self):
        lam = self.lambda_t()
        for _ in range(self.n_critic):
            x_real, critic_losses = self.critic_step()

        x_fake = self.generate(len(x_real))
        f_fake, y_fake = self.dis(x_fake)
        parts = {"loss_gen_adv": mean_negative(y_fake)}
        parts.update(self.annealing_loss(f_fake, lam))
        loss_gen = total(parts.values())
        with chainer.no_backprop_mode():
            f_real, _ = self.dis(x_real)  # the current critic's features of the last real batch
        den_losses = self.denoiser_losses(real=f_real, fake=f_fake)

        losses = {"loss_gen": loss_gen, **parts, **den_losses}
        self.check_finite(losses)
        self.report_anneal_strength(f_fake, parts, lam)
        self.update_denoisers(den_losses)
        self.optimize("gen", loss_gen)
        self.report({**critic_losses, **losses}, lam)
