"""Paired comparison of the Swimmer agents' evaluation curves (issue 20: a comparison that discriminates).

The final return at a few thousand steps measures Swimmer's discount-0.99 plateau (about 40-45), not
the agents. So the ``efficiency`` and ``gamma999`` presets of ``reproduce/rl.py`` compare the curves:

* **AUC**: the area under the evaluation curve divided by its span (trapezoid rule over the
  evaluation steps), i.e. the mean evaluation return over training; higher is better.
* **Steps to 90% of the plateau**: the first evaluation step whose return is at least 0.9 x the
  plateau. The plateau is ONE level for all agents: the mean return of every run (all agents and
  seeds) over the last :data:`PLATEAU_EVALS` evaluations. A run that never reaches it is censored at
  the last evaluation step plus one evaluation interval (reported as ``> last``); lower is better.
* **Final return**: the mean of a run's last :data:`PLATEAU_EVALS` evaluations; higher is better.

Each pair of agents is compared over the same seeds (:mod:`va_core.paired_stats`: 95% t interval of
the mean difference, paired t-test, exact Wilcoxon), with Holm's correction over the agent pairs of
one metric. Framework-free (numpy, scipy).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from va_core import paired_stats

#: The last this many evaluations define a run's final return and (over all runs) the plateau.
PLATEAU_EVALS = 4
#: Share of the plateau that "reached" asks for.
REACH_SHARE = 0.9
#: (variant, baseline) pairs compared: annealing's effect on the MAF agent, and each MAF agent vs SVGD.
PAIRS: Tuple[Tuple[str, str], ...] = (("maf_anneal", "maf_no_anneal"), ("maf_no_anneal", "svgd"),
                                      ("maf_anneal", "svgd"))
#: metric -> (column title, higher is better).
METRICS = {"auc": ("AUC (mean eval return)", True), "steps_to_90": ("steps to 90% of plateau", False),
           "final": ("final return (last {} evals)".format(PLATEAU_EVALS), True)}


@dataclass(frozen=True)
class Curve:
    """One run's evaluation curve: ``steps`` (increasing) and the mean return at each."""

    steps: np.ndarray
    returns: np.ndarray


def auc(curve: Curve) -> float:
    """Area under the evaluation curve over its span (trapezoid rule), i.e. the curve's mean return."""
    s, r = curve.steps.astype(float), curve.returns.astype(float)
    if s.size < 2:
        raise ValueError("an AUC needs at least 2 evaluations, got {}".format(s.size))
    return float(np.sum(0.5 * (r[1:] + r[:-1]) * np.diff(s)) / (s[-1] - s[0]))


def final_return(curve: Curve, last: int = PLATEAU_EVALS) -> float:
    """Mean return of the last ``last`` evaluations."""
    return float(np.mean(curve.returns[-last:]))


def plateau(curves: Sequence[Curve], last: int = PLATEAU_EVALS) -> float:
    """The common plateau: mean over all runs of their final return (last ``last`` evaluations)."""
    return float(np.mean([final_return(c, last) for c in curves]))


def steps_to_reach(curve: Curve, level: float) -> Tuple[float, bool]:
    """(first evaluation step with return >= ``level``, reached?); censored at last step + one interval."""
    hit = np.flatnonzero(curve.returns >= level)
    if hit.size:
        return float(curve.steps[hit[0]]), True
    interval = float(curve.steps[-1] - curve.steps[-2]) if curve.steps.size > 1 else float(curve.steps[-1])
    return float(curve.steps[-1]) + interval, False


def run_metrics(curves: Dict[str, Dict[int, Curve]]) -> Tuple[float, Dict[str, Dict[int, dict]]]:
    """(plateau, agent -> seed -> {auc, steps_to_90, reached, final}) of every run's curve."""
    level = REACH_SHARE * plateau([c for runs in curves.values() for c in runs.values()])
    metrics = {}
    for name, runs in curves.items():
        metrics[name] = {}
        for seed, c in runs.items():
            steps, reached = steps_to_reach(c, level)
            metrics[name][seed] = {"auc": auc(c), "steps_to_90": steps, "reached": reached,
                                   "final": final_return(c)}
    return level / REACH_SHARE, metrics


