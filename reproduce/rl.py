"""Learning curves of soft Q-learning on Swimmer-v5: MAF agent with/without annealing vs amortised SVGD (supplement J.3).

Runs ``python -m rl.train`` once per (agent, seed) into ``<out>/<agent>/seed<k>`` (``--out`` defaults to
``runs/rl_<preset>``, one folder per preset), one at a time or ``--jobs N`` side by side. Each run is started
with --resume, so an interrupted sweep continues where it stopped, and finished runs are kept. A run folder
whose recorded settings (its config.json) differ from the ones this sweep asks for is never reused nor
tabulated: the sweep stops before training anything and names the folder and the differences (move it away or
choose another ``--out``). Then the uniform random policy is evaluated on the same fixed-seed evaluation
episodes, and ``<out>/curves.png`` (mean ± sample std over seeds of the evaluation return vs environment
steps), ``<out>/summary.md`` and ``<out>/summary.json`` (final returns, wall times) are written. "std" in the
tables is the sample standard deviation (ddof = 1), as for BLR and Table 1. Where every agent has finished two
or more seeds, both also hold :mod:`reproduce.rl_compare`'s paired comparison of the curves (AUC, steps to 90%
of the plateau, final return; the ``efficiency`` and ``gamma999`` presets).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

if __name__ == "__main__" and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # run as a file: this folder would shadow the rl package
import rl  # noqa: E402,F401  (project package first)
from reproduce import rl_compare  # noqa: E402
from va_core import cli_checks, errors, runinfo  # noqa: E402
from va_core.errors import RunError, RunFailedError, UsageError

AGENTS: Dict[str, List[str]] = {
    "maf_anneal": ["--agent", "maf", "--anneal", "ent", "--schedule", "linear", "--lambda0", "1.0"],
    "maf_no_anneal": ["--agent", "maf", "--anneal", "none"],
    "svgd": ["--agent", "svgd", "--anneal", "none"],  # SVGD does not anneal
}
LABELS = {"maf_anneal": "SQL + MAF proposal, annealed (ent, linear, lambda0=1)",
          "maf_no_anneal": "SQL + MAF proposal, no annealing",
          "svgd": "SQL + amortised SVGD (original)"}
# Sizes. "paper": J.3 / SPEC section 8 (0.5M steps, MAF 2x512; days per run on this 2-core CPU).
# "efficiency" and "gamma999": issue 20's comparison (reproduce/rl_compare.py), 5 paired seeds, the reduced
# MAF; at discount 0.99 the first 5k steps, evaluated every 250 (sample efficiency before the plateau); at
# 0.999 8k steps, evaluated every 500 (the budget when the runs went one at a time on a shared machine; with
# --jobs 2 on an idle one, --steps 20000 fits issue 20's 120 minutes: docs/rl_gamma999/README.md).
PRESETS = {
    "paper": dict(steps=500_000, seeds=3, start_steps=10_000, eval_every=10_000, eval_episodes=5,
                  maf_hidden=512, checkpoint_every=10_000, discount=0.99),
    "local": dict(steps=6000, seeds=3, start_steps=1000, eval_every=1500, eval_episodes=3,
                  maf_hidden=64, checkpoint_every=3000, discount=0.99),
    "quick": dict(steps=2000, seeds=1, start_steps=500, eval_every=500, eval_episodes=2,
                  maf_hidden=64, checkpoint_every=1000, discount=0.99),
    "efficiency": dict(steps=5000, seeds=5, start_steps=500, eval_every=250, eval_episodes=2,
                       maf_hidden=64, checkpoint_every=1000, discount=0.99),
    "gamma999": dict(steps=8000, seeds=5, start_steps=500, eval_every=500, eval_episodes=2,
                     maf_hidden=64, checkpoint_every=1000, discount=0.999),
}
STD_NOTE = "sample std over seeds, ddof=1"
#: rl.train flags that the sweep sets itself (from the preset, or per agent); --start-steps may be overridden.
SWEEP_SET_FLAGS = ("--seed", "--eval-every", "--eval-episodes", "--maf-hidden", "--checkpoint-every", "--discount",
                   "--progress-every", "--agent", "--anneal", "--schedule", "--lambda0")
#: With --steps at or below a preset's start steps, the sweep starts training after this share of --steps.
SHORT_RUN_START_SHARE = 0.25


class SweepError(UsageError):
    """A sweep that cannot start (bad flags, a run folder with other settings): one line, exit status 2."""


class SweepRunFailed(RunFailedError):
    """One of the sweep's runs failed (its own message is above): one line, exit status 1."""


