"""Kidney lobe coverage over many seeds (issue 20 item 1): ``bash reproduce/figS1.sh --preset kidney-coverage``.

Runs Fig. S1's kidney comparison (U-GAN with negative likelihood annealing, U-GAN without, direct MAF;
``reproduce/figS1.py`` at its defaults, reduced flows) once per seed into ``<out>/seed<k>``, then asks of
every run whether it kept both lobes. Criterion: the share of its samples in the right lobe (x1 > 0)
is within :data:`LOBE_TOLERANCE` of the exact sampler's share (about 1/2) on the same number of
samples; a run that lost a lobe puts almost all its mass in one. Reports each sampler's coverage rate
with a 95% Clopper-Pearson interval, Fisher's exact test between the two U-GANs, and, since the seeds
are paired, the exact McNemar test on the seeds where they disagree. Resumable: finished seeds are kept.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
from scipy import stats

from va_core import runinfo

#: Default number of seeds (issue 20: at least 20 per sampler).
SEEDS = 20
#: Both lobes are kept when the right lobe's share is within this of the exact samples' share.
LOBE_TOLERANCE = 0.1
#: The runs of a kidney seed (run folder names of reproduce/figS1.py) and their labels.
SAMPLERS = {"kidney_ugan_lik": "U-GAN, annealed (lik, linear, lambda0 = -0.5)",
            "kidney_ugan_none": "U-GAN, no annealing", "kidney_direct_none": "direct MAF"}
ANNEALED, PLAIN = "kidney_ugan_lik", "kidney_ugan_none"
#: Short column titles of the per-seed table.
COLUMNS = {"kidney_ugan_lik": "U-GAN annealed", "kidney_ugan_none": "U-GAN plain", "kidney_direct_none": "direct MAF"}


def right_share(x: np.ndarray) -> float:
    """Share of the samples in the right lobe (x1 > 0)."""
    return float(np.mean(np.asarray(x)[:, 0] > 0))


def both_lobes(model: np.ndarray, exact: np.ndarray, tolerance: float = LOBE_TOLERANCE) -> bool:
    """Whether ``model`` keeps both lobes: its right-lobe share within ``tolerance`` of ``exact``'s."""
    return abs(right_share(model) - right_share(exact)) <= tolerance


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple:
    """Exact (Clopper-Pearson) interval of a binomial proportion k / n."""
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def coverage_tests(kept: Dict[str, Dict[int, bool]]) -> dict:
    """Fisher's exact test (two-sided) of the two U-GANs' coverage, and the exact McNemar test on the
    seeds where exactly one of them kept both lobes (a binomial test of the discordant pairs at 1/2)."""
    seeds = sorted(kept[ANNEALED])
    a = [kept[ANNEALED][s] for s in seeds]
    b = [kept[PLAIN][s] for s in seeds]
    table = [[sum(a), len(a) - sum(a)], [sum(b), len(b) - sum(b)]]
    only_annealed = sum(x and not y for x, y in zip(a, b))
    only_plain = sum(y and not x for x, y in zip(a, b))
    discordant = only_annealed + only_plain
    mcnemar = float(stats.binomtest(only_annealed, discordant).pvalue) if discordant else 1.0
    return {"fisher_p": float(stats.fisher_exact(table)[1]), "table": table, "only_annealed_kept": only_annealed,
            "only_plain_kept": only_plain, "mcnemar_exact_p": mcnemar}


def seed_rows(out: Path, seeds: Sequence[int]) -> Dict[str, Dict[int, dict]]:
    """sampler -> seed -> {right_share, exact_right_share, kept, energy_distance, log_u_gap, log_u_gap_se} from
    the finished seeds (the gap: the samples' mean log u minus the exact samples', with its standard error)."""
    from reproduce import figS1
    from tfp_flows import targets

    kidney = targets.get("kidney")
    rows: Dict[str, Dict[int, dict]] = {name: {} for name in SAMPLERS}
    for seed in seeds:
        folder = out / "seed{}".format(seed)
        n = json.loads((folder / "quality.json").read_text())[PLAIN]["n"]
        exact = figS1.exact_samples(kidney, argparse.Namespace(seed=seed, eval_samples=n))  # the seed's table's
        for name in SAMPLERS:
            model = np.load(folder / name / "final_samples.npy", allow_pickle=False)
            quality = json.loads((folder / name / "quality.json").read_text())
            rows[name][seed] = {"samples": n, "right_share": right_share(model), "exact_right_share": right_share(exact),
                                "kept": both_lobes(model, exact), "energy_distance": quality["energy_distance"],
                                "log_u_gap": quality["log_u_gap"], "log_u_gap_se": quality["log_u_gap_se"]}
    return rows


