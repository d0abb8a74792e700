"""Learning curves of soft Q-learning on Swimmer-v5: MAF agent with/without annealing vs amortised SVGD (supplement J.3).

Runs ``python -m rl.train`` once per (agent, seed) into ``--out/<agent>/seed<k>`` (each with --resume,
so an interrupted sweep continues where it stopped; finished runs are skipped), evaluates the uniform
random policy on the same fixed-seed evaluation episodes, and writes ``--out/curves.png`` (mean ±
std over seeds of the evaluation return vs environment steps), ``--out/summary.md`` and
``--out/summary.json`` (final returns and wall times).
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

import rl  # noqa: F401  (project package first)
from chainer_va import runinfo

AGENTS: Dict[str, List[str]] = {
    "maf_anneal": ["--agent", "maf", "--anneal", "ent", "--schedule", "linear", "--lambda0", "1.0"],
    "maf_no_anneal": ["--agent", "maf", "--anneal", "none"],
    "svgd": ["--agent", "svgd"],
}
LABELS = {"maf_anneal": "SQL + MAF proposal, annealed (ent, linear, lambda0=1)",
          "maf_no_anneal": "SQL + MAF proposal, no annealing",
          "svgd": "SQL + amortised SVGD (original)"}
# Sizes. "paper": J.3 / SPEC section 8 (0.5M steps, MAF 2x512; days per run on this 2-core CPU).
PRESETS = {
    "paper": dict(steps=500_000, seeds=3, start_steps=10_000, eval_every=10_000, eval_episodes=5,
                  maf_hidden=512, checkpoint_every=10_000),
    "local": dict(steps=6000, seeds=3, start_steps=1000, eval_every=1500, eval_episodes=3,
                  maf_hidden=64, checkpoint_every=3000),
    "quick": dict(steps=2000, seeds=1, start_steps=500, eval_every=500, eval_episodes=2,
                  maf_hidden=64, checkpoint_every=1000),
}


def run_one(out: Path, name: str, seed: int, p: dict, env: str, extra: List[str]) -> Path:
    """Train (or resume, or skip when finished) one agent/seed with ``python -m rl.train``; returns its folder."""
    run_dir = out / name / "seed{}".format(seed)
    pointer = run_dir / "checkpoints" / "latest.json"
    if pointer.exists() and json.loads(pointer.read_text())["step"] >= p["steps"]:
        print("[rl] {} seed {}: finished earlier, skipped".format(name, seed), flush=True)
        return run_dir
    cmd = [sys.executable, "-m", "rl.train", "--env", env, "--seed", str(seed), "--steps", str(p["steps"]),
           "--start-steps", str(p["start_steps"]), "--eval-every", str(p["eval_every"]),
           "--eval-episodes", str(p["eval_episodes"]), "--maf-hidden", str(p["maf_hidden"]),
           "--checkpoint-every", str(p["checkpoint_every"]), "--progress-every", str(p["eval_every"]),
           "--out", str(run_dir), "--resume"] + AGENTS[name] + extra
    print("[rl] " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return run_dir


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


def plot(curves: Dict[str, np.ndarray], random_mean: float, path: Path, title: str) -> None:
    """Evaluation return vs environment steps, mean ± std over seeds per agent, random policy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, runs in curves.items():
        steps, returns = runs[0][:, 0], np.stack([r[:, 1] for r in runs])
        mean, std = returns.mean(0), returns.std(0)
        ax.plot(steps, mean, label="{} ({} seeds)".format(LABELS[name], len(runs)))
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.axhline(random_mean, color="gray", ls="--", label="uniform random policy")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return (no exploration noise)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    runinfo.atomic_write_bytes(path, _png_bytes(fig))
    plt.close(fig)


