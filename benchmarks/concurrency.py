"""Aggregate training throughput of N concurrent runs on one device vs one run (issue 8).

    python benchmarks/concurrency.py --device -1 --runs 1,2 --width 0.25 --steps 20      # CPU
    python benchmarks/concurrency.py --device 0 --runs 1,2,4,8 --steps 200               # one GPU

For each N, N worker processes each build the same updater as ``step_time.py`` (``--objective``,
``--anneal``), warm up, wait at a common start line, and run ``--steps`` steps. The aggregate rate is
all workers' steps divided by the wall time from the common start to the last worker's end; the table
prints it and its ratio to N = 1 (how many times more iterations per second the device delivers when it
is shared, i.e. what ``reproduce/table1.sh --jobs-per-gpu N`` gains). On the CPU each worker gets
``cores // N`` BLAS threads, as the grid runner gives them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chainer_va.device import cpu_thread_env, parse_device_spec

HERE = Path(__file__).resolve().parent


def worker(args) -> int:
    """One run: build, warm up, signal ready, wait for the start line, time ``--steps`` steps."""
    import numpy

    import chainer_va  # noqa: F401  (the compat layer before chainer)
    from chainer_va.device import get_device

    sys.path.insert(0, str(HERE))
    import step_time

    device = get_device(args.device)
    images = numpy.random.RandomState(0).uniform(
        -1, 1, (max(4 * args.batchsize * args.n_critic, 256), 3, 32, 32)).astype(numpy.float32)
    updater = step_time.build(args.objective, args.anneal, images, args, device)
    Path(args.sync, "ready-{}".format(args.worker_id)).touch()
    go = Path(args.sync, "go")
    while not go.exists():
        time.sleep(0.01)
    start = time.time()
    for _ in range(args.steps):
        updater.update()
    step_time._synchronize(device)
    end = time.time()
    Path(args.sync, "result-{}.json".format(args.worker_id)).write_text(
        json.dumps(dict(start=start, end=end, steps=args.steps)))
    return 0


def run_concurrent(n: int, args) -> dict:
    """Start ``n`` workers, release them together, return their aggregate rate."""
    with tempfile.TemporaryDirectory() as sync:
        env = cpu_thread_env(n) if parse_device_spec(args.device) == "@numpy" else dict(os.environ)
        common = [sys.executable, str(Path(__file__).resolve()), "--device", str(args.device), "--width",
                  str(args.width), "--batchsize", str(args.batchsize), "--steps", str(args.steps), "--objective",
                  args.objective, "--anneal", args.anneal, "--n-critic", str(args.n_critic), "--warmup",
                  str(args.warmup), "--sync", sync]
        procs = [subprocess.Popen(common + ["--worker-id", str(i)], env=env) for i in range(n)]
        while sum(Path(sync, "ready-{}".format(i)).exists() for i in range(n)) < n:
            if any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError("a worker failed before the start line")
            time.sleep(0.05)
        Path(sync, "go").touch()
        codes = [p.wait() for p in procs]
        if any(codes):
            raise RuntimeError("worker exit codes {}".format(codes))
        results = [json.loads(Path(sync, "result-{}.json".format(i)).read_text()) for i in range(n)]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    steps = sum(r["steps"] for r in results)
    return dict(runs=n, steps=steps, wall_s=wall, steps_per_s=steps / wall)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="-1", help="-1 / @numpy for the CPU, N or @cupy:N for a GPU")
    parser.add_argument("--runs", default="1,2", help="comma-separated numbers of concurrent runs (1,2)")
    parser.add_argument("--objective", default="jsd")
    parser.add_argument("--anneal", default="lik")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batchsize", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--n-critic", type=int, default=5)
    parser.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sync", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_id is not None:
        return worker(args)
    counts = sorted({1} | {int(n) for n in args.runs.split(",") if n.strip()})
    print("device {}, {} + {}, width {}, batch {}, {} steps per run".format(
        args.device, args.objective, args.anneal, args.width, args.batchsize, args.steps))
    print("{:>5} {:>10} {:>12} {:>16}".format("runs", "wall_s", "steps_per_s", "ratio_vs_1_run"))
    base = None
    for n in counts:
        result = run_concurrent(n, args)
        base = result["steps_per_s"] if n == 1 else base
        print("{:>5} {:>10.4f} {:>12.3f} {:>16.2f}".format(n, result["wall_s"], result["steps_per_s"],
                                                           result["steps_per_s"] / base), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
