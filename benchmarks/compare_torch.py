"""Chainer vs PyTorch time of one DFM (JSD-GAN) step, measured in one run on one device (issue 8).

    python benchmarks/compare_torch.py --device -1 --width 0.25 --repeat 5     # CPU
    python benchmarks/compare_torch.py --device 0 --repeat 30                  # paper sizes on a GPU

The Chainer step is ``chainer_va``'s ``jsd`` updater (discriminator, generator with DFM's denoiser
term, denoiser) as shipped, and with each of its host-side speed-ups off (Chainer's per-parameter
Adam; Chainer's nodes per affine + BN + activation layer; per loss chain; all of them, with type
checks on every step); the PyTorch step is
``benchmarks/torch_reference.py`` with the same layer shapes. All are timed interleaved, step by step,
on the same clock. Prints the medians and their ratios to PyTorch. Needs torch (``pip install -e
.[crosscheck]``); the PyTorch side runs on ``cuda:N`` when ``--device N`` names a GPU.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import chainer_va  # noqa: F401  (the compat layer before chainer)
from chainer_va.device import add_device_argument, get_device, parse_device_spec

import step_time  # benchmarks/ is the script's own folder


class TorchStep:
    """The PyTorch twin of the DFM step behind the updaters' ``update()``, so that it is timed interleaved
    with the Chainer steps (on a shared machine, timing it apart let the ratio drift by 30%)."""

    def __init__(self, args):
        import torch

        import torch_reference

        if args.threads:
            torch.set_num_threads(args.threads)  # CPU: compare at the same thread count as numpy's BLAS
        spec = parse_device_spec(args.device)
        device = "cpu" if spec == "@numpy" else "cuda:" + spec.split(":")[1]
        self.step = torch_reference.DFMStep(width=args.width, batchsize=args.batchsize, device=device)
        self.sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
        for _ in range(args.warmup):
            self.update()

    def update(self) -> None:
        self.step()
        self.sync()


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
    steps = {"pytorch": TorchStep(args),
             "chainer": step_time.build("jsd", "none", images, args, device),
             "chainer, per-parameter Adam": step_time.build("jsd", "none", images, args, device, adam="chainer"),
             "chainer, unfused layers": step_time.build("jsd", "none", images, args, device, layers="chainer"),
             "chainer, unfused losses": step_time.build("jsd", "none", images, args, device, losses="chainer"),
             "chainer, no speed-ups": step_time.build_unoptimised("jsd", "none", images, args, device)}
    times = step_time.time_interleaved(steps, args.repeat, device)  # the same clock for both frameworks
    del steps
    _, unit = step_time.clock_for(device)
    torch_s = statistics.median(times.pop("pytorch"))
    print("device {}, width {}, batch {}: median {} per DFM step, {} interleaved steps each".format(
        device, args.width, args.batchsize, unit, args.repeat))
    print("pytorch {:.4f}".format(torch_s))
    for name, values in times.items():
        median = statistics.median(values)
        print("{} {:.4f}  ratio to pytorch {:.2f}".format(name, median, median / torch_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
