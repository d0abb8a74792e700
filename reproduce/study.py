"""The CPU study of Table 1: does variational annealing change a GAN? (``bash reproduce/table1.sh --study``)

For each of jsd, rkl and wgan it trains the cells of :data:`STUDY_CELLS` over the same seeds on MNIST-5k,
scores every generator with the quick classifier as the 500 held-out real digits are scored, and compares
every annealed cell with its objective's ``none`` cell seed by seed (:mod:`va_core.paired_stats`). Every
finished run leaves a record under ``<results>/runs/``: the study's ledger, so a run whose record holds the
same settings is never run again. Settings and how they were chosen: docs/table1_study/README.md.
"""
from __future__ import annotations

import csv
import io
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from va_core import errors, paired_stats, runinfo

try:
    import grid  # reproduce/ is on sys.path when table1.py runs as a script
except ImportError:  # python -m reproduce.table1
    from reproduce import grid

#: The study's settings, chosen by measurement on the 2-core development machine (docs/table1_study/README.md).
STUDY = dict(dataset="mnist5k", channels=1, width=0.125, batchsize=64, lr=4e-4,
             iterations={"jsd": 2000, "rkl": 2000, "wgan": 2000},
             arch={"jsd": "dcgan", "rkl": "dcgan", "wgan": "mlp"},  # wgan: why in docs/table1_study/README.md
             seeds=5, scorer="classifier", n_is=5000, n_fid=5000, splits=10, fid_chunk=500, jobs=2)
#: (variant, lambda0) of each objective's cells; ``none`` is the baseline every other cell is paired with.
STUDY_CELLS = (("none", 0.0), ("lik", 1.0), ("lik-cal", 0.1), ("lik-cal", 1.0))
#: How the table names each ``--arch``.
NETWORKS = {"dcgan": "Table S1 networks", "mlp": "the fully connected networks of `--arch mlp` (not the paper's)"}
MIN_SEEDS = 5  # the evidence standard's least number of paired seeds
METRICS = (("IS", True), ("FID", False))  # (metric, higher is better)


