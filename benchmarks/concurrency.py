"""Aggregate training throughput of N concurrent runs on one device vs one run (issue 8).

    python benchmarks/concurrency.py --device -1 --runs 1,2 --width 0.25 --steps 20      # CPU
    python benchmarks/concurrency.py --device 0 --runs 1,2,4,8 --steps 200               # one GPU

For each N, N worker processes build ``step_time.py``'s updater, warm up, wait at a common start line and
log the (synchronised, wall-clock) end of each of ``--steps`` steps. The rate is the workers' summed
progress over the window in which all of them were stepping, divided by its length
(:func:`common_window_rate`); its ratio to N = 1 is what ``reproduce/table1.sh --jobs-per-gpu N`` gains.
On the CPU each worker gets ``cores // N`` BLAS threads (at least one; ``--cores``, default all), set for
N = 1 too so that an ambient ``OPENBLAS_NUM_THREADS`` does not leak in. If a worker fails before the
start line, the others are stopped (and stop by themselves once the start-line folder or their parent is
gone).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import numpy

from chainer_va.device import THREAD_VARIABLES, parse_device_spec

ABORTED = 3  # a worker's exit status when the start line will never come


def wait_for_start(sync, parent_pid: int, poll: float = 0.01, clock=time.monotonic,
                   timeout: float = float("inf")) -> bool:
    """Wait for ``sync/go``; False if ``sync`` disappears, the parent process is gone, or ``timeout`` passes."""
    go = Path(sync, "go")
    deadline = clock() + timeout
    while not go.exists():
        if not Path(sync).is_dir() or os.getppid() != parent_pid or clock() > deadline:
            return False
        time.sleep(poll)
    return True


def worker(args) -> int:
    """One run: build, warm up, signal ready, wait for the start line, time ``--steps`` steps."""
    import chainer_va  # noqa: F401  (the compat layer before chainer)
    from chainer_va.device import get_device

    import step_time  # a sibling: workers run as scripts, so benchmarks/ is sys.path[0]

    device = get_device(args.device)
    images = numpy.random.RandomState(0).uniform(
        -1, 1, (max(4 * args.batchsize * args.n_critic, 256), 3, 32, 32)).astype(numpy.float32)
    updater = step_time.build(args.objective, args.anneal, images, args, device)
    Path(args.sync, "ready-{}".format(args.worker_id)).touch()
    if not wait_for_start(args.sync, args.parent_pid):
        return ABORTED
    start = time.time()
    ends = []
    for _ in range(args.steps):
        updater.update()
        step_time._synchronize(device)
        ends.append(time.time())
    Path(args.sync, "result-{}.json".format(args.worker_id)).write_text(json.dumps(dict(start=start, ends=ends)))
    return 0


def progress(t: float, start: float, ends: List[float]) -> float:
    """Steps a worker had done at time ``t``: 0 at ``start``, k at its k-th step's end, linear between."""
    return float(numpy.interp(t, [start] + list(ends), numpy.arange(len(ends) + 1)))


def common_window_rate(logs: List[dict]) -> dict:
    """Aggregate steps per second while every worker ran: ``logs`` holds each worker's ``start`` and
    step ``ends``; the window runs from the latest start to the earliest last step end."""
    begin = max(log["start"] for log in logs)
    end = min(log["ends"][-1] for log in logs)
    if not end > begin:
        raise RuntimeError("the workers' timed steps did not overlap (latest start {:.3f}, earliest end {:.3f}); "
                           "use more --steps".format(begin, end))
    steps = sum(progress(end, log["start"], log["ends"]) - progress(begin, log["start"], log["ends"])
                for log in logs)
    first, last = min(log["start"] for log in logs), max(log["ends"][-1] for log in logs)
    return dict(window_s=end - begin, steps=steps, steps_per_s=steps / (end - begin),
                window_share=(end - begin) / (last - first))


def worker_env(n: int, args) -> dict:
    """The workers' environment: on the CPU, ``cores // n`` threads for every BLAS/OpenMP library."""
    env = dict(os.environ)
    if parse_device_spec(args.device) == "@numpy":
        env.update({name: str(threads_per_worker(n, args)) for name in THREAD_VARIABLES})
    return env


def threads_per_worker(n: int, args) -> int:
    return max(1, (args.cores or os.cpu_count() or 1) // n)


def worker_command(args, sync: str, worker_id: int) -> List[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--device", str(args.device), "--width", str(args.width),
            "--batchsize", str(args.batchsize), "--steps", str(args.steps), "--objective", args.objective,
            "--anneal", args.anneal, "--n-critic", str(args.n_critic), "--warmup", str(args.warmup),
            "--sync", sync, "--worker-id", str(worker_id), "--parent-pid", str(os.getpid())]


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_concurrent(n: int, args) -> dict:
    """Start ``n`` workers, release them together, return their aggregate rate over the common window."""
    with tempfile.TemporaryDirectory() as sync:
        env = worker_env(n, args)
        procs = []
        try:
            procs = [subprocess.Popen(worker_command(args, sync, i), env=env) for i in range(n)]
            while sum(Path(sync, "ready-{}".format(i)).exists() for i in range(n)) < n:
                codes = [p.poll() for p in procs]
                if any(code not in (None, 0) for code in codes):
                    raise RuntimeError("a worker failed before the start line (exit codes {})".format(codes))
                time.sleep(0.05)
            Path(sync, "go").touch()
            codes = [p.wait() for p in procs]
            if any(codes):
                raise RuntimeError("worker exit codes {}".format(codes))
            logs = [json.loads(Path(sync, "result-{}.json".format(i)).read_text()) for i in range(n)]
        finally:
            _stop(procs)  # a failure (or Ctrl-C) leaves no worker waiting at the start line
    return dict(runs=n, **common_window_rate(logs))


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
    parser.add_argument("--cores", type=int, default=None, help="CPU: cores shared by the workers (all)")
    parser.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sync", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_id is not None:
        return worker(args)
    counts = sorted({1} | {int(n) for n in args.runs.split(",") if n.strip()})
    cpu = parse_device_spec(args.device) == "@numpy"
    print("device {}, {} + {}, width {}, batch {}, {} steps per run; rate over the window in which all runs "
          "were stepping{}".format(args.device, args.objective, args.anneal, args.width, args.batchsize, args.steps,
                                   "; BLAS threads per run: " + ", ".join(
                                       "{} for {}".format(threads_per_worker(n, args), n) for n in counts)
                                   if cpu else ""))
    print("{:>5} {:>10} {:>10} {:>12} {:>16} {:>13}".format("runs", "window_s", "steps", "steps_per_s",
                                                           "ratio_vs_1_run", "window_share"))
    # a SIGTERM (``timeout``) unwinds through run_concurrent's cleanup, which stops the workers
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        base = None
        for n in counts:
            result = run_concurrent(n, args)
            base = result["steps_per_s"] if n == 1 else base
            print("{:>5} {:>10.4f} {:>10.2f} {:>12.3f} {:>16.2f} {:>13.2f}".format(
                n, result["window_s"], result["steps"], result["steps_per_s"], result["steps_per_s"] / base,
                result["window_share"]), flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
