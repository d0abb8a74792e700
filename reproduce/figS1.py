"""Supplement Fig. S1 / J.2: U-GAN samplers of unnormalised toy densities (banana, kidney), with and
without (negative) variational annealing, plus the direct MAF baseline; sample quality vs exact samples.

    python reproduce/figS1.py --out results/figS1            # CPU minutes (reduced flows, see --help)
    python reproduce/figS1.py --out results/figS1 --resume   # continue killed runs, reuse finished ones
    python reproduce/figS1.py --out results/figS1 --publish-docs   # default settings only: also copy the
                                                                   # figures and table into docs/images/

Writes, all under ``--out``: ``figS1.png`` (banana samples over training under negative annealing:
lambda_t rising from lambda0 < 0 to 0, i.e. beta_t = 1 + lambda_t from beta < 1 (flatter) to 1),
``figS1_final.png`` (final samples of every run beside exact samples), ``table.md`` / ``quality.json``
(energy distance and MMD^2 to exact samples; mean log u and its gap to exact samples' with a standard
error), ``config.json`` and one run folder per sampler
(config.json, log.jsonl, checkpoints, snapshots). Nothing is written outside ``--out`` unless
``--publish-docs`` is given.

A folder that holds a figS1 run is refused without ``--resume``. With ``--resume`` the settings are
checked against the folder's ``config.json`` and every run folder's record before anything is written
(only ``--out``, ``--threads``, ``--targets``, ``--no-direct`` and ``--publish-docs`` may change); a
finished run (its ``quality.json`` exists) is reused, an unfinished one continues from its newest
checkpoint. ``config.json`` keeps the first invocation; each resume adds ``config_resume_<k>.json``.
User errors print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

if __name__ == "__main__" and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # run as a file: import this checkout's packages
import tfp_flows  # noqa: F401,E402  (project package first: TF_USE_LEGACY_KERAS before TensorFlow loads)
from va_core import cli_checks, errors, runinfo, sample_distance, schedules, tempering  # noqa: E402
from va_core.errors import RunError, UsageError  # noqa: E402
from va_core.seeding import seed_everything  # noqa: E402

#: Offsets from --seed of the evaluation's random streams (the training runs use --seed itself): the
#: sampler's evaluation samples, the exact samples every sampler is compared with, and the second exact
#: sample of the noise-floor row. Changing them changes every recorded table.
MODEL_SAMPLES_SEED_OFFSET = 1
EXACT_SAMPLES_SEED_OFFSET = 2
FLOOR_SAMPLES_SEED_OFFSET = 3

#: docs/images of this repository (only ``--publish-docs`` writes there)
DOCS_IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
#: (file in --out, name in docs/images) copied by --publish-docs
PUBLISHED = (("figS1.png", "figS1.png"), ("figS1_final.png", "figS1_final.png"), ("table.md", "figS1_table.md"))
#: settings that a --resume may change (they select runs or set resources, not what a run computes)
RESUME_MAY_CHANGE = ("out", "resume", "threads", "targets", "no_direct", "publish_docs")
#: settings that may differ from the defaults in a --publish-docs run
PUBLISH_MAY_CHANGE = ("out", "resume", "threads", "publish_docs")


class FigS1Error(UsageError):
    """A user error (bad settings, an output folder that cannot be used as asked, a damaged file); the
    message names the problem and the fix."""


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


#: Named presets: a study made of figS1 runs (reproduce/kidney_coverage.py), and its default output folder.
PRESETS = {"kidney-coverage": "results/kidney_coverage"}
#: Flags a preset sets itself (it runs the kidney over seeds 0 .. --seeds - 1 into its own folders).
PRESET_SETS = ("seed", "targets", "resume", "publish_docs", "snapshots", "no_direct")


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--help`` lists every option)."""
    p = cli_checks.OneLineParser(
        prog="reproduce/figS1.sh", description=" ".join(__doc__.split("\n\n")[0].split()))  # first paragraph
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="kidney-coverage: the kidney comparison over --seeds seeds, lobe coverage and tests "
                        "(default --out {})".format(PRESETS["kidney-coverage"]))
    p.add_argument("--seeds", type=int, default=None, help="with --preset kidney-coverage: seeds 0..N-1 (default 20)")
    p.add_argument("--out", default=None, help="output folder (default results/figS1, or the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", default="banana,kidney")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lambda0", type=float, default=-0.5,
                   help="negative likelihood annealing: beta_0 = 1 + lambda0 (supplement J.2: 'negative annealing')")
    p.add_argument("--anneal", default="lik", choices=("lik", "ent"))
    p.add_argument("--schedule", default="linear")
    p.add_argument("--knot-interval", type=int, default=None,
                   help="lgan schedule: steps between knots (default {0}, so lgan needs it below {0} steps)".format(
                       schedules.DEFAULT_KNOT_INTERVAL))
    p.add_argument("--flow-blocks", type=int, default=4, help="paper: 8 (reduced for the CPU)")
    p.add_argument("--hidden-units", type=cli_checks.positive_sizes, default=[64, 64],
                   help="paper: 512,512 (reduced for the CPU)")
    p.add_argument("--generator-hidden", type=cli_checks.positive_sizes, default=[64, 64])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-final-fraction", type=float, default=0.1)
    p.add_argument("--no-direct", action="store_true", help="skip the direct KL(nu||mu) MAF baseline")
    p.add_argument("--eval-samples", type=int, default=2000)
    p.add_argument("--snapshots", type=_ints, default=None,
                   help="steps shown in figS1.png (default: 0 and 6 points over the run)")
    p.add_argument("--threads", type=int, default=1, help="TF/BLAS threads (the machine is shared)")
    p.add_argument("--resume", action="store_true",
                   help="continue killed runs and reuse finished ones in --out (same settings required)")
    p.add_argument("--publish-docs", action="store_true",
                   help="also copy figS1.png, figS1_final.png and table.md (as figS1_table.md) into docs/images/; "
                        "only at the default settings (--out, --threads and --resume aside)")
    return p


