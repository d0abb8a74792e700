"""Annealing schedules lambda_t for the variational-annealing term (supplement J.1; SPEC section 3).

Framework-free (plain Python floats) so that the Chainer GANs, the TFP U-GAN and the RL agent share
them. ``make(name, lambda0, total_iterations, **options)`` returns a callable ``t -> lambda_t``.

With a likelihood-annealing term, lambda_t targets p^beta with beta = 1 + lambda_t; with an
entropy-annealing term, beta = 1 / (1 + lambda_t) (Corollary 2.2; :mod:`va_core.tempering`).
Variational annealing means lambda_t -> 0 by the end of training, so every schedule except
``static`` must end at 0, and options that prevent that are rejected.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, Optional

__all__ = ["Schedule", "make", "misplaced_option", "register", "names", "option_defaults"]

DEFAULT_END_FRACTION = 0.8  # T_max = 0.8 T: "slightly smaller than the total" (LGAN's script used 0.8)
DEFAULT_CYCLES = 5  # "lambda_t loops over for five cycles" (supplement J.1)
DEFAULT_FINAL_RATIO = 1e-3  # exponential: |lambda_T| = 1e-3 |lambda0| ("tau chosen so lambda_t -> 0")
DEFAULT_KNOT_INTERVAL = 10000  # LGAN triangle: a knot every S = 10k iterations (their script)
MAX_FINAL_RATIO = 0.05  # an exponential schedule ending above 5% of lambda0 does not "end at 0"


class Schedule:
    """A callable ``iteration -> lambda``; keeps its name and options so runs can record them."""

    def __init__(self, name: str, lambda0: float, total_iterations: int, fn: Callable[[float], float],
                 options: Dict[str, float]):
        self.name = name
        self.lambda0 = float(lambda0)
        self.total_iterations = int(total_iterations)
        self.options = dict(options)
        self._fn = fn

    def __call__(self, iteration: float) -> float:
        if iteration < 0:
            raise ValueError("iteration must be >= 0, got {}".format(iteration))
        return float(self._fn(min(float(iteration), float(self.total_iterations))))

    def config(self) -> dict:
        """The schedule's full description (for the run's recorded configuration)."""
        return {"name": self.name, "lambda0": self.lambda0,
                "total_iterations": self.total_iterations, **self.options}

    def __repr__(self) -> str:
        opts = "".join(", {}={!r}".format(k, v) for k, v in sorted(self.options.items()))
        return "Schedule({!r}, lambda0={}, total_iterations={}{})".format(
            self.name, self.lambda0, self.total_iterations, opts)


_BUILDERS: Dict[str, Callable[..., Callable[[float], float]]] = {}


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator: register ``builder(lambda0, total_iterations, option=default, ...) -> (t -> lambda)`` under
    ``name``. Its options are named keyword arguments with defaults (:func:`option_defaults` reads them
    from the signature; ``**kwargs`` would hide them, so it is refused)."""
    import inspect

    def decorator(builder):
        if name in _BUILDERS:
            raise ValueError("schedule {!r} is already registered".format(name))
        parameters = list(inspect.signature(builder).parameters.values())
        hidden = [("**" if p.kind is p.VAR_KEYWORD else "*") + p.name for p in parameters
                  if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        if len(parameters) < 2 or hidden or any(p.default is p.empty for p in parameters[2:]):
            raise TypeError("schedule {!r}: the builder must be (lambda0, total_iterations, option=default, ...) with "
                            "each option a named keyword argument with a default; got {}{}".format(
                                name, inspect.signature(builder),
                                " ({} hides the options)".format(hidden[0]) if hidden else ""))
        _BUILDERS[name] = builder
        return builder
    return decorator


def names() -> list:
    """Names accepted by :func:`make`."""
    return sorted(_BUILDERS)


def option_defaults(name: str) -> Dict[str, object]:
    """The options of schedule ``name`` and their defaults (e.g. ``{"knot_interval": 10000}`` for lgan)."""
    import inspect

    if name not in _BUILDERS:
        raise ValueError("unknown schedule {!r}; choose one of: {}".format(name, ", ".join(names())))
    parameters = list(inspect.signature(_BUILDERS[name]).parameters.values())[2:]
    return {p.name: p.default for p in parameters}


def misplaced_option(name: str, options: Iterable[str]) -> Optional[str]:
    """For a command line: ``"--cycles is an option of the sinusoidal and stepwise schedules, not of
    linear; drop it"`` for the first of ``options`` (names) that schedule ``name`` does not take but another
    does, else None (an option of no schedule is named by :func:`make`)."""
    if name not in _BUILDERS:
        return None
    for key in options:
        takers = [n for n in names() if key in option_defaults(n)]
        if key not in option_defaults(name) and takers:  # an option of no schedule: make names it
            listed = " and ".join([", ".join(takers[:-1])] + takers[-1:]) if len(takers) > 1 else "".join(takers)
            return "--{} is an option of the {} schedule{}, not of {}; drop it".format(
                key.replace("_", "-"), listed, "s" if len(takers) > 1 else "", name)
    return None


def make(name: str, lambda0: float, total_iterations: int, **options) -> Schedule:
    """Build the schedule ``name`` starting at ``lambda0`` over ``total_iterations`` iterations."""
    if name not in _BUILDERS:
        raise ValueError("unknown schedule {!r}; choose one of: {}".format(name, ", ".join(names())))
    if not isinstance(total_iterations, int) or isinstance(total_iterations, bool) or total_iterations <= 0:
        raise ValueError("total_iterations must be a positive integer, got {!r}".format(total_iterations))
    lambda0 = float(lambda0)
    if not math.isfinite(lambda0):
        raise ValueError("lambda0 must be finite, got {!r}".format(lambda0))
    import inspect

    allowed = [p for p in inspect.signature(_BUILDERS[name]).parameters][2:]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError("schedule {!r} takes options {}; unknown: {}".format(
            name, allowed or "none", ", ".join(unknown)))
    fn = _BUILDERS[name](lambda0, total_iterations, **options)
    bound = inspect.signature(_BUILDERS[name]).bind(lambda0, total_iterations, **options)
    bound.apply_defaults()
    resolved = {k: v for k, v in bound.arguments.items() if k in allowed}
    return Schedule(name, lambda0, total_iterations, fn, resolved)


def _check_end_fraction(end_fraction: float) -> float:
    if not (0.0 < end_fraction <= 1.0):
        raise ValueError(
            "end_fraction={} puts T_max = end_fraction * T outside (0, T], so lambda_t cannot reach 0 by "
            "the end of training; choose 0 < end_fraction <= 1 (default {})".format(
                end_fraction, DEFAULT_END_FRACTION))
    return float(end_fraction)


def _linear_envelope(total_iterations: int, end_fraction: float) -> Callable[[float], float]:
    t_max = end_fraction * total_iterations
    return lambda t: max(1.0 - t / t_max, 0.0)


@register("static")
def _static(lambda0: float, total_iterations: int):
    """lambda_t = lambda0 (the tempered target p^beta throughout; not annealing)."""
    return lambda t: lambda0


@register("linear")
def _linear(lambda0: float, total_iterations: int, end_fraction: float = DEFAULT_END_FRACTION):
    """lambda_t = sign(lambda0) max(|lambda0| (1 - t / T_max), 0), T_max = end_fraction T (J.1)."""
    envelope = _linear_envelope(total_iterations, _check_end_fraction(end_fraction))
    return lambda t: lambda0 * envelope(t)


@register("exponential")
def _exponential(lambda0: float, total_iterations: int, final_ratio: float = DEFAULT_FINAL_RATIO):
    """lambda_t = sign(lambda0) |lambda0| exp(-tau t), tau = -ln(final_ratio) / T so |lambda_T| = final_ratio |lambda0| (J.1)."""
    if not (0.0 < final_ratio <= MAX_FINAL_RATIO):
        raise ValueError(
            "final_ratio={} means lambda_T = {} * lambda0: an exponential schedule must end near 0; "
            "choose 0 < final_ratio <= {} (default {})".format(
                final_ratio, final_ratio, MAX_FINAL_RATIO, DEFAULT_FINAL_RATIO))
    tau = -math.log(final_ratio) / total_iterations
    return lambda t: lambda0 * math.exp(-tau * t)


def _check_cycles(cycles: int, total_iterations: int) -> int:
    if not isinstance(cycles, int) or isinstance(cycles, bool) or cycles < 1 or 2 * cycles > total_iterations:
        raise ValueError("cycles must be an integer in [1, T/2], got {!r} for T={}".format(
            cycles, total_iterations))
    return cycles


@register("sinusoidal")
def _sinusoidal(lambda0: float, total_iterations: int, cycles: int = DEFAULT_CYCLES,
                end_fraction: float = 1.0):
    """lambda_t = lambda0 (1 - t/T_max)_+ cos(2 pi cycles t / T): five continuous cycles, decaying to 0 [inferred waveform]."""
    cycles = _check_cycles(cycles, total_iterations)
    envelope = _linear_envelope(total_iterations, _check_end_fraction(end_fraction))
    return lambda t: lambda0 * envelope(t) * math.cos(2.0 * math.pi * cycles * t / total_iterations)


@register("stepwise")
def _stepwise(lambda0: float, total_iterations: int, cycles: int = DEFAULT_CYCLES,
              end_fraction: float = 1.0):
    """The discontinuous counterpart of ``sinusoidal``: lambda0 (1 - t/T_max)_+ sign(cos(2 pi cycles t / T)) [inferred].

    Each cycle holds +|envelope| for its first and last quarter and -|envelope| in between, so
    ``stepwise`` and ``sinusoidal`` differ only in the waveform, as compared in J.1.
    """
    cycles = _check_cycles(cycles, total_iterations)
    envelope = _linear_envelope(total_iterations, _check_end_fraction(end_fraction))

    def fn(t):
        phase = (cycles * t / total_iterations) % 1.0
        sign = 1.0 if (phase < 0.25 or phase >= 0.75) else -1.0
        return lambda0 * envelope(t) * sign
    return fn


@register("lgan")
def _lgan(lambda0: float, total_iterations: int, knot_interval: int = DEFAULT_KNOT_INTERVAL):
    """The authors' released triangle (SPEC section 3): knots every S iterations at lambda0 (1 - kS/T) (-1)^k, 0 from k = T // S on."""
    if not isinstance(knot_interval, int) or isinstance(knot_interval, bool) or not (
            0 < knot_interval <= total_iterations):
        raise ValueError("knot_interval must be an integer in (0, T], got {!r} for T={}".format(
            knot_interval, total_iterations))
    last_knot = total_iterations // knot_interval

    def knot(k: int) -> float:
        if k >= last_knot:
            return 0.0
        return lambda0 * (1.0 - k * knot_interval / total_iterations) * (-1.0) ** k

    def fn(t):
        k = int(t // knot_interval)
        frac = (t - k * knot_interval) / knot_interval
        return (1.0 - frac) * knot(k) + frac * knot(k + 1)
    return fn
