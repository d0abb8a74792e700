"""Score-estimator toy (main-text Fig. 2; supplement G; SPEC section 6), in Chainer.

A denoising auto-encoder r_sigma is trained on samples of a 2-D target (the banana
log u(x1, x2) = -1/2 (x2^2/4 + (x1 - x2^2/4)^2)) with Gaussian corruption sigma = 0.2. Two score
estimates drive an unadjusted Langevin sampler x <- x + eta s(x) + sqrt(2 eta) xi:

- DAE-score (stop-gradient): s(x) = (r(x) - x) / sigma^2 (Alain & Bengio 2014) -- the estimator the
  paper uses; :meth:`chainer_va.annealing.FeatureDenoiser.score` (shared with the GAN updaters).
- DAE-residual: s_r(x) = -c grad_x ||r(x) - x||^2, differentiating through r. The supplement writes
  it without a scale; since r(x) - x ~ sigma^2 grad log p, ||r - x||^2 ~ sigma^4 ||grad log p||^2, so
  we scale by c = 1 / (2 sigma^4) (``residual_scale``), which makes s_r = -H grad log p (H the Hessian
  of log p) for small sigma: it equals the score for a unit Gaussian, and its zeros are all stationary
  points of ||grad log p||, so samples pile up on spurious modes. Without the scale the drift is
  sigma^4 ~ 1e-3 times smaller and the chains simply diffuse.

The sample quality of each sampler is measured against exact samples with
:mod:`va_core.sample_distance` (energy distance, MMD).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import chainer.functions as F
import chainer.links as L

from chainer_va.annealing import FeatureDenoiser
from va_core.banana import banana_log_density, banana_score, sample_banana  # noqa: F401  (this module's API)
from chainer_va.latent import NoiseSource
from chainer_va.nets import init_rng

__all__ = ["ToyDenoiser", "make_denoiser", "train_denoiser", "dae_score", "dae_residual_score",
           "langevin", "banana_score", "banana_log_density", "sample_banana", "SIGMA"]

SIGMA = 0.2  # supplement G: "we set the noise level to sigma = 0.2"
DEFAULT_HIDDEN = (128, 128, 128)  # [inferred] the toy DAE's size is not given
DEFAULT_LR = 1e-3  # Adam [inferred]
DEFAULT_STEPS = 4000
DEFAULT_BATCH = 512
DEFAULT_STEP_SIZE = 0.01  # Langevin eta [inferred]
DEFAULT_LANGEVIN_STEPS = 3000


class ToyDenoiser(chainer.Chain):
    """r(x) = x + MLP(x): an ELU MLP on R^dim with a skip connection (smooth, so grad_x r exists)."""

    def __init__(self, dim: int = 2, hidden: Sequence[int] = DEFAULT_HIDDEN,
                 rng: Optional[np.random.RandomState] = None):
        super().__init__()
        sizes = [int(dim)] + [int(h) for h in hidden]
        self.n_hidden = len(hidden)
        w = chainer.initializers.LeCunNormal(rng=init_rng(rng))  # Chainer's default for Linear, seeded
        with self.init_scope():
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                setattr(self, "l{}".format(i), L.Linear(a, b, initialW=w))
            self.l_out = L.Linear(sizes[-1], int(dim), initialW=chainer.initializers.Zero())

    def forward(self, x):
        h = x
        for i in range(self.n_hidden):
            h = F.elu(getattr(self, "l{}".format(i))(h))
        return x + self.l_out(h)


def make_denoiser(dim: int = 2, hidden: Sequence[int] = DEFAULT_HIDDEN, sigma: float = SIGMA,
                  lr: float = DEFAULT_LR, seed: int = 0) -> FeatureDenoiser:
    """A :class:`FeatureDenoiser` around a :class:`ToyDenoiser` with Adam (weights drawn from ``seed``)."""
    with chainer.using_config("dtype", np.float32):
        link = ToyDenoiser(dim, hidden, rng=np.random.RandomState(seed))
    opt = chainer.optimizers.Adam(alpha=lr)
    opt.setup(link)
    return FeatureDenoiser("toy_denoiser", link, opt, NoiseSource(seed + 1), sigma=sigma)


def train_denoiser(denoiser: FeatureDenoiser, data: np.ndarray, steps: int = DEFAULT_STEPS,
                   batch_size: int = DEFAULT_BATCH, seed: int = 0,
                   callback: Optional[Callable[[int, float], None]] = None) -> list:
    """Train r on ``data`` (n, dim) with L = mean (r(x + sigma eps) - x)^2 (supplement G); returns losses."""
    data = np.asarray(data, np.float32)
    if data.ndim != 2 or not np.all(np.isfinite(data)):
        raise ValueError("data must be a finite (n, dim) array, got shape {}".format(data.shape))
    rng = np.random.default_rng(seed)
    losses = []
    for i in range(int(steps)):
        batch = data[rng.integers(0, len(data), batch_size)]
        loss = denoiser.loss(batch)
        denoiser.update(loss)
        losses.append(float(loss.array))
        if callback is not None:
            callback(i, losses[-1])
    return losses


def dae_score(denoiser: FeatureDenoiser, x: np.ndarray) -> np.ndarray:
    """DAE-score s(x) = (sg r(x) - x) / sigma^2 (the paper's estimator)."""
    return denoiser.score(np.asarray(x, np.float32))


def dae_residual_score(denoiser: FeatureDenoiser, x: np.ndarray, residual_scale: Optional[float] = None
                       ) -> np.ndarray:
    """DAE-residual s_r(x) = -c grad_x ||r(x) - x||^2 (through r), c = ``residual_scale`` or 1/(2 sigma^4)."""
    c = 1.0 / (2.0 * denoiser.sigma ** 4) if residual_scale is None else float(residual_scale)
    xv = chainer.Variable(np.asarray(x, np.float32))
    with chainer.using_config("train", False):
        energy = F.sum(F.square(denoiser.link(xv) - xv))  # sum over samples: per-sample gradients
    (g,) = chainer.grad([energy], [xv])
    return (-c * g.array).astype(np.float32)


def langevin(score_fn: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, step_size: float = DEFAULT_STEP_SIZE,
             n_steps: int = DEFAULT_LANGEVIN_STEPS, rng: Optional[np.random.Generator] = None,
             record_every: int = 0) -> Dict[str, object]:
    """Unadjusted Langevin: x <- x + eta s(x) + sqrt(2 eta) xi, xi ~ N(0, I) (SPEC section 6).

    Returns {"samples": final x, "trace": list of recorded x (every ``record_every`` steps),
    "diverged": fraction of chains that became non-finite (those are reset to stay finite)}.
    """
    if not step_size > 0:
        raise ValueError("step_size must be positive, got {}".format(step_size))
    if rng is None:
        raise ValueError("pass rng=numpy.random.default_rng(seed): the sampler takes an explicit generator")
    x = np.array(x0, dtype=np.float32)
    noise_scale = np.float32(np.sqrt(2.0 * step_size))
    trace = []
    bad = np.zeros(len(x), bool)
    for t in range(int(n_steps)):
        x = x + np.float32(step_size) * score_fn(x) + noise_scale * rng.standard_normal(x.shape).astype(np.float32)
        nonfinite = ~np.all(np.isfinite(x), 1)
        if nonfinite.any():
            bad |= nonfinite
            x[nonfinite] = 0.0
        if record_every and (t + 1) % record_every == 0:
            trace.append(x.copy())
    return {"samples": x, "trace": trace, "diverged": float(bad.mean())}