def _png_bytes(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()


def main(argv=None) -> int:
    """Run the sweep of the chosen preset, then write curves.png, summary.md and summary.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="local")
    ap.add_argument("--quick", action="store_true", help="same as --preset quick (a CPU run of minutes)")
    ap.add_argument("--out", default="runs/rl")
    ap.add_argument("--env", default="Swimmer-v5")
    ap.add_argument("--agents", nargs="+", choices=sorted(AGENTS), default=["svgd", "maf_anneal", "maf_no_anneal"],
                    help="agents, run in this order for each seed (the cheap SVGD baseline first)")
    ap.add_argument("--seeds", type=int, default=None, help="override the preset's number of seeds")
    ap.add_argument("--steps", type=int, default=None, help="override the preset's environment steps")
    ap.add_argument("--png", default=None, help="also write the curves to this path (e.g. docs/images/rl_curves.png)")
    ap.add_argument("--random-episodes", type=int, default=10)
    ap.add_argument("--aggregate-only", action="store_true",
                    help="train nothing: plot and tabulate the finished runs under --out")
    args, extra = ap.parse_known_args(argv)
    preset = "quick" if args.quick else args.preset
    p = dict(PRESETS[preset])
    if args.seeds is not None:
        p["seeds"] = args.seeds
    if args.steps is not None:
        p["steps"] = args.steps
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.aggregate_only:
        runinfo.write_run_config(out, dict(preset=preset, env=args.env, agents=args.agents, extra=extra, **p))
    started = time.time()
    curves: Dict[str, List[np.ndarray]] = {}
    for seed in range(p["seeds"]):  # seed-major: an interrupted sweep still has every agent on the first seeds
        for name in args.agents:
            if args.aggregate_only:
                run_dir = out / name / "seed{}".format(seed)
                pointer = run_dir / "checkpoints" / "latest.json"
                if not (pointer.exists() and json.loads(pointer.read_text())["step"] >= p["steps"]):
                    print("[rl] {} seed {}: not finished, left out".format(name, seed), flush=True)
                    continue
            else:
                run_dir = run_one(out, name, seed, p, args.env, extra)
            curves.setdefault(name, []).append(read_eval(run_dir))
    if not curves:
        raise SystemExit("no finished runs under {}".format(out))
    random_returns = random_baseline(args.env, args.random_episodes, extra)
    random_mean, random_std = float(np.mean(random_returns)), float(np.std(random_returns))
    title = "{} ({} preset): {} steps, MAF hidden {}".format(args.env, preset, p["steps"], p["maf_hidden"])
    plot(curves, random_mean, out / "curves.png", title)
    if args.png:
        plot(curves, random_mean, Path(args.png), title)
    summary = {"preset": preset, "env": args.env, "settings": p, "extra_flags": extra,
               "random_policy": {"mean": random_mean, "std": random_std, "episodes": args.random_episodes},
               "agents": {}, "sweep_wall_seconds": time.time() - started}
    lines = ["| agent | seeds | final eval return (mean ± std over seeds) | per-seed final | "
             "best eval (mean over seeds) | wall s per run (mean) |", "|---|---|---|---|---|---|"]
    for name, runs in curves.items():
        final = np.array([r[-1, 1] for r in runs])
        best = float(np.max(np.mean(np.stack([r[:, 1] for r in runs]), 0)))
        wall = float(np.mean([r[-1, 3] for r in runs]))
        summary["agents"][name] = {"final_mean": float(final.mean()), "final_std": float(final.std()),
                                   "final_per_seed": final.tolist(), "best_mean_curve": best,
                                   "wall_seconds_per_run": wall,
                                   "steps": runs[0][:, 0].tolist(),
                                   "curve_mean": np.mean(np.stack([r[:, 1] for r in runs]), 0).tolist(),
                                   "curve_std": np.std(np.stack([r[:, 1] for r in runs]), 0).tolist()}
        lines.append("| {} | {} | {:.2f} ± {:.2f} | {} | {:.2f} | {:.0f} |".format(
            LABELS[name], len(runs), final.mean(), final.std(), ", ".join("{:.2f}".format(v) for v in final),
            best, wall))
    lines.append("| uniform random policy | - | {:.2f} ± {:.2f} (over {} episodes) | - | - | - |".format(
        random_mean, random_std, args.random_episodes))
    table = "\n".join(lines) + "\n"
    runinfo.atomic_write_json(out / "summary.json", summary)
    runinfo.atomic_write_text(out / "summary.md", table)
    print(table, flush=True)
    print("[rl] sweep took {:.0f} s; curves in {}".format(time.time() - started, out / "curves.png"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