def default_out(preset: str) -> Path:
    """The output folder of a preset when ``--out`` is not given: ``runs/rl_<preset>``."""
    return Path("runs") / "rl_{}".format(preset)


def sample_std(values, axis: int = 0):
    """Sample standard deviation (ddof = 1) along ``axis``; NaN where there are fewer than two values."""
    values = np.asarray(values, dtype=float)
    if values.shape[axis] < 2:
        return np.full(np.delete(values.shape, axis), np.nan) if values.ndim > 1 else float("nan")
    return np.std(values, axis=axis, ddof=1)


def train_flags(name: str, seed: int, p: dict, env: str, extra: Sequence[str]) -> List[str]:
    """The ``python -m rl.train`` flags (without --out/--resume) of agent ``name``, seed ``seed``, sizes ``p``."""
    return (["--env", env, "--seed", str(seed), "--steps", str(p["steps"]), "--start-steps", str(p["start_steps"]),
             "--eval-every", str(p["eval_every"]), "--eval-episodes", str(p["eval_episodes"]),
             "--maf-hidden", str(p["maf_hidden"]), "--checkpoint-every", str(p["checkpoint_every"]),
             "--discount", str(p["discount"]), "--progress-every", str(p["eval_every"])] + AGENTS[name] + list(extra))


def expected_config(flags: Sequence[str]) -> dict:
    """The full rl.train configuration those flags give (raises :class:`SweepError` if rl.train rejects them)."""
    from rl import train as rl_train

    try:
        return rl_train.resolve_config(rl_train.build_parser().parse_args(list(flags) + ["--out", "-"]))
    except rl_train.UsageError as e:
        raise SweepError("the flags for python -m rl.train are invalid: {}".format(e)) from None


def check_env(name: str, expected: dict, checked: set) -> None:
    """Check, before any run starts, that agent ``name`` can run on the environment of ``expected`` (its
    rl.train configuration); ``checked`` holds the (agent, env, horizon) pairs already checked."""
    from rl import train as rl_train

    key = (expected["agent"], expected["env"], expected["max_episode_steps"])
    if key in checked:
        return
    try:
        rl_train.check_env(expected)
    except rl_train.UsageError as e:
        raise SweepError("agent {} cannot run on {}: {}; choose other --agents or another --env (nothing was "
                         "trained)".format(name, expected["env"], e)) from None
    checked.add(key)


def run_state(run_dir: Path, expected: dict) -> Optional[int]:
    """Step of ``run_dir``'s newest checkpoint (None: no run there yet), after checking that the run was
    made with the ``expected`` configuration; raises :class:`SweepError` naming the differences if not."""
    from rl import train as rl_train

    has_config = (run_dir / runinfo.CONFIG_FILENAME).exists()
    if not has_config and not rl_train.has_checkpoint(run_dir):
        return None
    try:
        recorded = rl_train.read_recorded_config(run_dir)
    except rl_train.UsageError as e:
        raise SweepError("{}; this sweep cannot reuse {}: move it away or choose another --out".format(
            e, run_dir)) from None
    diffs = rl_train.config_differences(rl_train.effective_config(recorded), expected)
    if diffs:
        raise SweepError("{} holds a run made with other settings than this sweep asks for ({}); it is neither "
                         "reused nor tabulated: move it away, or choose another --out for these settings".format(
                             run_dir, "there -> requested: " + runinfo.format_differences(diffs)))
    return rl_train.latest_step(run_dir)


def run_one(run_dir: Path, flags: Sequence[str], quiet: bool = False) -> None:
    """Train (or resume) one run with ``python -m rl.train``; raises :class:`SweepRunFailed` if it fails.
    ``quiet``: its progress goes only to its own log.txt (for runs trained side by side)."""
    cmd = [sys.executable, "-m", "rl.train"] + list(flags) + ["--out", str(run_dir), "--resume"]
    print("[rl] " + " ".join(cmd), flush=True)
    started = time.time()
    status = subprocess.run(cmd, stdout=subprocess.DEVNULL if quiet else None).returncode
    if status != 0:
        raise SweepRunFailed("python -m rl.train --out {} exited with status {} (its message is above); fix that and "
                         "run the sweep again: finished runs are kept, interrupted ones resume".format(
                             run_dir, status))
    if quiet:
        print("[rl] {} done ({:.0f} s)".format(run_dir, time.time() - started), flush=True)


