"""Variational-annealing terms added to the generator loss (SPEC section 2; Corollary 2.2 + DAE-score).

With f = D's feature of a fake batch, sg = stop-gradient, mean = mean over all elements, and lambda_t
from a schedule (:mod:`va_core.schedules`):

* ``none``: no term (lambda_t is still reported).
* ``lik``:  + c lambda_t mean (f - sg r_data(f))^2   likelihood annealing, targets p^(1 + lambda_t).
  Its gradient w.r.t. f is 2 c lambda_t (f - r_data(f)) / N = -2 c lambda_t sigma^2 score_data(f) / N:
  it pulls fakes up log p_data.
* ``ent``:  - c lambda_t mean (f - sg r_fake(f))^2   entropy annealing, targets p^(1 / (1 + lambda_t));
  r_fake is a second denoiser trained on noisy FAKE features [inferred]; the term pushes fakes down
  log q (more entropy).
* ``lgan``: + lambda_t mean((sg r_data(f) - f) * f)   the form of the authors' LGAN release; it
  replaces DFM's 0.03 term (``keeps_dfm_term = False``).

Scale (``--anneal-scale``). ``faithful`` (default) is the released normalisation above: a mean over
the B x D feature elements with c = 0.03, so the term targets, in feature space, the tempering exponent
of lambda_eff = 2 c sigma^2 lambda_t / D (2.9e-5 lambda_t at D = 2048; logged as ``beta_effective``).
``calibrated`` sets c = D / (2 sigma^2), so the per-sample feature gradient is exactly lambda_t
score(f) / B and lambda_eff = lambda_t: the target p^beta of Corollary 2.2 (``lgan`` refuses it).

The DAE-score estimate: a denoiser r trained on x + sigma eps gives score(x) ~ (r(x) - x) / sigma^2
(:meth:`FeatureDenoiser.score`), used with r detached (the "DAE-score" form; differentiating through
r is the wrong, "DAE-residual" estimator). Denoisers live in a :class:`DenoiserPool`, so that DFM's term
and the ``lik``/``lgan`` terms share one r_data. Adding a term: docs/extending.md.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple, Union

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import chainer.functions as F

from va_core import tempering
from chainer_va.array_types import Array
from chainer_va.fused_losses import scaled_mean_residual_product, scaled_mean_square
from chainer_va.latent import NoiseSource

__all__ = ["DENOISER_SIGMA", "ANNEAL_WEIGHT", "ANNEAL_SCALES", "FeatureDenoiser", "DenoiserPool", "residual_energy",
           "AnnealingTerm", "feature_size", "register", "names", "get", "NoAnnealing", "LikelihoodAnnealing",
           "EntropyAnnealing", "LGANAnnealing"]

DENOISER_SIGMA = 1.0  # std of the Gaussian corruption of the features (DFM; SPEC section 2)
ANNEAL_WEIGHT = 0.03  # c: with lambda = 1 the lik term equals DFM's own 0.03 term [inferred]
SOURCES = ("data", "fake")
#: --anneal-scale: the released normalisation c = weight, or c = D / (2 sigma^2) (gradient lambda * score)
ANNEAL_SCALES = ("faithful", "calibrated")


class FeatureDenoiser:
    """A denoising auto-encoder r on discriminator features and its optimizer (DFM's denoiser).

    Trained with L_r = mean (r(sg f + sigma eps) - sg f)^2, eps ~ N(0, I) (SPEC section 2). Its
    optimizer is registered with the updater under ``name`` (``denoiser_data``/``denoiser_fake``).
    """

    def __init__(self, name: str, link: chainer.Link, optimizer: chainer.Optimizer, noise: NoiseSource,
                 sigma: float = DENOISER_SIGMA, reuse_reconstruction: bool = False):
        if not sigma > 0:
            raise ValueError("the denoiser's noise level sigma must be positive, got {}".format(sigma))
        self.name = name
        self.link = link
        self.optimizer = optimizer
        self.noise = noise
        self.sigma = float(sigma)
        #: Reuse sg r(f) for the same feature array object until the next update (JSD + lik ask twice). Off by
        #: default: only safe where inputs are never modified in place (the pool turns it on).
        self.reuse_reconstruction = bool(reuse_reconstruction)
        self._last = None  # (input array, its reconstruction)
        self.forward_count = 0  # inference forwards run (a counter for tests and benchmarks)

    def forget(self) -> None:
        """Drop the remembered reconstruction (the parameters are about to change)."""
        self._last = None

    def loss(self, features) -> chainer.Variable:
        """L_r on a batch of (detached) features: mean (r(f + sigma eps) - f)^2."""
        f = features.array if isinstance(features, chainer.Variable) else features
        xp = chainer.backend.get_array_module(f)
        eps = xp.asarray(self.noise.normal(f.shape))
        return F.mean_squared_error(self.link(f + self.sigma * eps), f)

    def update(self, loss: chainer.Variable) -> None:
        """One optimizer step on ``loss``."""
        self.forget()
        self.link.cleargrads()
        loss.backward()
        self.optimizer.update()

    def reconstruct(self, features: Union[chainer.Variable, Array]) -> Array:
        """sg r(f): the denoiser in inference mode (BN running statistics, no noise), detached array.

        Asked twice for the same array object between two updates, it returns the first result
        (``reuse_reconstruction``); the updater also forgets it at the start of every step.
        """
        f = features.array if isinstance(features, chainer.Variable) else features
        if self.reuse_reconstruction and self._last is not None and self._last[0] is f:
            return self._last[1]
        with chainer.using_config("train", False), chainer.no_backprop_mode():
            r = self.link(f).array
        self.forward_count += 1
        self._last = (f, r) if self.reuse_reconstruction else None
        return r

    def score(self, x: Array) -> Array:
        """DAE-score estimate of grad log p_sigma at x: (r(x) - x) / sigma^2 (SPEC section 1)."""
        return (self.reconstruct(x) - x) / self.sigma ** 2


class DenoiserPool:
    """The denoisers of one run, created on first request, at most one per source (``data``, ``fake``)."""

    def __init__(self, make_link: Callable[[], chainer.Link],
                 make_optimizer: Callable[[chainer.Link], chainer.Optimizer], noise: NoiseSource,
                 sigma: float = DENOISER_SIGMA, device=None, reuse_reconstruction: bool = True):
        self._make_link = make_link
        self._make_optimizer = make_optimizer
        self.noise = noise
        self.sigma = sigma
        self.device = device
        self.reuse_reconstruction = reuse_reconstruction
        self._denoisers: Dict[str, FeatureDenoiser] = {}

    def get(self, source: str) -> FeatureDenoiser:
        """The denoiser trained on noisy ``source`` features (``data`` = real, ``fake`` = generated)."""
        if source not in SOURCES:
            raise ValueError("unknown feature source {!r}; use one of {}".format(source, SOURCES))
        if source not in self._denoisers:
            link = self._make_link()
            if self.device is not None:
                link.to_device(self.device)
            self._denoisers[source] = FeatureDenoiser(
                "denoiser_" + source, link, self._make_optimizer(link), self.noise, self.sigma,
                reuse_reconstruction=self.reuse_reconstruction)
        return self._denoisers[source]

    def items(self) -> List[Tuple[str, FeatureDenoiser]]:
        """(source, denoiser) pairs in a fixed order."""
        return [(s, self._denoisers[s]) for s in SOURCES if s in self._denoisers]


def feature_size(f: Union[chainer.Variable, Array]) -> int:
    """D: the number of feature values per sample of a batch ``f`` (B, ...)."""
    return int(f.size // len(f))


def residual_energy(f: chainer.Variable, denoiser: FeatureDenoiser, scale: Optional[float] = None) -> chainer.Variable:
    """[scale *] mean (f - sg r(f))^2: DFM's feature-matching term; its f-gradient is 2 scale (f - r(f)) / N."""
    return scaled_mean_square(f, denoiser.reconstruct(f), scale)


class AnnealingTerm:
    """Base class of an annealing term: ``generator_loss(f_fake, lam)`` is added to L_G.

    ``sources`` names the denoisers the term needs; ``keeps_dfm_term`` says whether the JSD (DFM)
    objective keeps its own 0.03 feature term next to this one. ``form`` is the tempering form of
    Corollary 2.2 the term implements (``"lik"``, ``"ent"``; others are not tempering), inherited by a
    subclass registered under another name. ``scale``: one of :data:`ANNEAL_SCALES` (module docstring).
    """

    name = "base"
    form: Optional[str] = None  # None: the registered name (a term of its own, untempered unless lik/ent)
    sources: tuple = ()
    keeps_dfm_term = True
    uses_weight = True  # whether ``weight`` (c, --anneal-weight) enters the term
    #: Why ``scale="calibrated"`` is not defined for this term (None: it is)
    calibration_refused: Optional[str] = None

    def __init__(self, denoisers: DenoiserPool, weight: float = ANNEAL_WEIGHT, scale: str = "faithful"):
        self.weight = float(weight)
        self.scale = self.check_scale(scale)
        self.denoisers = {source: denoisers.get(source) for source in self.sources}
        self.sigma = self.denoisers[self.sources[0]].sigma if self.sources else denoisers.sigma

    @classmethod
    def check_scale(cls, scale: str) -> str:
        """``scale`` if the term defines it; a one-line ValueError naming the choices or the reason otherwise."""
        if scale not in ANNEAL_SCALES:
            raise ValueError("unknown annealing scale {!r}: use faithful (the released c = --anneal-weight) or "
                             "calibrated (c = D / (2 sigma^2): the term's gradient is lambda * score)".format(scale))
        if scale == "calibrated" and cls.calibration_refused:
            raise ValueError("--anneal-scale calibrated is not defined for --anneal {}: {}; use --anneal-scale "
                             "faithful".format(cls.name, cls.calibration_refused))
        return scale

    def coefficient(self, feature_size: int) -> float:
        """c for features of ``feature_size`` numbers per sample: ``weight`` (faithful) or D / (2 sigma^2)."""
        if self.scale == "calibrated":
            return feature_size / (2.0 * self.sigma ** 2)
        return self.weight

    def effective_lambda(self, lam: float, feature_size: int) -> float:
        """lambda_eff = 2 c sigma^2 lambda / D: the term's per-sample feature gradient is lambda_eff score(f) / B
        (lik/ent forms; nan for a term that is not tempering)."""
        if self.tempering_form() not in tempering.TEMPERED_FORMS:
            return math.nan
        return 2.0 * self.coefficient(feature_size) * self.sigma ** 2 * lam / feature_size

    def effective_beta(self, lam: float, feature_size: int) -> float:
        """The inverse temperature the term targets in feature space (Corollary 2.2 at :meth:`effective_lambda`)."""
        lam_eff = self.effective_lambda(lam, feature_size)
        return math.nan if math.isnan(lam_eff) else tempering.implied_beta(self.tempering_form(), lam_eff)

    def generator_loss(self, f_fake: chainer.Variable, lam: float) -> Optional[chainer.Variable]:
        """The term added to L_G at weight ``lam`` = lambda_t, from the fake batch's discriminator features
        ``f_fake`` (a Variable, so gradients reach G): a scalar Variable, or None when it adds nothing."""
        raise NotImplementedError

    @classmethod
    def tempering_form(cls) -> str:
        """The form :func:`tempering.implied_beta` and :func:`tempering.check_tempered` take: ``form``, else
        the registered name."""
        return cls.form or cls.name

    def implied_beta(self, lam: float) -> float:
        """Inverse temperature targeted at weight ``lam`` (Corollary 2.2; :func:`tempering.implied_beta`)."""
        return tempering.implied_beta(self.tempering_form(), lam)


_TERMS: Dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: register an :class:`AnnealingTerm` subclass under ``name`` (for ``--anneal``)."""
    def decorator(cls):
        if name in _TERMS and _TERMS[name] is not cls:
            raise ValueError("annealing term {!r} is already registered ({})".format(name, _TERMS[name]))
        if not (isinstance(cls, type) and issubclass(cls, AnnealingTerm)):
            raise TypeError("@register({!r}) expects an AnnealingTerm subclass, got {!r}".format(name, cls))
        cls.name = name
        _TERMS[name] = cls
        return cls
    return decorator


def names() -> list:
    """Names accepted by ``--anneal``."""
    return sorted(_TERMS)


def get(name: str) -> type:
    """The annealing-term class registered under ``name``; a clear error for an unknown name."""
    if name not in _TERMS:
        raise ValueError("unknown annealing term {!r}; choose one of: {} (add your own with --plugin, see "
                         "docs/extending.md)".format(name, ", ".join(names())))
    return _TERMS[name]


@register("none")
class NoAnnealing(AnnealingTerm):
    """No annealing term: the baseline "without VA"."""

    form = "none"
    uses_weight = False

    def generator_loss(self, f_fake: chainer.Variable, lam: float) -> Optional[chainer.Variable]:
        return None


@register("lik")
class LikelihoodAnnealing(AnnealingTerm):
    """+ c lambda_t mean (f - sg r_data(f))^2: targets p^(1 + lambda_t) (likelihood form, Corollary 2.2)."""

    form = "lik"
    sources = ("data",)

    def generator_loss(self, f_fake: chainer.Variable, lam: float) -> Optional[chainer.Variable]:
        c = self.coefficient(feature_size(f_fake))
        return residual_energy(f_fake, self.denoisers["data"], c * lam)


@register("ent")
class EntropyAnnealing(AnnealingTerm):
    """- c lambda_t mean (f - sg r_fake(f))^2: targets p^(1 / (1 + lambda_t)) (entropy form, Corollary 2.2)."""

    form = "ent"
    sources = ("fake",)

    def generator_loss(self, f_fake: chainer.Variable, lam: float) -> Optional[chainer.Variable]:
        c = self.coefficient(feature_size(f_fake))
        return residual_energy(f_fake, self.denoisers["fake"], -c * lam)


@register("lgan")
class LGANAnnealing(AnnealingTerm):
    """+ lambda_t mean((sg r_data(f) - f) * f), the LGAN release's form; replaces DFM's 0.03 term.

    ``weight`` is unused (the release has none); it is accepted so every term takes the same options.
    """

    form = "lgan"
    sources = ("data",)
    keeps_dfm_term = False
    uses_weight = False
    calibration_refused = ("its gradient lambda (r(f) - 2 f) / N is not a multiple of the DAE score (r(f) - f) / "
                           "sigma^2, so no c makes it target a tempered p^beta")

    def generator_loss(self, f_fake: chainer.Variable, lam: float) -> Optional[chainer.Variable]:
        return scaled_mean_residual_product(f_fake, self.denoisers["data"].reconstruct(f_fake), lam)
