"""The tempering forms of Corollary 2.2: how an annealing weight lambda enters an objective, and what it targets.

With the likelihood form, KL(q||p) - lambda E_q[log p] = E_q[log q - (1 + lambda) log p] + const, the
target is p^beta with beta = 1 + lambda; with the entropy form, KL(q||p) - lambda H(q) =
E_q[(1 + lambda) log q - log p], beta = 1 / (1 + lambda). Every objective of the package that anneals
(the GAN terms, the U-GAN, the RL policy, Fig. S1) takes its weights, beta and the check that a schedule
keeps a tempered target from here.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

__all__ = ["TEMPERED_FORMS", "WEIGHTED_FORMS", "weights", "implied_beta", "check_tempered", "idle_lambda0"]

#: Annealing forms with a tempered target p^beta (Corollary 2.2); both need 1 + lambda_t > 0.
TEMPERED_FORMS = ("lik", "ent")


def check_tempered(anneal: str, schedule: "Schedule") -> None:
    """Raise ValueError when a lambda_t the run takes (t = 0 .. T-1) leaves no tempered target p^beta.

    Corollary 2.2: the likelihood form targets beta = 1 + lambda, the entropy form beta = 1 / (1 + lambda);
    with 1 + lambda_t <= 0 neither exists (the objective is unbounded below). Oscillating schedules
    (sinusoidal, stepwise, lgan) swing to about -lambda0, so they need |lambda0| < 1 with these forms.
    Other annealing terms (``none``, ``lgan``'s own form) are not tempering and are not checked.
    """
    if anneal not in TEMPERED_FORMS or schedule.total_iterations < 1:
        return
    t, lam = min(((t, schedule(t)) for t in range(schedule.total_iterations)), key=lambda pair: pair[1])
    if 1.0 + lam <= 0.0:
        raise ValueError(
            "the {} schedule with lambda0={:g} reaches lambda={:.4g} at iteration {}, where the {} form has no "
            "tempered target ({}); keep lambda > -1 at every iteration: a smaller |lambda0|{}".format(
                schedule.name, schedule.lambda0, lam, t, "likelihood" if anneal == "lik" else "entropy",
                "beta = 1 + lambda <= 0" if anneal == "lik" else "beta = 1/(1 + lambda) is not positive",
                "" if schedule.lambda0 <= -1.0 else " or a schedule that does not oscillate (linear, exponential)"))


def implied_beta(anneal: str, lam: float) -> float:
    """Inverse temperature targeted at weight ``lam`` (Corollary 2.2).

    ``lik``: KL(q||p) - lam E_q[log p] targets p^beta with beta = 1 + lam.
    ``ent``: KL(q||p) - lam H(q) targets p^beta with beta = 1 / (1 + lam) (needs lam > -1).
    ``lgan``: nan. Its term lam mean((sg r(f) - f) f) has gradient lam (r - 2f) in f, which moves fakes
    along -score_data for lam > 0 (down log p): no tempered target p^beta exists.
    ``none`` and other names: 1.0 (the untempered target).
    """
    if anneal == "lik":
        return 1.0 + lam
    if anneal == "lgan":
        return math.nan
    if anneal == "ent":
        if lam <= -1.0:
            return math.inf
        return 1.0 / (1.0 + lam)
    return 1.0


#: Forms with weights (a, b) (:func:`weights`): no annealing, and the two tempered forms.
WEIGHTED_FORMS = ("none",) + TEMPERED_FORMS


def weights(anneal: str, lam: Any, one: Any = 1.0) -> Tuple[Any, Any]:
    """(a, b) of the annealed objective E_q[a log q - b log p] (Corollary 2.2): ``none`` (1, 1); ``lik``
    (1, 1 + lam), beta = b / a = 1 + lam; ``ent`` (1 + lam, 1), beta = 1 / (1 + lam).

    ``lam`` may be a float or a tensor; ``one`` is the 1 to use (a ones tensor like ``lam``, for a graph).
    A float ``lam`` <= -1 with a tempered form is a ValueError: there is no tempered target."""
    if anneal not in WEIGHTED_FORMS:
        raise ValueError("anneal must be one of {}, got {!r}".format(", ".join(WEIGHTED_FORMS), anneal))
    if anneal != "none" and isinstance(lam, (int, float)) and not 1.0 + lam > 0.0:
        raise ValueError("{} annealing with lambda={} has no tempered target ({}); keep lambda > -1".format(
            "likelihood" if anneal == "lik" else "entropy", lam,
            "beta = 1 + lambda <= 0" if anneal == "lik" else "beta = 1/(1 + lambda) is not positive"))
    if anneal == "lik":
        return one, one + lam
    if anneal == "ent":
        return one + lam, one
    return one, one


def idle_lambda0(anneal: str, lambda0: Optional[float], terms: Tuple[str, ...] = TEMPERED_FORMS,
                 style: str = "cli") -> Optional[str]:
    """The error every entry point gives for a lambda0 with nothing to anneal (``anneal`` none), else None.

    ``terms``: the annealing terms the entry point offers instead; ``style``: ``cli`` words it with flags
    (``--lambda0 0.5``), ``python`` with keyword arguments (``lambda0=0.5``)."""
    if anneal != "none" or lambda0 is None or lambda0 == 0.0:
        return None
    names = [repr(t) for t in terms] if style == "python" else list(terms)
    choices = names[0] if len(names) == 1 else "{} or {}".format(", ".join(names[:-1]), names[-1])
    if style == "python":
        return "lambda0={:g} would have no effect with anneal='none'; drop it, or pass anneal={}".format(lambda0, choices)
    return "--lambda0 {:g} would have no effect with --anneal none; drop it, or pass --anneal {}".format(lambda0, choices)