def train_runs(todo: Sequence[tuple], jobs: int = 1) -> None:
    """Train (or resume) each (run folder, rl.train flags) of ``todo``, up to ``jobs`` at once. After a failure
    no run is started; the running ones finish, then the failure is raised (the next sweep resumes the rest)."""
    if jobs == 1:
        for run_dir, flags in todo:
            run_one(run_dir, flags)
        return
    print("[rl] {} runs, {} at a time; each run's progress goes to its own log.txt".format(len(todo), jobs),
          flush=True)
    failed = threading.Event()

    def run_unless_failed(run_dir, flags):
        if not failed.is_set():
            try:
                run_one(run_dir, flags, quiet=True)
            except BaseException:
                failed.set()
                raise

    try:
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            futures = [pool.submit(run_unless_failed, run_dir, flags) for run_dir, flags in todo]
    finally:
        failed.set()  # (Ctrl-C: queued runs are not started)
    errors_seen = [f.exception() for f in futures if f.exception() is not None]
    if errors_seen:
        raise errors_seen[0]


def read_eval(run_dir: Path) -> np.ndarray:
    """Rows (step, mean_return, std_return, wall_seconds) of a run's eval.csv."""
    with open(run_dir / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r["step"]), float(r["mean_return"]), float(r["std_return"]),
                      float(r["wall_seconds"])] for r in rows])


def random_baseline(env_id: str, episodes: int, extra: Sequence[str] = ()) -> List[float]:
    """Returns of the uniform random policy on the evaluation episodes' fixed seeds, with the agents'
    episode length (``--max-episode-steps`` among the flags ``extra`` passes to ``rl.train``)."""
    from rl.evaluation import make_env, random_policy_returns

    horizon = argparse.ArgumentParser(add_help=False)
    horizon.add_argument("--max-episode-steps", type=int, default=None)
    env = make_env(env_id, horizon.parse_known_args(list(extra))[0].max_episode_steps)
    try:
        return random_policy_returns(env, episodes)
    finally:
        env.close()


def plot(curves: Dict[str, List[np.ndarray]], random_mean: float, path: Path, title: str) -> None:
    """Evaluation return vs environment steps, mean ± sample std over seeds per agent, random policy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, runs in curves.items():
        steps, returns = runs[0][:, 0], np.stack([r[:, 1] for r in runs])
        mean = returns.mean(0)
        ax.plot(steps, mean, label="{} ({} seed{})".format(LABELS[name], len(runs), "s" if len(runs) > 1 else ""))
        if len(runs) > 1:
            std = sample_std(returns, 0)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.axhline(random_mean, color="gray", ls="--", label="uniform random policy")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return (no exploration noise)")
    ax.set_title(title + "; bands: " + STD_NOTE, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    runinfo.atomic_write_bytes(path, _png_bytes(fig))
    plt.close(fig)


def _png_bytes(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()


def _pm(mean: float, std: float) -> str:
    return "{:.2f} ± {}".format(mean, "n/a" if not np.isfinite(std) else "{:.2f}".format(std))


def _json_number(x: float) -> Optional[float]:
    return float(x) if np.isfinite(x) else None


def summarize(curves: Dict[str, List[np.ndarray]], random_returns: List[float]) -> tuple:
    """(per-agent summary dict, random-policy dict, markdown table) of the finished runs' curves."""
    agents = {}
    lines = ["| agent | seeds | final eval return (mean ± std; {}) | per-seed final | best eval (mean over seeds) | "
             "wall s per run (mean) |".format(STD_NOTE), "|---|---|---|---|---|---|"]
    for name, runs in curves.items():
        returns = np.stack([r[:, 1] for r in runs])
        final = returns[:, -1]
        final_std = float(sample_std(final))
        wall = float(np.mean([r[-1, 3] for r in runs]))
        agents[name] = {"final_mean": float(final.mean()), "final_std": _json_number(final_std),
                        "final_per_seed": final.tolist(), "best_mean_curve": float(np.max(returns.mean(0))),
                        "wall_seconds_per_run": wall, "steps": runs[0][:, 0].tolist(),
                        "curve_mean": returns.mean(0).tolist(),
                        "curve_std": [_json_number(v) for v in np.atleast_1d(sample_std(returns, 0))]}
        lines.append("| {} | {} | {} | {} | {:.2f} | {:.0f} |".format(
            LABELS[name], len(runs), _pm(final.mean(), final_std), ", ".join("{:.2f}".format(v) for v in final),
            agents[name]["best_mean_curve"], wall))
    random_mean, random_std = float(np.mean(random_returns)), float(sample_std(random_returns))
    lines.append("| uniform random policy | - | {} (over {} episodes, sample std) | - | - | - |".format(
        _pm(random_mean, random_std), len(random_returns)))
    random = {"mean": random_mean, "std": _json_number(random_std), "episodes": len(random_returns),
              "returns": [float(r) for r in random_returns]}
    return agents, random, "\n".join(lines) + "\n"


