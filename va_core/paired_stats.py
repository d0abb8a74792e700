"""Paired seed-by-seed comparison of a variant cell against its baseline cell (Table 1 study).

For each GAN objective, Table 1 compares a variant cell (with variational annealing) against the
baseline cell (``none``) over the SAME seeds, for IS (higher is better) and FID (lower is better).
The evidence standard: at least 5 seeds, paired differences (variant minus baseline, per seed), a
95% t interval of the mean difference, a paired test, and a Holm correction for the number of
comparisons. Where the interval covers 0 the table says "no detectable difference".

Framework-free: imports only numpy, scipy and the standard library (no Chainer, nothing from
``chainer_va``), so result tables can be analysed anywhere.

Why the paired t-test is the primary test: with n seeds the two-sided exact Wilcoxon signed-rank
p-value can never be below 2 / 2**n; with 5 seeds that is 0.0625, so Wilcoxon alone could never
reach 0.05 however large the effect. It is reported (``p_wilcoxon``) as a distribution-free check
on the t-test, not used for the verdict. Here it is the exact null distribution of the sum of
positive ranks: zero differences are dropped (Wilcoxon's convention) and tied absolute
differences get mid-ranks, the distribution being exact given those ranks (no normal
approximation, for any n).

The family for Holm is all comparisons of ONE metric in ONE table (e.g. every objective's
variant-vs-``none`` FID comparison): call :func:`adjust` once per metric and table, never on a
single comparison in isolation, or the correction does nothing.

Typical use::

    seeds, base, var = pair_by_seed(fid["rkl/none"], fid["rkl/lik"], what="rkl/lik vs rkl/none")
    c = paired_difference(base, var, higher_is_better=False)     # one per objective
    table = adjust([c, ...])                                     # all FID comparisons of the table
    table[0].verdict()
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

__all__ = ["SeedMismatchError", "pair_by_seed", "PairedComparison", "paired_difference", "holm", "adjust",
           "wilcoxon_exact"]


class SeedMismatchError(ValueError):
    """The two cells of a paired comparison were not run over the same seeds."""


def _seed_list(seeds) -> str:
    return ",".join(str(s) for s in seeds) if seeds else "none"


def pair_by_seed(baseline: Mapping[int, float], variant: Mapping[int, float],
                 what: str = "") -> tuple[list[int], np.ndarray, np.ndarray]:
    """The common seeds in sorted order and the baseline and variant values in that order.

    ``baseline`` and ``variant`` map seed -> metric value. ``what`` names the comparison, as
    ``"<variant cell> vs <baseline cell>"`` (e.g. ``"rkl/lik vs rkl/none"``), for the error message.
    Raises :class:`SeedMismatchError` (one line) if the two seed sets differ.
    """
    base_seeds, var_seeds = set(baseline), set(variant)
    if base_seeds != var_seeds:
        if " vs " in what:
            var_name, base_name = (part.strip() for part in what.split(" vs ", 1))
        else:
            prefix = "{}: ".format(what) if what else ""
            var_name, base_name = prefix + "the variant", "the baseline"
        raise SeedMismatchError(
            "{} has seeds {} but {} has {}: a paired comparison needs the same seeds in both cells; run the "
            "missing seeds (or pass the same --seeds to every cell)".format(
                var_name, _seed_list(sorted(var_seeds)), base_name, _seed_list(sorted(base_seeds))))
    seeds = sorted(base_seeds)
    return (seeds, np.array([float(baseline[s]) for s in seeds], dtype=np.float64),
            np.array([float(variant[s]) for s in seeds], dtype=np.float64))


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """A variant-vs-baseline comparison over paired seeds; differences are variant minus baseline.

    ``ci_low``/``ci_high``: two-sided t interval of the mean paired difference at ``confidence``.
    ``p_t``: two-sided paired t-test. ``p_wilcoxon``: two-sided exact Wilcoxon signed-rank (nan when
    all differences are 0). ``p_adjusted``: Holm-adjusted ``p_t``, set by :func:`adjust` (nan until then).
    """

    n: int
    mean_baseline: float
    mean_variant: float
    mean_diff: float
    ci_low: float
    ci_high: float
    t_stat: float
    p_t: float
    p_wilcoxon: float
    p_adjusted: float = math.nan
    confidence: float = 0.95
    higher_is_better: bool = True

    def verdict(self, alpha: float = 0.05) -> str:
        """The table's wording for this comparison.

        "no detectable difference" when the interval covers 0; "no detectable difference after
        correction" when it excludes 0 but the Holm-adjusted p (``p_t`` if not yet adjusted) is
        >= ``alpha``; otherwise "better" or "worse" for the variant, by the sign of ``mean_diff``
        and ``higher_is_better``.
        """
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be in (0, 1), got {}".format(alpha))
        if self.ci_low <= 0.0 <= self.ci_high:
            return "no detectable difference"
        p = self.p_t if math.isnan(self.p_adjusted) else self.p_adjusted
        if not p < alpha:  # also catches a nan p
            return "no detectable difference after correction"
        improved = self.mean_diff > 0 if self.higher_is_better else self.mean_diff < 0
        return "better" if improved else "worse"


def wilcoxon_exact(differences: Sequence[float]) -> float:
    """Two-sided exact Wilcoxon signed-rank p-value of paired ``differences``; nan if all are 0.

    Zero differences are dropped; tied absolute differences get mid-ranks and the null distribution
    of the positive-rank sum is computed exactly for those ranks (each sign +/- with probability 1/2).
    Agrees with ``scipy.stats.wilcoxon(d, method="exact")`` when there are no zeros or ties.
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return math.nan
    doubled = np.rint(2 * stats.rankdata(np.abs(d))).astype(np.int64)  # mid-ranks are multiples of 1/2
    observed = int(doubled[d > 0].sum())
    dist = np.zeros(int(doubled.sum()) + 1)
    dist[0] = 1.0
    for r in doubled:  # P(sum of a random subset of the ranks = s), one rank at a time
        shifted = np.zeros_like(dist)
        shifted[r:] = dist[:-r]
        dist = 0.5 * (dist + shifted)
    lower, upper = dist[:observed + 1].sum(), dist[observed:].sum()
    return float(min(1.0, 2.0 * min(lower, upper)))


