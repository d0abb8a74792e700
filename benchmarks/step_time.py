"""Time of one training step per objective, without and with each annealing term, on one device.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 OPENBLAS_NUM_THREADS=1 \
        python benchmarks/step_time.py --device -1 --width 0.5 --repeat 25 --objectives jsd   # CPU
    python benchmarks/step_time.py --device 0 --repeat 30            # paper sizes on a GPU

For every objective the baseline (``--anneal none``) and each annealing term are timed in the same
process on the same random 32x32 data, interleaved step by step, and the annealing overhead is printed
as a ratio to that baseline. More rows give the before/after of four speed-ups: for every objective
``none`` with each affine + BN + activation layer as Chainer's nodes instead of one (``--layers
chainer``; :mod:`chainer_va.fused_layers`) and ``none`` (and ``ent``) with each loss chain as
Chainer's nodes (``--losses chainer``; :mod:`chainer_va.fused_losses`); for ``jsd`` also ``none``
with Chainer's per-parameter Adam instead of :class:`chainer_va.fused_adam.FusedAdam` and ``lik``
recomputing r_data(f_fake) for the annealing term instead of reusing DFM's; for every objective
``none`` with all of them off and Chainer's type checks on every step (the step before issue 8). A
step is
``updater.update()``: for ``wgan`` it includes the ``--n-critic`` critic steps. On the CPU, the malloc
settings above keep freed arrays in the heap; without them page faults move the medians by about 10%.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy

import chainer_va  # noqa: F401  (the compat layer before chainer)
from chainer_va import train
from chainer_va.device import add_device_argument, get_device


def _synchronize(device) -> None:
    if device.xp is not numpy:
        device.xp.cuda.Stream.null.synchronize()


def build(objective: str, anneal: str, images: numpy.ndarray, args, device, reuse: bool = True,
          adam: str = "fused", layers: str = "fused", losses: str = "fused"):
    """An updater for ``objective`` x ``anneal`` at the benchmark's size, warmed up.

    ``reuse``, ``adam``, ``layers`` and ``losses`` switch the speed-ups off for before/after rows.
    """
    flags = ["--objective", objective, "--anneal", anneal, "--width", str(args.width), "--batchsize",
             str(args.batchsize), "--iterations", "1000", "--n-critic", str(args.n_critic), "--seed", "0",
             "--adam", adam, "--layers", layers, "--losses", losses]
    if anneal != "none":
        flags += ["--lambda0", "1"]
    config = train.resolve_config(flags)
    config["channels"], config["image_size"] = images.shape[1], images.shape[2]
    updater = train.build_updater(config, images, device)
    for _, denoiser in updater.denoisers.items():
        denoiser.reuse_reconstruction = reuse
    for _ in range(args.warmup):
        updater.update()
    _synchronize(device)
    return updater


def build_unoptimised(objective: str, anneal: str, images: numpy.ndarray, args, device):
    """:func:`build` with every speed-up of issue 8 off and type checks on every step: the step before them."""
    updater = build(objective, anneal, images, args, device, reuse=False, adam="chainer", layers="chainer",
                    losses="chainer")
    updater.check_types_every_step = True
    return updater


def clock_for(device):
    """The clock a benchmark on ``device`` reads: this process's CPU time on the CPU (other processes
    on a shared machine do not inflate it; with several BLAS threads it is their sum, i.e. the work
    done), wall time on a GPU (where the work is the device's, not this process's)."""
    return (time.process_time, "cpu_s") if device.xp is numpy else (time.perf_counter, "wall_s")


def time_interleaved(updaters: dict, repeat: int, device) -> dict:
    """Seconds per step of each updater (:func:`clock_for`), ``repeat`` rounds of one step each, interleaved.

    Interleaving (A B C A B C ...) spreads any drift in machine load over every configuration
    equally, so the ratios stay meaningful on a shared machine where absolute times do not.
    """
    clock, _ = clock_for(device)
    times = {name: [] for name in updaters}
    for _ in range(repeat):
        for name, updater in updaters.items():
            start = clock()
            updater.update()
            _synchronize(device)
            times[name].append(clock() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_argument(parser)
    parser.add_argument("--width", type=float, default=1.0, help="network width multiplier (1.0 = paper)")
    parser.add_argument("--batchsize", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--n-critic", type=int, default=5, help="wgan critic steps per step (5)")
    parser.add_argument("--objectives", default="jsd,rkl,wgan")
    parser.add_argument("--anneal", default="lik,ent,lgan", help="terms compared with --anneal none")
    args = parser.parse_args(argv)
    device = get_device(args.device)
    images = numpy.random.RandomState(0).uniform(
        -1, 1, (max(4 * args.batchsize * args.n_critic, 256), 3, 32, 32)).astype(numpy.float32)
    _, unit = clock_for(device)
    print("device {}, width {}, batch {}, {} interleaved timed steps after {} warm-up; median {} per "
          "step".format(device, args.width, args.batchsize, args.repeat, args.warmup, unit))
    print("{:<8} {:<26} {:>10} {:>10} {:>16}".format("objective", "anneal", "median_" + unit.split("_")[0],
                                                      "min_" + unit.split("_")[0], "ratio_vs_none"))
    for objective in args.objectives.split(","):
        anneals = ["none"] + [a for a in args.anneal.split(",") if a and a != "none"]
        updaters = {a: build(objective, a, images, args, device) for a in anneals}
        # each speed-up's before/after (the module docstring), then all of them off
        if objective == "jsd":
            updaters["none (chainer Adam)"] = build(objective, "none", images, args, device, adam="chainer")
        updaters["none (chainer layers)"] = build(objective, "none", images, args, device, layers="chainer")
        updaters["none (chainer losses)"] = build(objective, "none", images, args, device, losses="chainer")
        if "ent" in anneals:
            updaters["ent (chainer losses)"] = build(objective, "ent", images, args, device, losses="chainer")
        if objective == "jsd" and "lik" in anneals:
            updaters["lik (r recomputed)"] = build(objective, "lik", images, args, device, reuse=False)
        updaters["none (all speed-ups off)"] = build_unoptimised(objective, "none", images, args, device)
        times = time_interleaved(updaters, args.repeat, device)
        base = statistics.median(times["none"])
        for name, values in times.items():
            median = statistics.median(values)
            print("{:<8} {:<26} {:>10.4f} {:>10.4f} {:>16.3f}".format(
                objective, name, median, min(values), median / base), flush=True)
        del updaters
    return 0


if __name__ == "__main__":
    sys.exit(main())