def comparisons(metrics: Dict[str, Dict[int, dict]]) -> List[dict]:
    """Paired comparisons of :data:`PAIRS` (those with both agents present) per metric, Holm per metric."""
    rows = []
    for metric, (_, higher) in METRICS.items():
        family = []
        for variant, baseline in PAIRS:
            if variant not in metrics or baseline not in metrics:
                continue
            base = {s: m[metric] for s, m in metrics[baseline].items()}
            var = {s: m[metric] for s, m in metrics[variant].items()}
            seeds, b, v = paired_stats.pair_by_seed(base, var, what="{} vs {}".format(variant, baseline))
            family.append((variant, baseline, paired_stats.paired_difference(b, v, higher_is_better=higher)))
        adjusted = paired_stats.adjust([c for _, _, c in family]) if family else []
        rows += [{"metric": metric, "variant": v, "baseline": b, "comparison": c}
                 for (v, b, _), c in zip(family, adjusted)]
    return rows


def _cell(values: Sequence[float], digits: int) -> str:
    v = np.asarray(values, dtype=float)
    spread = "{:.{d}f}".format(np.std(v, ddof=1), d=digits) if v.size > 1 else "n/a"
    return "{:.{d}f} ± {}".format(v.mean(), spread, d=digits)


def markdown(plateau_level: float, metrics: Dict[str, Dict[int, dict]], rows: List[dict],
             labels: Dict[str, str]) -> str:
    """Per-agent metrics (mean ± sample std over seeds) and the paired comparisons, as markdown."""
    out = ["Plateau (mean of every run's last {} evaluations): {:.2f}; 90% of it: {:.2f}.".format(
        PLATEAU_EVALS, plateau_level, REACH_SHARE * plateau_level), "",
        "| agent | seeds | {} | {} (reached / runs) | {} |".format(*(t for t, _ in METRICS.values())),
        "|---|---|---|---|---|"]
    for name, runs in metrics.items():
        col = {k: [runs[s][k] for s in sorted(runs)] for k in METRICS}
        reached = sum(runs[s]["reached"] for s in runs)
        out.append("| {} | {} | {} | {} ({}/{}) | {} |".format(labels.get(name, name), len(runs), _cell(col["auc"], 2),
                                                             _cell(col["steps_to_90"], 0), reached, len(runs),
                                                             _cell(col["final"], 2)))
    out += ["", "Paired differences (variant − baseline, same seeds), 95% t interval, paired t-test with Holm's "
            "correction over the agent pairs of each metric, exact Wilcoxon as a check:", "",
            "| metric | variant − baseline | n | mean difference [95% CI] | p (t) | p (Holm) | p (Wilcoxon) | verdict |",
            "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        c = row["comparison"]
        digits = 0 if row["metric"] == "steps_to_90" else 2
        diff = "{:+.{d}f} [{:+.{d}f}, {:+.{d}f}]".format(c.mean_diff, c.ci_low, c.ci_high, d=digits)
        cells = [METRICS[row["metric"]][0], "{} − {}".format(row["variant"], row["baseline"]), str(c.n), diff]
        cells += ["{:.3f}".format(p) for p in (c.p_t, c.p_adjusted, c.p_wilcoxon)] + [c.verdict()]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def as_json(plateau_level: float, metrics: Dict[str, Dict[int, dict]], rows: List[dict]) -> dict:
    """The same results as plain data for summary.json."""
    return {"plateau": plateau_level, "reach_share": REACH_SHARE, "plateau_evals": PLATEAU_EVALS,
            "per_run": {n: {str(s): m for s, m in runs.items()} for n, runs in metrics.items()},
            "comparisons": [{"metric": r["metric"], "variant": r["variant"], "baseline": r["baseline"],
                             "mean_diff": r["comparison"].mean_diff, "ci": [r["comparison"].ci_low,
                                                                             r["comparison"].ci_high],
                             "p_t": r["comparison"].p_t, "p_holm": r["comparison"].p_adjusted,
                             "p_wilcoxon": r["comparison"].p_wilcoxon, "verdict": r["comparison"].verdict()}
                            for r in rows]}