def _finite_vector(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError("{} must be a 1-D sequence of per-seed values, got shape {}".format(name, array.shape))
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError("{} has non-finite values at positions {}: fix or rerun those seeds before comparing".format(
            name, ",".join(str(i) for i in bad)))
    return array


def paired_difference(baseline: Sequence[float], variant: Sequence[float], confidence: float = 0.95,
                      higher_is_better: bool = True) -> PairedComparison:
    """Paired comparison of ``variant`` against ``baseline`` (equal length; same position = same seed).

    Differences are variant minus baseline. The interval is the two-sided t interval of their mean at
    ``confidence``; ``p_t`` is the two-sided paired t-test (same as ``scipy.stats.ttest_rel``).
    Zero variance (all differences identical, = d): the interval is the point [d, d], ``t_stat`` is
    +/-inf and ``p_t`` = 0 if d != 0, else ``t_stat`` = 0 and ``p_t`` = 1.
    Use :func:`pair_by_seed` to get the two arrays from per-seed results.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1), got {}".format(confidence))
    base, var = _finite_vector(baseline, "baseline"), _finite_vector(variant, "variant")
    if base.shape != var.shape:
        raise ValueError("baseline has {} values but variant has {}: pair them by seed first (pair_by_seed)".format(
            base.size, var.size))
    n = int(base.size)
    if n < 2:
        raise ValueError("a paired comparison needs at least 2 seeds (the Table 1 standard is >= 5), got {}".format(n))
    d = var - base
    mean = float(d.mean())
    if np.all(d == d[0]):  # zero variance: t = mean / 0
        ci_low = ci_high = mean
        t_stat, p_t = (math.copysign(math.inf, mean), 0.0) if mean != 0 else (0.0, 1.0)
    else:
        se = float(d.std(ddof=1)) / math.sqrt(n)
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
        ci_low, ci_high = mean - half, mean + half
        t_stat = mean / se
        p_t = float(min(1.0, 2.0 * stats.t.sf(abs(t_stat), n - 1)))
    return PairedComparison(n=n, mean_baseline=float(base.mean()), mean_variant=float(var.mean()), mean_diff=mean,
                            ci_low=ci_low, ci_high=ci_high, t_stat=t_stat, p_t=p_t, p_wilcoxon=wilcoxon_exact(d),
                            p_adjusted=math.nan, confidence=float(confidence), higher_is_better=bool(higher_is_better))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Step-down: the k-th smallest of the m p-values (k = 0, 1, ...) is multiplied by m - k, then a
    running maximum keeps the adjusted values monotone, and they are capped at 1. nan entries are
    passed through as nan and not counted in m.
    """
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    finite = np.flatnonzero(~np.isnan(p))
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("p-values must be in [0, 1] (or nan), got {}".format(list(p_values)))
    m = finite.size
    order = finite[np.argsort(p[finite], kind="stable")]
    adjusted = np.full(p.shape, math.nan)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * float(p[i])))
        adjusted[i] = running
    return [float(x) for x in adjusted]


def adjust(comparisons: Sequence[PairedComparison]) -> list[PairedComparison]:
    """The same comparisons with ``p_adjusted`` set by :func:`holm` over their ``p_t``.

    Pass the whole family at once: all comparisons of one metric in one table.
    """
    adjusted = holm([c.p_t for c in comparisons])
    return [dataclasses.replace(c, p_adjusted=p) for c, p in zip(comparisons, adjusted)]
