"""Chainer vs PyTorch time of one DFM (JSD-GAN) step, measured in one run on one device (issue 8).

    python benchmarks/compare_torch.py --device -1 --width 0.25 --repeat 5     # CPU
    python benchmarks/compare_torch.py --device 0 --repeat 30                  # paper sizes on a GPU

The Chainer step is ``chainer_va``'s ``jsd`` updater (discriminator, generator with DFM's denoiser
term, denoiser) as shipped, and with each of its host-side speed-ups off (Chainer's per-parameter
Adam; Chainer's three nodes per affine + BN + activation layer; both), interleaved; the PyTorch step is
``benchmarks/torch_reference.py`` with the same layer shapes. Prints the medians and their ratios. Needs torch (``pip install -e .[crosscheck]``); the PyTorch side
runs on ``cuda:N`` when ``--device N`` names a GPU.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import chainer_va  # noqa: F401  (the compat layer before chainer)
from chainer_va.device import add_device_argument, get_device, parse_device_spec

import step_time  # benchmarks/ is the script's own folder


def time_torch(args, clock=time.perf_counter) -> list:
    import torch

    import torch_reference

    if args.threads:
        torch.set_num_threads(args.threads)  # CPU: compare at the same thread count as numpy's BLAS
    spec = parse_device_spec(args.device)
    device = "cpu" if spec == "@numpy" else "cuda:" + spec.split(":")[1]
    step = torch_reference.DFMStep(width=args.width, batchsize=args.batchsize, device=device)
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.repeat):
        start = clock()
        step()
        sync()
        times.append(clock() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_argument(parser)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batchsize", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OPENBLAS_NUM_THREADS", "0")),
                        help="torch CPU threads (default: $OPENBLAS_NUM_THREADS, else torch's default)")
    args = parser.parse_args(argv)
    args.n_critic = 1
    device = get_device(args.device)
    import numpy

    images = numpy.random.RandomState(0).uniform(-1, 1, (4 * args.batchsize, 3, 32, 32)).astype(numpy.float32)
    steps = {"chainer": step_time.build("jsd", "none", images, args, device),
             "chainer, per-parameter Adam": step_time.build("jsd", "none", images, args, device, adam="chainer"),
             "chainer, unfused layers": step_time.build("jsd", "none", images, args, device, layers="chainer"),
             "chainer, neither speed-up": step_time.build("jsd", "none", images, args, device, adam="chainer",
                                                          layers="chainer")}
    chainer_times = step_time.time_interleaved(steps, args.repeat, device)
    del steps
    clock, unit = step_time.clock_for(device)   # the same clock on both sides (CPU time on the CPU)
    torch_s = statistics.median(time_torch(args, clock))
    print("device {}, width {}, batch {}: median {} per DFM step".format(device, args.width, args.batchsize, unit))
    print("pytorch {:.4f}".format(torch_s))
    for name, times in chainer_times.items():
        median = statistics.median(times)
        print("{} {:.4f}  ratio to pytorch {:.2f}".format(name, median, median / torch_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