def compare_agents(by_seed: Dict[str, Dict[int, "rl_compare.Curve"]]) -> Optional[tuple]:
    """rl_compare's (plateau, per-run metrics, paired comparisons) over the seeds every agent has finished,
    or None with fewer than 2 such seeds (no paired interval) or fewer than 2 evaluations per run."""
    common = sorted(set.intersection(*(set(runs) for runs in by_seed.values())))
    if len(common) < 2 or any(c.steps.size < 2 for runs in by_seed.values() for c in runs.values()):
        return None
    level, metrics = rl_compare.run_metrics({n: {s: runs[s] for s in common} for n, runs in by_seed.items()})
    return level, metrics, rl_compare.comparisons(metrics)


def parse_args(argv=None):
    """(parsed flags, flags left for rl.train, preset name, sizes dict, output folder) of the command line."""
    ap = cli_checks.OneLineParser(
        prog="reproduce/rl.sh", description=" ".join(__doc__.split("\n\n")[0].split()),  # first paragraph
        epilog="Flags not listed here go to every python -m rl.train run.",
        allow_abbrev=False)  # --seed must not pass for --seeds
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None,
                    help="sizes (default: local): quick (1 seed, 2k steps), local (3 seeds, 6k), paper (0.5M steps, "
                         "MAF 2x512), efficiency (5 paired seeds, 5k steps, discount 0.99, evaluation every 250) and "
                         "gamma999 (5 paired seeds, 8k steps, discount 0.999); the last two add paired comparisons")
    ap.add_argument("--quick", action="store_true", help="same as --preset quick (a CPU run of minutes)")
    ap.add_argument("--out", default=None, help="output folder (default: runs/rl_<preset>)")
    ap.add_argument("--env", default="Swimmer-v5")
    ap.add_argument("--agents", nargs="+", choices=sorted(AGENTS), default=["svgd", "maf_anneal", "maf_no_anneal"],
                    help="agents, run in this order for each seed (the cheap SVGD baseline first)")
    ap.add_argument("--seeds", type=int, default=None, help="override the preset's number of seeds")
    ap.add_argument("--steps", type=int, default=None, help="override the preset's environment steps")
    ap.add_argument("--png", default=None, help="also write the curves to this path (e.g. docs/images/rl_curves.png)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs trained at once (each python -m rl.train uses one thread unless --threads says "
                         "otherwise: --jobs 2 on 2 cores); with more than one, a run's progress goes only to its "
                         "log.txt")
    ap.add_argument("--random-episodes", type=int, default=10)
    ap.add_argument("--aggregate-only", action="store_true",
                    help="train nothing: plot and tabulate the finished runs under --out")
    args, extra = ap.parse_known_args(argv)
    if args.quick and args.preset not in (None, "quick"):
        ap.error("--quick contradicts --preset {}; give one of them".format(args.preset))
    preset = "quick" if args.quick else (args.preset or "local")
    p = dict(PRESETS[preset])
    for key in ("seeds", "steps", "jobs"):
        value = getattr(args, key)
        if value is not None and value < 1:
            ap.error("--{} must be >= 1, got {}".format(key, value))
        if value is not None and key in p:
            p[key] = value
    if p["start_steps"] >= p["steps"] and not any(a.split("=")[0] == "--start-steps" for a in extra):
        lowered = int(p["steps"] * SHORT_RUN_START_SHARE)
        print("note: --steps {} is not above the {} preset's start steps {} (random actions, no training); using "
              "--start-steps {} (a quarter of --steps; pass --start-steps to choose)".format(
                  p["steps"], preset, p["start_steps"], lowered), file=sys.stderr, flush=True)
        p["start_steps"] = lowered
    check_extra(extra, preset, p)
    if args.random_episodes < 2:
        ap.error("--random-episodes must be >= 2 (a mean and a sample std), got {}".format(args.random_episodes))
    out = Path(args.out) if args.out is not None else default_out(preset)
    return args, extra, preset, p, out


