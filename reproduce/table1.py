"""Driver of the paper's Table 1 (JSD-, RKL-, W-GAN without / with variational annealing) on CIFAR-10.

    bash reproduce/table1.sh --gpus 0 --jobs-per-gpu 4    # the paper's 150k iterations, batch 64, 3 seeds
    bash reproduce/table1.sh --quick                      # CPU smoke version on MNIST-5k (scores NOT comparable)

Runs live in ``<runs-dir>/<dataset>/<objective>-<variant>-<schedule>-l<lambda0>/seed<k>``; finished runs
are not re-run, unfinished ones resume. Writes ``<results>/table1[_quick].md`` and ``.csv`` (IS and FID,
mean ± std over seeds, next to ``reproduce/reference_numbers.csv``). More commands: README.md.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, NoReturn, Optional, Sequence

import chainer_va  # noqa: F401  (compat layer before chainer)
from va_core import cli_checks, errors, runinfo, schedules
from chainer_va.metrics import scores
from chainer_va.metrics.evaluation import FID_SAMPLES, IS_SAMPLES

try:
    import grid  # reproduce/grid.py: this script's folder is on sys.path when it runs as a script
except ImportError:  # python -m reproduce.table1
    from reproduce import grid

REFERENCE_CSV = Path(__file__).resolve().parent / "reference_numbers.csv"
#: --quick: the README's first command, 15 minutes on a 2-core CPU (docs/table1_quick.md): the study's
#: settings (reproduce/study.py) at half its iterations, scored in chunks of 500 samples as the 500 held-out
#: real digits are. ``--only wgan`` adds WGAN-GP at 100 iterations (about 12 DFM iterations of CPU time).
QUICK = dict(dataset="mnist5k", channels=1, width=0.125, iterations={"jsd": 1000, "rkl": 1000, "wgan": 100},
             objectives=("jsd", "rkl"), batchsize=64, seeds=1, variants=("none", "lik"), n_is=5000, n_fid=5000,
             scorer="classifier", lr=4e-4, jobs=2, chunk=500)
#: How the tables name each data set (FID's reference statistics are the run's own training set).
DATASET_NAMES = {"cifar10": "CIFAR-10", "celeba": "CelebA", "mnist": "MNIST", "mnist5k": "MNIST-5k",
                 "fashion-mnist": "Fashion-MNIST"}
#: The paper's run settings (supplement J.1): only runs made with them are compared with its numbers.
PAPER = dict(iterations=150000, batchsize=64, width=1.0)
#: Knots of the LGAN triangle schedule over a run (their script: S = 10k over T = 150k).
LGAN_KNOTS = 15
#: chainer-gan-lib's own runs that correspond to a baseline cell of the table.
CHAINER_GAN_LIB_EQUIVALENT = {"jsd/none": "chainer-gan-lib/dfm", "wgan/none": "chainer-gan-lib/wgan-gp"}


def build_parser() -> argparse.ArgumentParser:
    p = cli_checks.OneLineParser(
        prog="reproduce/table1.sh", description="Reproduce Table 1 (IS/FID of annealed GANs).",
        epilog="bash reproduce/table1.sh runs this with .venv/bin/python (else python); "
               "PYTHON=/path/to/python bash reproduce/table1.sh picks another interpreter.")
    p.add_argument("--quick", action="store_true", help="CPU version on MNIST-5k (classifier scores), ~15 min")
    p.add_argument("--study", action="store_true",
                   help="the CPU study: jsd/rkl/wgan x (none, lik, lik calibrated at lambda0 0.1 and 1) x 5 paired seeds "
                        "on MNIST-5k, paired intervals and tests (reproduce/study.py; about 5 h on 2 cores, resumable)")
    p.add_argument("--dataset", default=None, help="cifar10 (default), celeba, or any chainer_va.data name")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--only", default=None, help="comma-separated objectives: jsd,rkl,wgan")
    p.add_argument("--variants", default=None, help="comma-separated: none,lik,ent,lgan (default all; quick: none,lik)")
    p.add_argument("--seeds", default=None, help="number of seeds N (seeds 0..N-1) or a list like 0,3 (default 3)")
    p.add_argument("--iterations", type=int, default=None, help="generator iterations (paper: 150000)")
    p.add_argument("--batchsize", type=int, default=None, help="batch size (paper: 64)")
    p.add_argument("--width", type=float, default=None, help="network width multiplier (1.0 = paper)")
    p.add_argument("--schedules", default="linear",
                   help="schedules of the lik/ent variants, comma-separated (linear,exponential,sinusoidal,stepwise)")
    p.add_argument("--lambda0", type=float, default=grid.DEFAULT_LAMBDA0, help="lambda0 of VA runs (1.0)")
    p.add_argument("--lambda0-search", action="store_true",
                   help="run lambda0 in {0.1, 1, 10} and report the best (highest mean IS), as the paper did")
    p.add_argument("--gpus", default=None, help="comma-separated GPU ids for the local pool (default: CPU)")
    p.add_argument("--jobs-per-gpu", type=int, default=None,
                   help="concurrent runs per GPU, or on the CPU without --gpus (default 1; quick: 2)")
    p.add_argument("--submitit", choices=("slurm", "local"), default=None, help="submit runs through submitit")
    p.add_argument("--slurm-partition", default=None)
    p.add_argument("--n-is", type=int, default=None, help="IS samples (50000)")
    p.add_argument("--n-fid", type=int, default=None, help="FID samples (10000)")
    p.add_argument("--runs-dir", default="results/runs", help="where runs are written (results/runs)")
    p.add_argument("--results", default="results", help="where table1.md/.csv are written (results)")
    p.add_argument("--reference", default=str(REFERENCE_CSV), help="reference numbers CSV")
    p.add_argument("--table-only", action="store_true", help="only rebuild the table from finished runs")
    p.add_argument("--extra-train-args", default="", help="extra flags passed to chainer_va.train")
    return p


def fail(message: str) -> NoReturn:
    """Stop with a one-line error (exit status 2, as every command for a bad setting: :mod:`va_core.errors`)."""
    errors.exit_with(errors.UsageError(message), prog="table1")


def parse_seeds(text: Optional[str], default: int) -> List[int]:
    """"3" -> [0, 1, 2]; "0,4" -> [0, 4]."""
    if text is None:
        return list(range(default))
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        seeds = []
    if not seeds:
        fail("--seeds {!r}: give a number of seeds N >= 1 (seeds 0..N-1) or a list like 0,3".format(text))
    return seeds


def names(text: Optional[str], flag: str, what: str, known: Sequence[str], default: Sequence[str]) -> List[str]:
    """The comma-separated names of ``flag`` (``default`` when not given), each checked against ``known``."""
    if text is None:
        return list(default)
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        fail("{} {}: {}; choose from {}".format(flag, text, "unknown {} {}".format(what, ", ".join(unknown))
                                                if unknown else "no " + what + " given", ",".join(known)))
    return chosen


def check_numbers(args) -> None:
    """Refuse a number flag that is given but out of range (0 is a value, not "the default")."""
    for flag, value, least, why in (("--iterations", args.iterations, 1, ""), ("--batchsize", args.batchsize, 1, ""),
                                    ("--n-is", args.n_is, scores.IS_SPLITS, " (the IS splits)"),
                                    ("--n-fid", args.n_fid, 2, " (FID needs a covariance)"),
                                    ("--jobs-per-gpu", args.jobs_per_gpu, 1, "")):
        if value is not None and value < least:
            fail("{} must be an integer >= {}{}, got {}; leave it out for the default".format(flag, least, why, value))
    if args.width is not None and not (math.isfinite(args.width) and args.width > 0):
        fail("--width must be a positive number, got {!r}; leave it out for the default".format(args.width))


def _given(value, default):
    """``value`` unless the flag was not given (None); 0 is a value, checked by :func:`check_numbers`."""
    return default if value is None else value


def make_specs(args) -> tuple:
    """The grid's runs and the table's settings; a bad flag stops with a one-line error (:func:`fail`)."""
    quick = args.quick
    check_numbers(args)
    dataset = args.dataset or (QUICK["dataset"] if quick else "cifar10")
    seeds = parse_seeds(args.seeds, QUICK["seeds"] if quick else 3)
    iterations = _given(args.iterations, QUICK["iterations"] if quick else 150000)
    if not isinstance(iterations, dict):
        iterations = {o: iterations for o in grid.OBJECTIVES}
    batchsize = _given(args.batchsize, QUICK["batchsize"] if quick else 64)
    width = _given(args.width, QUICK["width"] if quick else 1.0)
    objectives = names(args.only, "--only", "objective", grid.OBJECTIVES,
                       QUICK["objectives"] if quick else grid.OBJECTIVES)
    variants = names(args.variants, "--variants", "variant", tuple(grid.ALL_VARIANTS),
                     QUICK["variants"] if quick else tuple(grid.VARIANTS))
    lambda0s = grid.LAMBDA0_GRID if args.lambda0_search else (args.lambda0,)
    common = ["--dataset", dataset, "--batchsize", str(batchsize), "--width", repr(width)]
    if quick:
        common += ["--channels", str(QUICK["channels"]), "--lr", repr(QUICK["lr"])]
    if args.data_dir:
        common += ["--data-dir", args.data_dir]
    common += args.extra_train_args.split()
    scorer = QUICK["scorer"] if quick else "inception"
    eval_kwargs = {"scorer": scorer, "progress": False,
                   "n_is": _given(args.n_is, QUICK["n_is"] if quick else IS_SAMPLES),
                   "n_fid": _given(args.n_fid, QUICK["n_fid"] if quick else FID_SAMPLES)}
    if quick:  # scored in chunks of the 500 held-out real digits' size, as the real-data row is
        eval_kwargs["splits"] = max(1, eval_kwargs["n_is"] // QUICK["chunk"])
        if eval_kwargs["n_fid"] % QUICK["chunk"] == 0:
            eval_kwargs["fid_chunk"] = QUICK["chunk"]
    if dataset == "celeba":
        eval_kwargs["reference"] = "celeba"
        eval_kwargs["data_dir"] = args.data_dir
    specs = []
    for objective in objectives:
        per_objective = ["--iterations", str(iterations[objective])] + (
            interval_args(iterations[objective]) if quick else [])
        specs += grid.build_grid(str(Path(args.runs_dir) / dataset), [objective], variants, seeds,
                                 args.schedules.split(","), lambda0s, per_objective + common, eval_kwargs)
    for spec in specs:  # the LGAN triangle keeps its 15 knots (S = 10k of T = 150k) on shorter runs
        if spec.schedule == "lgan" and "--knot-interval" not in spec.train_args:
            knot = max(1, iterations[spec.objective] // LGAN_KNOTS)
            if knot != schedules.DEFAULT_KNOT_INTERVAL:
                spec.train_args += ["--knot-interval", str(knot)]
    specs, skipped = untempered_runs_left_out(specs, search=args.lambda0_search)
    if not specs:
        fail("the grid has no run left: every run was left out (above); choose other --only/--variants/"
             "--schedules/--lambda0")
    used = {o: iterations[o] for o in objectives}
    # the paper's numbers are compared only with runs made at the paper's settings
    comparable = (not quick and dataset == "cifar10" and set(used.values()) == {PAPER["iterations"]}
                  and batchsize == PAPER["batchsize"] and width == PAPER["width"] and not args.extra_train_args.split()
                  and scorer == "inception" and eval_kwargs["n_is"] == IS_SAMPLES
                  and eval_kwargs["n_fid"] == FID_SAMPLES)
    return specs, dict(dataset=dataset, seeds=seeds, iterations=used, batchsize=batchsize, width=width,
                       comparable=comparable,
                       scorer=scorer, quick=quick, lr=QUICK["lr"] if quick else None, skipped=skipped,
                       **{k: v for k, v in eval_kwargs.items() if k.startswith("n_")})


def untempered_runs_left_out(specs: Sequence["grid.RunSpec"], search: bool = True) -> tuple:
    """Check every run's settings before any run starts; leave out the search points that cannot run.

    An oscillating schedule swings lambda_t to about -lambda0, so the search's lambda0 = 10 has no tempered
    target with the likelihood or entropy form (Corollary 2.2): those runs are left out and named. Without
    the search (``search=False``) that lambda0 came from ``--lambda0`` and stops the grid with train's message.
    """
    from chainer_va import train

    verdicts: Dict[tuple, Optional[str]] = {}  # the seeds of a point differ only in --seed and --out
    kept, skipped = [], []
    for spec in specs:
        point = (spec.cell, spec.lambda0)
        if point not in verdicts:
            try:
                train.resolve_config(list(spec.train_args))
                verdicts[point] = None
            except train.UntemperedScheduleError as e:
                if not search:
                    fail("--lambda0 {:g}: {}".format(spec.lambda0, e))
                verdicts[point] = str(e)
            except train.ConfigError as e:
                fail("the runs' settings are invalid: {}".format(e))
        if verdicts[point] is None:
            kept.append(spec)
        else:
            skipped.append({"cell": spec.cell, "lambda0": spec.lambda0, "seed": spec.seed, "why": verdicts[point]})
    for point in {(s["cell"], s["lambda0"]): s for s in skipped}.values():
        print("left out {} lambda0={:g} (every seed): {}".format(point["cell"], point["lambda0"], point["why"]),
              file=sys.stderr)
    return kept, skipped


def interval_args(iterations: int) -> List[str]:
    """Snapshot/log/plot/sample intervals for a short (quick) run of ``iterations`` iterations."""
    return ["--snapshot-interval", str(max(iterations // 2, 1)), "--sample-interval", str(iterations),
            "--log-interval", str(max(iterations // 4, 1)), "--plot-interval", str(iterations),
            "--progress-interval", str(max(iterations // 4, 1))]


def describe_iterations(iterations) -> str:
    """{"jsd": 400, "rkl": 400, "wgan": 120} -> "400 (wgan: 120)"; one value -> "400"."""
    if not isinstance(iterations, dict):
        return str(iterations)
    values = sorted(set(iterations.values()), key=list(iterations.values()).count, reverse=True)
    others = ", ".join("{}: {}".format(o, n) for o, n in iterations.items() if n != values[0])
    return "{} ({})".format(values[0], others) if others else str(values[0])


def read_references(path) -> Dict[tuple, dict]:
    """``{(key, metric): row}`` from reference_numbers.csv; ``value`` is a float or None for "n/a"."""
    refs = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            text = row["value"].strip()
            row["value"] = None if text.lower() in ("", "n/a", "na") else float(text)
            refs[(row["key"], row["metric"])] = row
    return refs


def _mean_std(values: Sequence[float]) -> tuple:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, std


#: evaluation settings a run's metrics.json must share with the table's (``evaluate_run`` records them)
SCORING_KEYS = ("scorer", "n_is", "n_fid", "splits", "reference", "fid_chunk")


def scoring_mismatch(spec: "grid.RunSpec", metrics: dict) -> Optional[str]:
    """Why ``metrics`` (a run's metrics.json) was scored with other settings than the table asks for, or None
    (a key the table does not set, or an older file does not record, is not compared)."""
    differ = ["{} {} there, {} now".format(k, metrics[k], spec.eval_kwargs[k]) for k in SCORING_KEYS
              if k in spec.eval_kwargs and k in metrics and metrics[k] != spec.eval_kwargs[k]]
    if not differ:
        return None
    return "{} was scored with other settings ({}); evaluate it again (python -m chainer_va.evaluate {} with " \
           "those settings, or re-run this script without --table-only)".format(
               spec.run_dir, ", ".join(differ), spec.run_dir)


def aggregate(specs: Sequence["grid.RunSpec"], dataset: str, comparable: bool) -> List[dict]:
    """One row per table cell: mean ± std (sample std, n-1) of IS and FID over the seeds that finished; with
    several lambda0 per cell, the one with the highest mean IS (the paper's search)."""
    per_setting: Dict[tuple, List[dict]] = defaultdict(list)
    for spec in specs:
        metrics_path = Path(spec.run_dir) / "metrics.json"
        if metrics_path.is_file():
            mismatch = grid.settings_mismatch(spec)
            if mismatch:  # a run made with other settings is not this cell's run
                print("not in the table: " + mismatch, file=sys.stderr)
                continue
            metrics = json.loads(metrics_path.read_text())
            scored = scoring_mismatch(spec, metrics)
            if scored:
                print("not in the table: " + scored, file=sys.stderr)
                continue
            per_setting[(spec.cell, spec.lambda0)].append(metrics)
    cells: Dict[str, dict] = {}
    for spec in specs:
        if spec.cell not in cells:
            planned = len({s.seed for s in specs if s.cell == spec.cell})
            cells[spec.cell] = {"cell": spec.cell, "objective": spec.objective, "variant": spec.variant,
                                "schedule": spec.schedule, "seeds_planned": planned, "dataset": dataset,
                                "comparable_with_paper": comparable}
    for (cell_key, lam), runs in per_setting.items():
        is_mean, is_std = _mean_std([r["IS"] for r in runs])
        fid_mean, fid_std = _mean_std([r["FID"] for r in runs])
        cell = cells[cell_key]
        if "IS" not in cell or is_mean > cell["IS"]:
            cell.update(IS=is_mean, IS_std=is_std, FID=fid_mean, FID_std=fid_std, lambda0=lam, seeds_done=len(runs))
    return list(cells.values())


def _fmt(mean, std, digits=2) -> str:
    if mean is None:
        return "—"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return "{:.{d}f}".format(mean, d=digits)
    return "{:.{d}f} ± {:.{d}f}".format(mean, std, d=digits)


def attach_references(rows: List[dict], refs: Dict[tuple, dict]) -> None:
    """Add the paper's numbers (n/a until transcribed) and the differences to each row."""
    for row in rows:
        short = "{}/{}".format(row["objective"], row["variant"])
        key = "table1/{}/{}".format(row["dataset"], row["cell"])
        for metric in ("IS", "FID"):
            ref = refs.get((key, metric))
            value = ref["value"] if ref else None
            row["paper_" + metric] = value
            usable = value is not None and row.get(metric) is not None and row["comparable_with_paper"]
            row["diff_" + metric] = (row[metric] - value) if usable else None
            lib = CHAINER_GAN_LIB_EQUIVALENT.get(short) if row["dataset"] == "cifar10" else None
            lib_ref = refs.get((lib, metric)) if lib else None
            row["chainer_gan_lib_" + metric] = lib_ref["value"] if lib_ref else None


def start_scorer_training() -> None:
    """Load or train the quick scorer in a background thread now, so that it trains while the first runs do
    instead of after them (the runs' evaluations wait for it: :func:`classifier.load_or_train` locks)."""
    import threading

    from chainer_va.metrics import classifier

    threading.Thread(target=classifier.load_or_train, kwargs={"progress": False}, daemon=True).start()


def real_data_row(info: dict, data_dir=None) -> Optional[dict]:
    """Held-out real images scored as the generators are: the table's ceiling (None, with a note, when the
    scorer or the data cannot be had, e.g. CIFAR-10 or the Inception weights offline)."""
    try:
        from chainer_va.metrics import real_data

        if info["scorer"] == "classifier":
            return real_data.classifier_real_row(chunk=QUICK["chunk"])
        return real_data.inception_real_row(info["dataset"], data_dir=data_dir, n_is=info["n_is"],
                                            n_fid=info["n_fid"])
    except Exception as e:  # the table is still written; the reason is printed
        print("note: no real-data row: {}".format(str(e).splitlines()[0]), file=sys.stderr)
        return None


def write_table(rows: List[dict], info: dict, results_dir, name: str, real: Optional[dict] = None) -> tuple:
    """Write ``<results_dir>/<name>.md`` and ``.csv`` atomically (the real-data row first); return their paths."""
    results_dir = Path(results_dir)
    fields = ["cell", "objective", "variant", "schedule", "lambda0", "seeds_done", "seeds_planned", "IS", "IS_std",
              "FID", "FID_std", "paper_IS", "diff_IS", "paper_FID", "diff_FID", "chainer_gan_lib_IS",
              "chainer_gan_lib_FID", "dataset", "comparable_with_paper"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    if real is not None:
        writer.writerow({"cell": "real", "variant": "held-out real images", "seeds_done": real["n"], "IS": real["IS"],
                         "IS_std": real.get("IS_std"), "FID": real["FID"], "dataset": info["dataset"]})
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    csv_path = runinfo.atomic_write_text(results_dir / (name + ".csv"), buffer.getvalue())

    lines = ["# Table 1: Inception Score and FID ({})".format(info["dataset"]), ""]
    if not info["quick"]:
        lines.append("Scores: Chainer port of TF inception-2015-12-05; IS over {n_is} samples (10 splits), "
                     "FID over {n_fid} samples vs the {reference} training set.".format(
                         reference=DATASET_NAMES.get(info["dataset"], info["dataset"]), **info))
    else:
        lines.append("**Quick mode: classifier-based IS and FID (small MNIST classifier), NOT comparable with the "
                     "paper or with Inception-based scores.** IS over {n_is} samples, FID over {n_fid}.".format(**info))
    if not info["quick"] and not info.get("comparable", True):
        lines.append("**Not the paper's run settings ({} iterations, batch {}, width {}, no extra flags): its "
                     "numbers are shown but not subtracted.**".format(
                         PAPER["iterations"], PAPER["batchsize"], PAPER["width"]))
    lines += ["Runs: {} generator iterations, batch {batchsize}, width {width}, seeds {seeds}{}; mean ± sample "
              "std over seeds. Paper values are `n/a` until transcribed into reproduce/reference_numbers.csv."
              .format(describe_iterations(info["iterations"]),
                      ", lr {:g}".format(info["lr"]) if info.get("lr") else "", **info)]
    if real is not None:
        lines.append(real_data_note(real))
    lines += ["", "| cell | lambda0 | seeds | IS | FID | paper IS | Δ IS | paper FID | Δ FID | chainer-gan-lib IS / FID |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    if real is not None:
        lines.append("| real images (held-out) | | {} images | {} | {} | | | | | |".format(
            real["n"], _fmt(real["IS"], real.get("IS_std")), _fmt(real["FID"], None)))
    for row in rows:
        lib = "{} / {}".format(row.get("chainer_gan_lib_IS"), row.get("chainer_gan_lib_FID")) \
            if row.get("chainer_gan_lib_IS") is not None else ""
        cells = [row["cell"], "" if row.get("lambda0") is None else "{:g}".format(row["lambda0"]),
                 "{}/{}".format(row.get("seeds_done", 0), row["seeds_planned"]),
                 _fmt(row.get("IS"), row.get("IS_std")), _fmt(row.get("FID"), row.get("FID_std")),
                 "n/a" if row.get("paper_IS") is None else row["paper_IS"],
                 "" if row.get("diff_IS") is None else "{:+.2f}".format(row["diff_IS"]),
                 "n/a" if row.get("paper_FID") is None else row["paper_FID"],
                 "" if row.get("diff_FID") is None else "{:+.2f}".format(row["diff_FID"]), lib]
        lines.append("| {} |".format(" | ".join(str(c) for c in cells)))
    left_out = sorted({(p["cell"], p["lambda0"]) for p in info.get("skipped", ())})
    if left_out:
        lines += ["", "Left out (lambda_t would leave the likelihood/entropy form without a tempered target, "
                  "Corollary 2.2): " + ", ".join("{} lambda0={:g}".format(c, lam) for c, lam in left_out) + "."]
    lines.append("")
    md_path = runinfo.atomic_write_text(results_dir / (name + ".md"), "\n".join(lines))
    return md_path, csv_path


def real_data_note(real: dict) -> str:
    """The table's line on its real-data row and scorer."""
    accuracy = real.get("accuracy")
    return ("Real-data row: {n} held-out real images ({split} split) scored exactly as the samples are{chunks}{acc}."
            .format(n=real["n"], split=real.get("split", "test"),
                    chunks="" if not real.get("chunk") else " (IS and FID per chunk of {} images)".format(real["chunk"]),
                    acc="" if accuracy is None else "; the scorer's held-out accuracy is {:.4f}".format(accuracy)))


def write_sample_figure(specs: Sequence["grid.RunSpec"], path, seed: Optional[int] = None) -> Optional[Path]:
    """One panel per (objective, variant): the final ``samples.png`` of each run (first seed), as supplement Fig. S2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    seed = min(s.seed for s in specs) if seed is None else seed
    chosen = [s for s in specs if s.seed == seed and Path(s.run_dir, "samples.png").is_file()
              and not grid.settings_mismatch(s)]  # a run made with other settings is not this cell's
    if not chosen:
        return None
    objectives = sorted({s.objective for s in chosen}, key=list(grid.OBJECTIVES).index)
    variant_order = list(grid.ALL_VARIANTS)
    cells = sorted({s.cell.split("/", 1)[1] for s in chosen},
                   key=lambda c: (variant_order.index(c.split("/")[0]) if c.split("/")[0] in variant_order else 99, c))
    fig, axes = plt.subplots(len(objectives), len(cells), figsize=(3 * len(cells), 3 * len(objectives)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for s in chosen:
        i, j = objectives.index(s.objective), cells.index(s.cell.split("/", 1)[1])
        axes[i][j].imshow(mpimg.imread(str(Path(s.run_dir, "samples.png"))), cmap="gray")
        axes[i][j].set_title("{} (lambda0={:g})".format(s.cell, s.lambda0), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.study:
        return run_study(args)
    specs, info = make_specs(args)
    start = time.time()
    print("Table 1 grid: {} runs ({} already finished) in {}".format(
        len(specs), sum(grid.run_state(s.run_dir) == "done" for s in specs), args.runs_dir), flush=True)
    failed = []
    if not args.table_only:
        if args.submitit:
            summaries = grid.run_submitit(specs, args.submitit, str(Path(args.runs_dir) / "submitit"),
                                          device="0" if args.submitit == "slurm" else "-1",
                                          slurm_partition=args.slurm_partition)
        else:
            if info["scorer"] == "classifier":  # trained (once) on a third core-share while the first runs train
                start_scorer_training()
            gpus = args.gpus.split(",") if args.gpus else ["-1"]
            jobs = _given(args.jobs_per_gpu, QUICK["jobs"] if info["quick"] and not args.gpus else 1)
            summaries = grid.run_local(specs, gpus, jobs)
        failed = grid.report_failures(summaries)
    rows = aggregate(specs, info["dataset"], comparable=info["comparable"])
    attach_references(rows, read_references(args.reference))
    name = "table1_quick" if info["quick"] else ("table1" if info["dataset"] == "cifar10" else "table1_" + info["dataset"])
    real = real_data_row(info, args.data_dir)
    md_path, csv_path = write_table(rows, info, args.results, name, real)
    figure = write_sample_figure(specs, Path(args.results) / (name + "_samples.png"))
    if figure is not None:
        print("sample grids without / with VA:", figure)
    runinfo.atomic_write_json(Path(args.results) / (name + "_config.json"),
                              dict(info, argv=sys.argv, seconds=time.time() - start))
    print(Path(md_path).read_text())
    print("wrote {} and {} ({:.0f} s)".format(md_path, csv_path, time.time() - start))
    if failed:
        print("{} of {} runs failed (listed above); the table holds the others. Fix the cause and run the same "
              "command again: finished runs are skipped, unfinished ones resume.".format(len(failed), len(specs)),
              file=sys.stderr)
        return 1
    return 0


def run_study(args) -> int:
    """``--study``: the paired CPU study (reproduce/study.py); flags that would change its grid are refused."""
    try:
        import study
    except ImportError:  # python -m reproduce.table1
        from reproduce import study

    clash = [flag for flag, value in (("--quick", args.quick), ("--variants", args.variants),
                                      ("--lambda0-search", args.lambda0_search), ("--submitit", args.submitit),
                                      ("--dataset", args.dataset), ("--n-is", args.n_is), ("--n-fid", args.n_fid))
             if value]
    if clash or args.schedules != "linear" or args.lambda0 != grid.DEFAULT_LAMBDA0:
        fail("--study runs a fixed grid (reproduce/study.py STUDY_CELLS); drop {}".format(
            ", ".join(clash + (["--schedules"] if args.schedules != "linear" else [])
                      + (["--lambda0"] if args.lambda0 != grid.DEFAULT_LAMBDA0 else []))))
    check_numbers(args)
    seeds = parse_seeds(args.seeds, study.STUDY["seeds"])
    objectives = names(args.only, "--only", "objective", grid.OBJECTIVES, grid.OBJECTIVES)
    if len(set(seeds)) != len(seeds):
        fail("--seeds {} repeats a seed: every cell runs each seed once (give distinct seeds, e.g. --seeds 5)"
             .format(",".join(map(str, seeds))))
    if len(seeds) < 2:
        fail("--study needs at least 2 seeds per cell for a paired comparison (the study's default is {}); give "
             "--seeds {}".format(study.MIN_SEEDS, study.MIN_SEEDS))
    if len(seeds) < study.MIN_SEEDS:
        print("warning: {} seeds per cell: below the evidence standard's {} (the table is a trial)".format(
            len(seeds), study.MIN_SEEDS), file=sys.stderr)
    return study.main(args, seeds, objectives, validate=lambda specs: untempered_runs_left_out(specs, search=False),
                      start_scorer_training=start_scorer_training)


if __name__ == "__main__":
    raise SystemExit(main())
