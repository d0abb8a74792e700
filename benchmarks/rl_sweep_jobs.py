"""Wall time of a Swimmer sweep trained one run at a time vs ``--jobs N`` runs side by side.

    python benchmarks/rl_sweep_jobs.py                   # 2 seeds x 2 agents x 1,000 steps, --jobs 1 then 2
    python benchmarks/rl_sweep_jobs.py --steps 2000 --jobs 2 --seeds 3

Both sweeps are ``reproduce/rl.py --preset quick`` with the same runs (``--seeds``, ``--steps``, ``--agents``;
start steps a quarter of ``--steps`` and 2 random-policy episodes, to keep it short), each into its own fresh
temporary folder, one after the other in this process. Each sweep is timed once, whole: TensorFlow start-up,
training, evaluations, tables and the random-policy baseline. The printed ratio (one at a time / side by
side) is what ``--jobs`` saves on this machine. Each ``rl.train`` run uses one TensorFlow thread, so the
ratio can reach N only on N free cores: other jobs on the machine lower it.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep_seconds(out: Path, jobs: int, args) -> float:
    """Wall seconds of one sweep (training, tables and the random-policy baseline) into ``out``."""
    cmd = [sys.executable, "-m", "reproduce.rl", "--preset", "quick", "--out", str(out), "--jobs", str(jobs),
           "--seeds", str(args.seeds), "--steps", str(args.steps), "--start-steps", str(args.steps // 4),
           "--agents", *args.agents, "--random-episodes", "2"]
    started = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.time() - started


def main(argv=None) -> int:
    """Print each sweep's wall time and their ratio."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2, help="runs side by side in the second sweep (>= 2)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per agent")
    p.add_argument("--steps", type=int, default=1000, help="environment steps per run")
    p.add_argument("--agents", nargs="+", default=["svgd", "maf_no_anneal"], help="agents of reproduce/rl.py")
    args = p.parse_args(argv)
    if args.jobs < 2:
        p.error("--jobs must be >= 2 (the sweep it is compared with runs one at a time), got {}".format(args.jobs))
    with tempfile.TemporaryDirectory() as tmp:
        one = sweep_seconds(Path(tmp) / "one_at_a_time", 1, args)
        many = sweep_seconds(Path(tmp) / "side_by_side", args.jobs, args)
    runs = args.seeds * len(args.agents)
    print("{} runs of {} steps: one at a time {:.0f} s, --jobs {} {:.0f} s; ratio {:.2f}".format(
        runs, args.steps, one, args.jobs, many, one / many))
    return 0


if __name__ == "__main__":
    sys.exit(main())