def check_extra(extra: Sequence[str], preset: str, p: dict) -> None:
    """Refuse (one line) a flag for rl.train that the sweep sets itself: the preset's or an agent's."""
    for token in extra:
        name = token.split("=")[0]
        clash = [f for f in SWEEP_SET_FLAGS if len(name) > 2 and f.startswith(name)]  # argparse takes prefixes
        if not clash:
            continue
        flag = clash[0]
        key = flag[2:].replace("-", "_")
        if key == "seed":
            raise SweepError("{} is set by the sweep (seeds 0..N-1): use --seeds N".format(token))
        if key in p:
            values = ", ".join("{} {}".format(name, sizes[key]) for name, sizes in sorted(PRESETS.items()))
            raise SweepError("{} is set by the {} preset ({}): drop it, or choose the preset with the value you need "
                             "({}); for another value run python -m rl.train {} directly".format(
                                 token, preset, p[key], values, flag))
        raise SweepError("{} is set by the sweep for each agent (--agents chooses them): drop it".format(token))


def main(argv=None) -> int:
    """Run the sweep of the chosen preset, then write curves.png, summary.md and summary.json; errors print
    one line and return 2 (settings) or 1 (a failed run), as every command (:mod:`va_core.errors`)."""
    try:
        return _sweep(*parse_args(argv))
    except RunError as e:
        return errors.report(e)


def _sweep(args, extra, preset, p, out) -> int:
    cli_checks.check_out_folder(out)
    plan = []  # (agent, seed, run folder, rl.train flags, newest checkpoint step or None)
    checked_envs = set()
    for seed in range(p["seeds"]):  # seed-major: an interrupted sweep still has every agent on the first seeds
        for name in args.agents:
            run_dir = out / name / "seed{}".format(seed)
            flags = train_flags(name, seed, p, args.env, extra)
            expected = expected_config(flags)
            check_env(name, expected, checked_envs)
            plan.append((name, seed, run_dir, flags, run_state(run_dir, expected)))
    if not args.aggregate_only:  # --aggregate-only writes nothing unless there are finished runs to tabulate
        out.mkdir(parents=True, exist_ok=True)
        runinfo.write_run_config(out, dict(preset=preset, env=args.env, agents=args.agents, extra=extra, **p))
    started = time.time()
    curves: Dict[str, List[np.ndarray]] = {}
    by_seed: Dict[str, Dict[int, rl_compare.Curve]] = {}
    tabulated, todo = [], []
    for name, seed, run_dir, flags, step in plan:
        if step is not None and step >= p["steps"]:
            print("[rl] {} seed {}: finished earlier (same settings), kept".format(name, seed), flush=True)
        elif args.aggregate_only:
            print("[rl] {} seed {}: not finished, left out".format(name, seed), flush=True)
            continue
        else:
            todo.append((run_dir, flags))
        tabulated.append((name, seed, run_dir))
    train_runs(todo, args.jobs)
    for name, seed, run_dir in tabulated:
        curves.setdefault(name, []).append(read_eval(run_dir))
        by_seed.setdefault(name, {})[seed] = rl_compare.Curve(curves[name][-1][:, 0], curves[name][-1][:, 1])
    if not curves:
        raise SweepError("no finished runs under {} for these settings".format(out))
    random_returns = random_baseline(args.env, args.random_episodes, extra)
    title = "{} ({} preset): {} steps, MAF hidden {}".format(args.env, preset, p["steps"], p["maf_hidden"])
    agents, random, table = summarize(curves, random_returns)
    compared = compare_agents(by_seed)
    if compared is not None:
        table += "\n" + rl_compare.markdown(*compared, LABELS)
    plot(curves, random["mean"], out / "curves.png", title)
    if args.png:
        plot(curves, random["mean"], Path(args.png), title)
    summary = {"preset": preset, "env": args.env, "settings": p, "extra_flags": extra, "std": STD_NOTE,
               "random_policy": random, "agents": agents, "comparison": None if compared is None else
               rl_compare.as_json(*compared), "wall_seconds_this_invocation": time.time() - started}
    runinfo.atomic_write_json(out / "summary.json", summary)
    runinfo.atomic_write_text(out / "summary.md", table)
    print(table, flush=True)
    print("[rl] sweep took {:.0f} s; curves in {}".format(time.time() - started, out / "curves.png"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