def markdown(rows: Dict[str, Dict[int, dict]], tests: dict) -> str:
    """Coverage per sampler with its interval, the tests, and the per-seed right-lobe shares."""
    seeds = sorted(rows[PLAIN])
    out = ["Both lobes kept: the right lobe's share (x1 > 0) of {} samples within {} of the exact "
           "sampler's.".format(rows[PLAIN][seeds[0]]["samples"], LOBE_TOLERANCE), "",
           "| sampler | seeds | both lobes kept | coverage [95% Clopper-Pearson] |", "|---|---|---|---|"]
    for name, label in SAMPLERS.items():
        k = sum(r["kept"] for r in rows[name].values())
        low, high = clopper_pearson(k, len(seeds))
        out.append("| {} | {} | {} | {:.2f} [{:.2f}, {:.2f}] |".format(label, len(seeds), k, k / len(seeds), low, high))
    out += ["", "U-GAN annealed vs not: Fisher's exact test p = {:.3f}; paired by seed, kept by only the annealed "
            "one on {}, only the plain one on {} (exact McNemar p = {:.3f}).".format(
                tests["fisher_p"], tests["only_annealed_kept"], tests["only_plain_kept"], tests["mcnemar_exact_p"]),
            ""] + log_u_lines(rows) + ["", "Right-lobe share per seed:", "",
            "| seed | exact | " + " | ".join(COLUMNS[n] for n in SAMPLERS) + " |", "|---|---|" + "---|" * len(SAMPLERS)]
    for seed in seeds:
        cells = ["{:.3f}{}".format(rows[n][seed]["right_share"], "" if rows[n][seed]["kept"] else " (lost)")
                 for n in SAMPLERS]
        out.append("| {} | {:.3f} | {} |".format(seed, rows[PLAIN][seed]["exact_right_share"], " | ".join(cells)))
    return "\n".join(out) + "\n"


def log_u_lines(rows: Dict[str, Dict[int, dict]]) -> List[str]:
    """How far below the exact samples' mean log u each sampler's sits: median over seeds [range], in nats and
    in standard errors (a sampler spread too wide, or off the mass, sits below)."""
    out = ["Mean log u minus the exact samples' (per seed; 0 for a perfect sampler, below 0 when too spread):", "",
           "| sampler | median gap [min, max] (nats) | median gap / its standard error |", "|---|---|---|"]
    for name, label in SAMPLERS.items():
        gaps = np.array([r["log_u_gap"] for r in rows[name].values()])
        z = np.array([r["log_u_gap"] / r["log_u_gap_se"] for r in rows[name].values()])
        out.append("| {} | {:+.3f} [{:+.3f}, {:+.3f}] | {:+.1f} |".format(
            label, np.median(gaps), gaps.min(), gaps.max(), np.median(z)))
    return out


def run(out: Path, seeds: int, figs1_flags: List[str]) -> int:
    """Train every seed not finished yet (``reproduce/figS1.py`` in this process), then tabulate."""
    from reproduce import figS1

    started = time.time()
    for seed in range(seeds):
        folder = out / "seed{}".format(seed)  # an existing one is resumed: figS1 checks its settings first
        flags = ["--out", str(folder), "--seed", str(seed), "--targets", "kidney"] + figs1_flags
        status = figS1.main(flags + (["--resume"] if folder.exists() else []))
        if status != 0:
            return status
    rows = seed_rows(out, range(seeds))
    tests = coverage_tests({n: {s: r["kept"] for s, r in runs.items()} for n, runs in rows.items()})
    table = markdown(rows, tests)
    runinfo.atomic_write_text(out / "coverage.md", table)
    runinfo.atomic_write_json(out / "coverage.json", {"tolerance": LOBE_TOLERANCE, "per_seed": {
        n: {str(s): r for s, r in runs.items()} for n, runs in rows.items()}, "tests": tests,
        "wall_seconds_this_invocation": time.time() - started})
    print(table, flush=True)
    return 0