def build_specs(runs_dir: str, objectives: Sequence[str], seeds: Sequence[int], preset: dict,
                extra_args: Sequence[str] = ()) -> List["grid.RunSpec"]:
    """Every run of the study: each objective x :data:`STUDY_CELLS` x seed, with the same seeds everywhere."""
    common = ["--dataset", preset["dataset"], "--channels", str(preset["channels"]), "--batchsize",
              str(preset["batchsize"]), "--width", repr(preset["width"]), "--lr", repr(preset["lr"])]
    evaluation = {k: preset[k] for k in ("scorer", "n_is", "n_fid", "splits", "fid_chunk")}
    evaluation["progress"] = False
    specs = []
    for objective in objectives:
        n, arch = preset["iterations"][objective], arch_of(preset, objective)
        intervals = ["--iterations", str(n), "--snapshot-interval", str(max(n // 4, 1)), "--sample-interval", str(n),
                     "--log-interval", str(max(n // 10, 1)), "--progress-interval", str(max(n // 10, 1))]
        flags = intervals + common + (["--arch", arch] if arch != "dcgan" else []) + list(extra_args)
        for variant, lambda0 in STUDY_CELLS:
            specs += grid.build_grid(str(Path(runs_dir) / run_group(preset["dataset"], arch)), [objective], [variant], seeds,
                                     ("linear",), (lambda0,), flags, evaluation)
    return specs


def arch_of(preset: dict, objective: str) -> str:
    """The ``--arch`` of ``objective``'s runs: the preset's ``arch``, one name or one per objective."""
    arch = preset.get("arch", "dcgan")
    return arch if isinstance(arch, str) else arch[objective]


def run_group(dataset: str, arch: str) -> str:
    """The folder under ``--runs-dir`` that holds run folders: the data set, and the architecture when it is
    not the paper's (runs of two architectures never meet in one folder)."""
    return dataset if arch == "dcgan" else "{}-{}".format(dataset, arch)


def networks_text(preset: dict, objectives: Sequence[str]) -> str:
    """The table's words for the networks: one architecture, or which objective ran on which."""
    archs = [arch_of(preset, o) for o in objectives]
    if len(set(archs)) <= 1:
        return NETWORKS[archs[0] if archs else "dcgan"]
    return "; ".join("{} on {}".format(", ".join(o for o in objectives if arch_of(preset, o) == a), NETWORKS[a])
                     for a in dict.fromkeys(archs))


def record_path(results: Path, spec: "grid.RunSpec") -> Path:
    """Where the ledger keeps the record of ``spec``'s run."""
    return results / "runs" / Path(spec.run_dir).parent.name / "seed{}.json".format(spec.seed)


def _settings(spec: "grid.RunSpec") -> dict:
    """What a record must share with a spec to stand for its run (the run folder may differ)."""
    args = list(spec.train_args)
    out = args.index("--out")
    from chainer_va.evaluate import classifier_id

    return {"train_args": args[:out] + args[out + 2:], "eval": dict(spec.eval_kwargs, classifier=classifier_id())}


def read_record(results: Path, spec: "grid.RunSpec") -> Optional[dict]:
    """The ledger's record of ``spec``'s run, or None when there is none (or it holds other settings)."""
    path = record_path(results, spec)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if {k: record.get(k) for k in ("train_args", "eval")} != _settings(spec):
        print("note: {} holds a run with other settings; it is run again".format(path), file=sys.stderr)
        return None
    return record


def grad_ratios(run_dir: Path) -> Tuple[Optional[float], Optional[float]]:
    """The run's logged ||d anneal / d f|| / ||d adversarial / d f||: at its first log line, and the median."""
    log = json.loads((run_dir / "log").read_text()) if (run_dir / "log").is_file() else []
    ratios = [entry["grad_ratio_anneal"] for entry in log if "grad_ratio_anneal" in entry]
    return (ratios[0], statistics.median(ratios)) if ratios else (None, None)


def diverged_at(run_dir: Path) -> Optional[int]:
    """The iteration at which a run stopped on a NaN/inf loss or parameter, or None (result.json says so)."""
    path = run_dir / "result.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    return int(result.get("iterations", 0)) if result.get("diverged") and not result.get("completed") else None


def write_record(results: Path, spec: "grid.RunSpec", summary: dict) -> Optional[Path]:
    """Record a finished run in the ledger (atomically), its seed-0 samples beside it. A run that diverged
    (a NaN/inf loss) is an outcome, recorded with ``diverged_at`` and no scores; other failures are not."""
    run_dir = Path(spec.run_dir)
    diverged = diverged_at(run_dir)
    if "error" in summary and diverged is None:
        return None
    first, median = grad_ratios(run_dir)
    record = dict(_settings(spec), cell=spec.cell, objective=spec.objective, variant=spec.variant,
                  lambda0=spec.lambda0, seed=spec.seed, grad_ratio_first=first)
    if diverged is not None:
        return runinfo.atomic_write_json(record_path(results, spec), dict(record, IS=None, FID=None,
                                                                          diverged_at=diverged))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    result = json.loads((run_dir / "result.json").read_text())
    environment = runinfo.read_run_config(run_dir)["environment"]
    record.update(IS=metrics["IS"], FID=metrics["FID"], grad_ratio_median=median, train_seconds=result.get("seconds"),
                  git_commit=environment.get("git_commit"), git_modified=environment.get("git_modified"))
    path = runinfo.atomic_write_json(record_path(results, spec), record)
    samples = run_dir / "samples.png"
    if spec.seed == 0 and samples.is_file():
        shutil.copyfile(samples, path.with_name("seed0_samples.png"))
    return path


def collect(results: Path, specs: Sequence["grid.RunSpec"]) -> Dict[tuple, Dict[int, dict]]:
    """``{(cell, lambda0): {seed: record}}`` of the planned runs the ledger holds."""
    found: Dict[tuple, Dict[int, dict]] = {}
    for spec in specs:
        record = read_record(results, spec)
        if record is not None:
            found.setdefault((spec.cell, spec.lambda0), {})[spec.seed] = record
    return found


def _mean_sd(values: Sequence[float]) -> Tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def cell_rows(specs: Sequence["grid.RunSpec"], found: Dict[tuple, Dict[int, dict]]) -> List[dict]:
    """One row per (cell, lambda0) in grid order: seeds done, IS and FID mean and sd, the gradient ratio."""
    rows, seen = [], set()
    for spec in specs:
        key = (spec.cell, spec.lambda0)
        if key in seen:
            continue
        seen.add(key)
        planned = sorted({s.seed for s in specs if (s.cell, s.lambda0) == key})
        runs = found.get(key, {})
        row = {"cell": spec.cell, "objective": spec.objective, "variant": spec.variant, "lambda0": spec.lambda0,
               "scale": "calibrated" if spec.variant in grid.CALIBRATED else ("-" if spec.variant == "none" else "faithful"),
               "planned": planned, "runs": runs, "folder": Path(spec.run_dir).parent.name}
        row["diverged"] = sorted(seed for seed, r in runs.items() if r.get("diverged_at") is not None)
        for metric, _ in METRICS:
            scored = [r[metric] for r in runs.values() if r.get(metric) is not None]
            if scored:
                row[metric], row[metric + "_sd"] = _mean_sd(scored)
        ratios = [r["grad_ratio_first"] for r in runs.values() if r.get("grad_ratio_first") is not None]
        row["grad_ratio"] = statistics.median(ratios) if ratios else None
        rows.append(row)
    return rows


def compare(rows: List[dict]) -> None:
    """Add to every annealed row its paired comparison with its objective's ``none`` row, per metric;
    Holm's correction runs over all comparisons of one metric. A cell still missing seeds is "pending"."""
    baselines = {row["objective"]: row for row in rows if row["variant"] == "none"}
    for metric, higher in METRICS:
        done = []
        for row in rows:
            base = baselines.get(row["objective"])
            if row["variant"] == "none" or base is None:
                continue
            complete = (set(row["runs"]) == set(row["planned"]) and set(base["runs"]) == set(base["planned"]))
            if not complete or row["diverged"] or base["diverged"]:
                row[metric + "_cmp"] = None
                continue
            what = "{} (lambda0={:g}) vs {}".format(row["cell"], row["lambda0"], base["cell"])
            _, b, v = paired_stats.pair_by_seed({s: r[metric] for s, r in base["runs"].items()},
                                                {s: r[metric] for s, r in row["runs"].items()}, what=what)
            row[metric + "_cmp"] = paired_stats.paired_difference(b, v, higher_is_better=higher)
            done.append(row)
        for row, adjusted in zip(done, paired_stats.adjust([r[metric + "_cmp"] for r in done])):
            row[metric + "_cmp"] = adjusted


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else "{:.{d}f}".format(value, d=digits)


def _comparison_cells(row: dict, metric: str) -> List[str]:
    """Δ [95% CI], p (t; Holm), p (Wilcoxon) and the verdict of one metric of a row, as table cells."""
    if row["variant"] == "none":
        return ["", "", "", "baseline"]
    c = row.get(metric + "_cmp")
    if c is None and row["diverged"]:
        return ["", "", "", "diverged on {}/{} seeds (NaN loss): not compared".format(
            len(row["diverged"]), len(row["planned"]))]
    if c is None:
        return ["", "", "", "pending ({}/{} seeds)".format(len(row["runs"]), len(row["planned"]))]
    return ["{:+.2f} [{:+.2f}, {:+.2f}]".format(c.mean_diff, c.ci_low, c.ci_high),
            "{:.3f}; {:.3f}".format(c.p_t, c.p_adjusted), "{:.3f}".format(c.p_wilcoxon), c.verdict()]


def markdown(rows: List[dict], real: dict, info: dict) -> str:
    """The study's table: the real-data row, then every cell with its paired comparisons."""
    lines = ["# Table 1 study (CPU): does variational annealing change a GAN?", "",
             "MNIST-5k train split (4500 digits), {networks} at width {width}, batch {batchsize}, lr {lr:g}, "
             "iterations {iterations}; seeds {seeds} in every cell (paired). Scorer: the quick CNN classifier "
             "(held-out accuracy {accuracy:.4f} on the 500-digit test split); IS over 10 chunks of 500 samples, FID "
             "the mean of the chunks' FIDs against the train split's statistics, so that both are scored as the "
             "500 held-out real digits are.".format(accuracy=real["accuracy"], **{"networks": NETWORKS["dcgan"], **info}), "",
             "Δ = cell minus its objective's `none` cell, seed by seed (mean and 95% t interval); p: paired t-test, "
             "then Holm-corrected over the table's {} comparisons of that metric; Wilcoxon signed-rank p as a "
             "check (with 5 seeds it cannot go below 0.0625). Grad ratio: median over seeds of ||∇_f anneal|| / "
             "||∇_f adversarial|| on D's features of the fake batch at the first log line.".format(
                 sum(1 for r in rows if r.get("IS_cmp") is not None)), "",
             "| cell | λ0 | scale | seeds | IS | IS / real | FID | grad ratio | Δ IS [95% CI] | p IS (t; Holm) | "
             "p IS (Wilcoxon) | IS verdict | Δ FID [95% CI] | p FID (t; Holm) | p FID (Wilcoxon) | FID verdict |",
             "|" + "---|" * 16,
             "| real digits (held-out test split) | | | {} images | {} | 1.00 | {} | | | | | | | | | |".format(
                 real["n"], _fmt(real["IS"]), _fmt(real["FID"]))]
    for row in rows:
        ratio = row["IS"] / real["IS"] if row.get("IS") is not None else None
        lines.append("| " + " | ".join(
            [row["cell"], "{:g}".format(row["lambda0"]), row["scale"],
             "{}/{}".format(len(row["runs"]), len(row["planned"])),
             "{} ± {}".format(_fmt(row.get("IS")), _fmt(row.get("IS_sd"))), _fmt(ratio),
             "{} ± {}".format(_fmt(row.get("FID"), 1), _fmt(row.get("FID_sd"), 1)),
             "—" if row["grad_ratio"] is None else "{:.2g}".format(row["grad_ratio"])]
            + _comparison_cells(row, "IS") + _comparison_cells(row, "FID")) + " |")
    lines += ["", provenance(rows)]
    return "\n".join(lines) + "\n"


def provenance(rows: List[dict]) -> str:
    """The command, the commits the runs were made at and their summed training time (from the ledger)."""
    records = [r for row in rows for r in row["runs"].values()]
    commits = sorted({str(r.get("git_commit"))[:7] + (" (modified tree)" if r.get("git_modified") else "")
                      for r in records})
    seconds = sum(r.get("train_seconds") or 0.0 for r in records)
    return ("Command: `bash reproduce/table1.sh --study --results docs/table1_study` (resumable: it runs only what "
            "the ledger `runs/` lacks). Runs made at commit(s) {}; training time summed over the {} recorded runs: "
            "{:.0f} min (two runs at a time on the 2-core machine, often next to other jobs).".format(
                ", ".join(commits) or "—", len(records), seconds / 60.0))


def csv_text(rows: List[dict], real: dict) -> str:
    """The table as CSV: one line per cell (and the real-data row), the comparisons' numbers in columns."""
    fields = ["cell", "objective", "variant", "lambda0", "scale", "seeds_done", "seeds_planned", "IS", "IS_sd", "FID",
              "FID_sd", "grad_ratio"] + ["{}_{}".format(m, k) for m, _ in METRICS for k in
                                         ("diff", "ci_low", "ci_high", "p_t", "p_holm", "p_wilcoxon", "verdict")]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerow({"cell": "real", "seeds_done": real["n"], "IS": real["IS"], "FID": real["FID"]})
    for row in rows:
        out = {k: row.get(k) for k in fields}
        out.update(seeds_done=len(row["runs"]), seeds_planned=len(row["planned"]))
        for metric, _ in METRICS:
            c = row.get(metric + "_cmp")
            if c is not None:
                out.update({metric + "_diff": c.mean_diff, metric + "_ci_low": c.ci_low, metric + "_ci_high": c.ci_high,
                            metric + "_p_t": c.p_t, metric + "_p_holm": c.p_adjusted,
                            metric + "_p_wilcoxon": c.p_wilcoxon, metric + "_verdict": c.verdict()})
        writer.writerow(out)
    return buffer.getvalue()


def write_figure(rows: List[dict], real: dict, results: Path) -> Optional[Path]:
    """``study.png``: IS and FID per cell (mean and 95% t interval over seeds, the real digits as a line)
    above the samples of seed 0 of every cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt
    from scipy import stats

    shown = [r for r in rows if len(r["runs"]) > 0]
    if not shown:
        return None
    objectives = list(dict.fromkeys(r["objective"] for r in rows))
    per_objective = max(sum(1 for r in rows if r["objective"] == o) for o in objectives)
    fig = plt.figure(figsize=(2.6 * per_objective, 3.2 + 2.6 * len(objectives)))
    grid_spec = fig.add_gridspec(1 + len(objectives), per_objective, height_ratios=[1.3] + [1] * len(objectives))
    for k, (metric, _) in enumerate(METRICS):
        ax = fig.add_subplot(grid_spec[0, k * per_objective // 2:(k + 1) * per_objective // 2])
        for i, row in enumerate(shown):
            values = [r[metric] for r in row["runs"].values() if r.get(metric) is not None]
            if not values:
                continue
            half = (stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
                    if len(values) > 1 else 0.0)
            ax.errorbar([i], [statistics.mean(values)], yerr=[half], fmt="o", capsize=3)
        ax.axhline(real[metric], color="k", linestyle="--", linewidth=1, label="real digits")
        ax.set_xticks(range(len(shown)))
        ax.set_xticklabels(["{}\nλ0={:g}".format(r["cell"], r["lambda0"]) for r in shown], rotation=90, fontsize=6)
        ax.set_title("{} (mean, 95% CI over seeds)".format(metric), fontsize=8)
        ax.legend(fontsize=6)
    for i, objective in enumerate(objectives):
        for j, row in enumerate(r for r in rows if r["objective"] == objective):
            ax = fig.add_subplot(grid_spec[1 + i, j])
            ax.axis("off")
            image = results / "runs" / row["folder"] / "seed0_samples.png"
            if image.is_file():
                ax.imshow(mpimg.imread(str(image)), cmap="gray")
            ax.set_title("{} λ0={:g}, seed 0".format(row["cell"], row["lambda0"]), fontsize=7)
    fig.tight_layout()
    path = results / "study.png"
    tmp = path.with_name(".study.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path


def preset_from(args) -> dict:
    """:data:`STUDY` with the flags that may shrink it (--iterations, --width, --batchsize; tests, trials)."""
    preset = dict(STUDY, iterations=dict(STUDY["iterations"]))
    if args.iterations is not None:
        preset["iterations"] = {o: args.iterations for o in preset["iterations"]}
    for key in ("width", "batchsize"):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    return preset


def main(args, seeds: List[int], objectives: List[str], validate, start_scorer_training=lambda: None) -> int:
    """Run (or continue) the study and write its table, CSV and figure under ``<results>/table1_study``."""
    preset = preset_from(args)
    results = Path(args.results) / "table1_study" if not args.results.rstrip("/").endswith("table1_study") \
        else Path(args.results)
    specs = build_specs(args.runs_dir, objectives, seeds, preset, args.extra_train_args.split())
    validate(specs)
    start = time.time()
    todo = [spec for spec in specs if read_record(results, spec) is None]
    print("Table 1 study: {} runs, {} in the ledger {}".format(len(specs), len(specs) - len(todo), results), flush=True)
    failed = []
    if todo and not args.table_only:
        start_scorer_training()
        gpus = args.gpus.split(",") if args.gpus else ["-1"]
        jobs = args.jobs_per_gpu or (preset["jobs"] if not args.gpus else 1)
        summaries = grid.run_local(todo, gpus, jobs, on_done=lambda spec, summary: write_record(results, spec, summary))
        failed = grid.report_failures(summaries)
    from chainer_va.metrics import real_data

    real = real_data.classifier_real_row(chunk=preset["fid_chunk"])
    rows = cell_rows(specs, collect(results, specs))
    try:
        compare(rows)
    except paired_stats.SeedMismatchError as e:
        errors.exit_with(errors.UsageError(str(e)), "table1")
    info = dict(networks=networks_text(preset, objectives), width=preset["width"], batchsize=preset["batchsize"], lr=preset["lr"],
                seeds=",".join(map(str, seeds)),
                iterations=", ".join("{} {}".format(o, preset["iterations"][o]) for o in objectives))
    runinfo.atomic_write_text(results / "table.md", markdown(rows, real, info))
    runinfo.atomic_write_text(results / "table.csv", csv_text(rows, real))
    write_figure(rows, real, results)
    runinfo.atomic_write_json(results / "study_config.json", dict(
        preset, cells=STUDY_CELLS, objectives=objectives, seeds=seeds, argv=sys.argv, seconds_this_process=time.time() - start,
        real=real, environment=runinfo.environment()))
    print((results / "table.md").read_text())
    return 1 if failed else 0