def parse_args(argv=None):
    """The parsed command line, ``--out`` filled in."""
    args = build_parser().parse_args(argv)
    if args.out is None:
        args.out = PRESETS.get(args.preset, "results/figS1")
    return args


def _plan_runs(args):
    """(target, method, anneal, lambda0) of every run, in order."""
    runs = []
    for name in [t for t in args.targets.split(",") if t]:
        runs.append((name, "ugan", args.anneal, args.lambda0))
        runs.append((name, "ugan", "none", 0.0))
        if not args.no_direct:
            runs.append((name, "direct", "none", 0.0))
    return runs


def _check_publish(args) -> None:
    defaults = vars(parse_args([]))
    diff = runinfo.settings_differences(defaults, vars(args), PUBLISH_MAY_CHANGE)
    if diff:
        raise FigS1Error("--publish-docs copies the figures into docs/images/, which show the documented default "
                         "settings; these differ from the defaults (default -> given): {}; drop --publish-docs "
                         "(the results stay in {})".format(runinfo.format_differences(diff), args.out))


def _check_out_folder(args, out: Path) -> None:
    """Refuse a folder holding a run without --resume, or a --resume with other settings (nothing written)."""
    record = out / runinfo.CONFIG_FILENAME
    if not record.exists():
        return
    if not args.resume:
        raise FigS1Error("{} already holds a figS1 run ({}); pass --resume to continue it with the same settings, "
                         "or choose another --out (nothing was written)".format(out, record))
    try:
        recorded = runinfo.read_run_config(out)["config"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FigS1Error("{} is damaged ({}), so the settings cannot be checked; put the record back, or "
                         "choose another --out".format(record, runinfo.one_line(e))) from None
    for key in ("knot_interval", "preset", "seeds"):  # a record from before these flags existed
        recorded.setdefault(key, None)
    problem = runinfo.resume_problem(recorded, vars(args), RESUME_MAY_CHANGE, out)
    if problem:
        raise FigS1Error(problem)


def exact_samples(target, args, n: int | None = None, offset: int = EXACT_SAMPLES_SEED_OFFSET) -> np.ndarray:
    """``n`` (default ``--eval-samples``) exact samples of ``target`` from the stream ``--seed + offset``."""
    return target.sample(args.eval_samples if n is None else n, np.random.default_rng(args.seed + offset))


def log_u_gap(target, model: np.ndarray, exact: np.ndarray) -> dict:
    """Mean log u of ``model`` minus that of ``exact`` (independent samples) and its standard error.

    A sampler that matches the target has gap 0 up to a few standard errors; a negative gap means its
    samples sit where u is lower (too spread out, or on the wrong part of the target).
    """
    lm, le = target.log_density_np(model), target.log_density_np(exact)
    se = math.sqrt(lm.var(ddof=1) / lm.size + le.var(ddof=1) / le.size)
    return {"log_u_gap": float(lm.mean() - le.mean()), "log_u_gap_se": se}


def _load_finished(run_dir: Path, snaps, annealed: bool):
    """quality, final samples and (annealed runs) snapshots of a finished run; damage is a FigS1Error."""
    done_file = run_dir / "quality.json"
    fix = "delete {} and rerun with --resume: the run's final samples and scores are recomputed from its " \
          "last checkpoint".format(done_file)
    try:
        quality = json.loads(done_file.read_text())
        finals = np.load(run_dir / "final_samples.npy", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise FigS1Error("finished run {} has a damaged or missing file ({}); {}".format(
            run_dir, runinfo.one_line(e), fix)) from None
    snapshots = {}
    if annealed:
        for s in snaps:
            f = run_dir / "snapshots" / "step_{}.npy".format(s)
            if f.exists():  # ugan's check_only has read each one back already
                snapshots[s] = np.load(f, allow_pickle=False)
            else:
                print("note: {} is missing; its panel in figS1.png stays empty".format(f), file=sys.stderr)
    return quality, finals, snapshots


def main(argv=None) -> int:
    """Run (or resume) every sampler, then write the table and figures under ``--out``; 0 on success,
    2 after a one-line error."""
    args = parse_args(argv)
    try:
        if args.preset is not None or args.seeds is not None:
            return _run_preset(args, argv)
        with cli_checks.output_folder(args.out):
            return _main(args)
    except RunError as e:  # also ugan's: settings, run folders (2), damaged files, divergence (1)
        return errors.report(e)


def _run_preset(args, argv) -> int:
    """--preset kidney-coverage: figS1's flags other than the preset's own go to every seed's run."""
    from reproduce import kidney_coverage

    parser = build_parser()
    given = cli_checks.given_options(parser, sys.argv[1:] if argv is None else argv)
    if args.preset is None:
        raise FigS1Error("--seeds needs --preset kidney-coverage (a single figS1 run takes --seed)")
    clash = sorted(given & set(PRESET_SETS))
    if clash:
        raise FigS1Error("--{} cannot be combined with --preset {}: the preset runs the kidney with all three samplers "
                         "over seeds 0..N-1 (--seeds N) into its own folders and resumes them itself; drop it".format(
                             clash[0].replace("_", "-"), args.preset))
    seeds = kidney_coverage.SEEDS if args.seeds is None else args.seeds
    if seeds < 2:
        raise FigS1Error("--seeds must be >= 2 (a coverage rate over seeds), got {}".format(seeds))
    flags = []
    for action in parser._actions:
        if action.dest in given and action.dest not in ("preset", "seeds", "out"):
            value = getattr(args, action.dest)
            flags += [action.option_strings[0]] if value is True else [
                action.option_strings[0], ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    with cli_checks.output_folder(args.out):
        return kidney_coverage.run(Path(args.out), seeds, flags)


@dataclasses.dataclass
class _Plan:
    """The runs of one invocation: (target, sampler, annealing, lambda0) each, their targets and shared settings."""

    args: argparse.Namespace
    runs: list
    target_of: dict
    out: Path
    snaps: list

    def run_kwargs(self, name: str, method: str, anneal: str, lam: float) -> dict:
        """The keyword arguments of ugan.train_sampler / train_direct_flow for one run."""
        args = self.args
        kw = dict(steps=args.steps, seed=args.seed, batch_size=args.batch_size, hidden_units=args.hidden_units,
                  flow_blocks=args.flow_blocks, lr=args.lr, lr_final_fraction=args.lr_final_fraction,
                  snapshot_size=args.eval_samples, progress=True, resume=args.resume,
                  out=self.out / "{}_{}_{}".format(name, method, anneal), anneal=anneal,
                  schedule=args.schedule if anneal != "none" else "static", lambda0=lam,
                  schedule_options={"knot_interval": args.knot_interval} if anneal != "none" else None,
                  snapshot_steps=self.snaps if (method == "ugan" and anneal != "none") else (),
                  extra_config={"target": name})
        if method == "ugan":
            kw["generator_hidden"] = args.generator_hidden
        return kw

    def train(self, method: str, name: str, **kw):
        from tfp_flows import ugan

        fn = ugan.train_sampler if method == "ugan" else ugan.train_direct_flow
        return fn(self.target_of[name].log_density, self.target_of[name].dim, **kw)


def _plan(args) -> _Plan:
    """Check the flags, limit the threads, seed everything; the runs to make."""
    import tensorflow as tf
    import threadpoolctl

    from tfp_flows import targets, ugan  # noqa: F401  (ugan: imported before the checks, as it always was)

    if args.steps < 1 or args.eval_samples < 2 or args.threads < 1:
        raise FigS1Error("--steps and --threads must be >= 1 and --eval-samples >= 2, got {}, {} and {}".format(
            args.steps, args.threads, args.eval_samples))
    if args.publish_docs:
        _check_publish(args)
    runs = _plan_runs(args)
    if not runs:
        raise FigS1Error("--targets {!r} names no target; choose from {}".format(args.targets,
                                                                                ", ".join(targets.NAMES)))
    try:
        target_of = {name: targets.get(name) for name, _, _, _ in runs}
    except ValueError as e:
        raise FigS1Error("--targets: {}".format(e)) from None
    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    except RuntimeError:  # TensorFlow already runs in this process (main() called from Python): keep its pools
        print("note: TensorFlow is already initialised in this process; --threads applies to BLAS only",
              file=sys.stderr)
    threadpoolctl.threadpool_limits(args.threads)
    seed_everything(args.seed, tensorflow=True)
    snaps = args.snapshots or sorted({0} | {int(round(f * args.steps)) for f in (0.1, 0.25, 0.4, 0.6, 0.8, 1.0)})
    return _Plan(args, runs, target_of, Path(args.out), snaps)


def _check_runs_and_record(plan: _Plan) -> dict:
    """Every check before anything is written (the folder's record, then each run folder's); then the record.
    Returns the runs a --resume finds finished: {run folder name: (quality, final samples, snapshots)}."""
    args, out = plan.args, plan.out
    _check_out_folder(args, out)
    finished = {}
    for name, method, anneal, lam in plan.runs:
        kw = plan.run_kwargs(name, method, anneal, lam)
        plan.train(method, name, check_only=True, **kw)
        if args.resume and (kw["out"] / "quality.json").exists():
            finished[kw["out"].name] = _load_finished(kw["out"], plan.snaps, method == "ugan" and anneal != "none")
    out.mkdir(parents=True, exist_ok=True)
    if (out / runinfo.CONFIG_FILENAME).exists():  # the first invocation's record stays
        k = 1
        while (out / "config_resume_{}.json".format(k)).exists():
            k += 1
        runinfo.write_run_config(out, vars(args), seed=args.seed, filename="config_resume_{}.json".format(k))
    else:
        runinfo.write_run_config(out, vars(args), seed=args.seed)
    return finished


def _train_and_score(plan: _Plan, name: str, method: str, anneal: str, lam: float):
    """Train one run and score its final samples against exact ones: (quality row, samples, snapshots)."""
    args, target = plan.args, plan.target_of[name]
    kw = plan.run_kwargs(name, method, anneal, lam)
    t = time.time()
    res = plan.train(method, name, **kw)
    if res.history:  # the training time as the log records it (time_s goes on across --resume), then evaluation's
        t = time.time() - res.history[-1]["time_s"]
    model = res.sample(args.eval_samples, seed=args.seed + MODEL_SAMPLES_SEED_OFFSET)
    exact = exact_samples(target, args)
    q = {"target": name, "method": method, "anneal": anneal, "lambda0": lam,
         "schedule": kw["schedule"], "steps": args.steps,
         "energy_distance": sample_distance.energy_distance(model, exact),
         "mmd2": sample_distance.mmd2(model, exact), "n": args.eval_samples,
         "mean_log_u": float(target.log_density_np(model).mean()),
         "exact_mean_log_u": float(target.log_density_np(exact).mean()),
         **log_u_gap(target, model, exact),
         "seconds": round(time.time() - t, 1)}
    runinfo.atomic_write_bytes(kw["out"] / "final_samples.npy", _npy(model))
    runinfo.atomic_write_json(kw["out"] / "quality.json", q)
    print(kw["out"].name, json.dumps({k: q[k] for k in ("energy_distance", "mmd2", "seconds")}), flush=True)
    return q, model, dict(res.snapshots)


def _floor_row(target, name: str, args) -> dict:
    """The noise floor: two independent exact samples of the same size."""
    a = exact_samples(target, args)
    b = exact_samples(target, args, offset=FLOOR_SAMPLES_SEED_OFFSET)
    return {"target": name, "method": "exact vs exact", "anneal": "-", "lambda0": 0.0, "schedule": "-",
            "energy_distance": sample_distance.energy_distance(a, b), "mmd2": sample_distance.mmd2(a, b),
            "mean_log_u": float(target.log_density_np(a).mean()), **log_u_gap(target, a, b), "seconds": 0.0}


def _table(quality: dict) -> str:
    lines = ["| target | sampler | annealing | energy distance | MMD^2 | mean log u | gap to exact (SE) | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for key in sorted(quality):
        q = quality[key]
        ann = "{} {} lambda0={:g}".format(q["anneal"], q["schedule"], q["lambda0"]) if q["anneal"] not in (
            "none", "-") else q["anneal"]
        numbers = "{:.4f} | {:.5f} | {:.3f} | {:+.3f} ({:.3f})".format(
            q["energy_distance"], q["mmd2"], q["mean_log_u"], q["log_u_gap"], q["log_u_gap_se"])
        lines.append("| {} | {} | {} | {} | {} |".format(q["target"], q["method"], ann, numbers, q["seconds"]))
    return "\n".join(lines) + "\n"


def _main(args) -> int:
    from tfp_flows import targets

    plan = _plan(args)
    finished = _check_runs_and_record(plan)
    quality, finals, annealed_snapshots = {}, {}, {}
    t_all = time.time()
    for name, method, anneal, lam in plan.runs:
        key = plan.run_kwargs(name, method, anneal, lam)["out"].name
        if key in finished:
            quality[key], finals[key], snapshots = finished[key]
            if "log_u_gap" not in quality[key]:  # finished before the gap was recorded
                quality[key].update(log_u_gap(plan.target_of[name], finals[key],
                                              exact_samples(plan.target_of[name], args)))
            print("reuse finished", key)
        else:
            quality[key], finals[key], snapshots = _train_and_score(plan, name, method, anneal, lam)
        if method == "ugan" and anneal != "none":
            annealed_snapshots[name] = snapshots
    for name in {r[0] for r in plan.runs}:
        quality["{}_exact_floor".format(name)] = _floor_row(plan.target_of[name], name, args)
    out = plan.out
    runinfo.atomic_write_json(out / "quality.json", quality)
    table = _table(quality)
    runinfo.atomic_write_text(out / "table.md", table)
    print(table)
    _plot_snapshots(annealed_snapshots, plan.snaps, args, out / "figS1.png", targets)
    _plot_finals(finals, args, out / "figS1_final.png", targets)
    if args.publish_docs:
        for path in publish_docs(out):
            print("published", path)
    print("figS1 done in {:.0f} s: {}, {}, {}".format(time.time() - t_all, out / "figS1.png", out / "figS1_final.png",
                                                       out / "table.md"))
    return 0


def publish_docs(out, docs_dir=None) -> list:
    """Copy the figures and table of ``out`` into ``docs_dir`` (default: this repository's docs/images),
    each atomically, under the names the README links; returns the written paths. A missing file (no
    annealed run, so no figS1.png) is a :class:`FigS1Error` before anything is copied."""
    try:
        return runinfo.copy_files(out, DOCS_IMAGES if docs_dir is None else docs_dir, PUBLISHED)
    except FileNotFoundError as e:
        raise FigS1Error("--publish-docs: {}".format(e)) from None


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _save(fig, path):
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    runinfo.atomic_write_bytes(path, buf.getvalue())


def _contour(ax, target):
    (x0, x1), (y0, y1) = target.plot_limits
    g1, g2 = np.meshgrid(np.linspace(x0, x1, 150), np.linspace(y0, y1, 150))
    lu = target.log_density_np(np.stack([g1.ravel(), g2.ravel()], 1)).reshape(g1.shape)
    ax.contour(g1, g2, lu - lu.max(), levels=[-8, -4.5, -2, -0.5], colors="0.6", linewidths=0.7)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def _plot_snapshots(annealed, snaps, args, path, targets):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(annealed)
    if not names:
        return
    fig, axes = plt.subplots(len(names), len(snaps), figsize=(2.3 * len(snaps), 2.4 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        target = targets.get(name)
        for col, s in enumerate(snaps):
            ax = axes[row, col]
            _contour(ax, target)
            x = annealed[name].get(s)
            if x is not None:
                ax.scatter(x[:1000, 0], x[:1000, 1], s=1.5, alpha=0.5, color="C3")
            lam = _lambda_at(args, s)
            ax.set_title("{} t={}\nlambda={:.2f} beta={:.2f}".format(
                name, s, lam, tempering.implied_beta(args.anneal, lam)), fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    _save(fig, path)


def _lambda_at(args, step):
    """The lambda of the last training step before the snapshot at ``step`` (as the run's log records
    it); lambda_0 for the snapshot before training."""
    return cli_checks.make_schedule(args.schedule, args.lambda0, args.steps, {"knot_interval": args.knot_interval})(
        max(min(step, args.steps) - 1, 0))


def _plot_finals(finals, args, path, targets):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k.split("_")[0] for k in finals})
    cols = ["exact"] + sorted({k.split("_", 1)[1] for k in finals}, key=lambda c: (c.startswith("direct"), c))
    fig, axes = plt.subplots(len(names), len(cols), figsize=(2.5 * len(cols), 2.5 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        target = targets.get(name)
        for col, c in enumerate(cols):
            ax = axes[row, col]
            _contour(ax, target)
            x = exact_samples(target, args, 1000) if c == "exact" else finals.get(
                "{}_{}".format(name, c))
            if x is not None:
                ax.scatter(x[:1000, 0], x[:1000, 1], s=1.5, alpha=0.5, color="C0" if c == "exact" else "C3")
            ax.set_title("{}: {}".format(name, c.replace("_", " ")), fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    _save(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
