"""Chainer vs PyTorch time of one DFM (JSD-GAN) step, measured in one run on one device (issue 8).

    python benchmarks/compare_torch.py --device -1 --width 0.25 --repeat 5     # CPU
    python benchmarks/compare_torch.py --device 0 --repeat 30                  # paper sizes on a GPU

The Chainer step is ``chainer_va``'s ``jsd`` updater with ``--anneal none`` as shipped and with each of its
host-side speed-ups off (then all of them); the PyTorch step is ``benchmarks/torch_reference.py``'s
:class:`DFMStep` (the same networks, data, host-side sampling and step structure, full fp32), plus an
identical ``pytorch (control)`` whose ratio shows the run's noise. All are timed interleaved on one clock
(``step_time.time_interleaved``) and printed as ``step_time.py`` prints, as ratios to PyTorch; on a GPU
the settings that decide PyTorch's arithmetic are printed first. Needs torch (``pip install -e
.[crosscheck]``); the PyTorch side runs on ``cuda:N`` when ``--device N`` names a GPU.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy

import chainer_va  # noqa: F401  (the compat layer before chainer)
from chainer_va.device import add_device_argument, get_device, parse_device_spec

import step_time  # benchmarks/ is the script's own folder

BASE = "pytorch"
CONTROL = "pytorch (control)"


class TorchStep:
    """The PyTorch twin behind an ``update()``, so that it is timed interleaved with the Chainer steps (on
    a shared machine, timing it apart let the ratio drift by 30%)."""

    def __init__(self, args, images, device: str):
        import torch

        import torch_reference

        self.step = torch_reference.DFMStep(width=args.width, batchsize=args.batchsize, device=device,
                                            images=images, sampling=args.torch_sampling)
        self.sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
        for _ in range(args.warmup):
            self.update()

    def update(self) -> None:
        self.step()
        self.sync()


def torch_device(spec) -> str:
    spec = parse_device_spec(spec)
    return "cpu" if spec == "@numpy" else "cuda:" + spec.split(":")[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_argument(parser)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batchsize", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OPENBLAS_NUM_THREADS", "0")),
                        help="torch CPU threads (default: $OPENBLAS_NUM_THREADS, else torch's default)")
    parser.add_argument("--torch-sampling", default="host", choices=("host", "device"),
                        help="where the twin draws z and the denoiser's noise (host: as Chainer's updaters)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rounds' orders and the bootstrap intervals")
    args = parser.parse_args(argv)
    args.n_critic = 1
    import torch

    import torch_reference

    if args.threads:
        torch.set_num_threads(args.threads)  # CPU: compare at the same thread count as numpy's BLAS
    device = get_device(args.device)
    tdevice = torch_device(args.device)
    images = numpy.random.RandomState(0).uniform(-1, 1, (4 * args.batchsize, 3, 32, 32)).astype(numpy.float32)
    _, unit = step_time.clock_for(device)
    print("device {} (torch {}), width {}, batch {}: {} per DFM step, {} rounds (random order each round); "
          "torch threads {}, twin sampling on the {}".format(device, tdevice, args.width, args.batchsize, unit,
                                                            args.repeat, torch.get_num_threads(), args.torch_sampling))
    torch_reference.use_full_fp32()
    settings = torch_reference.precision_settings()
    if tdevice != "cpu":
        settings["device"] = torch.cuda.get_device_name(torch.device(tdevice))
    print("# torch settings: " + ", ".join("{} {}".format(k, v) for k, v in settings.items()), flush=True)
    print("{:<30} {}".format("step", step_time.header(unit, BASE)))
    steps, times, state = {}, {}, "building"
    with step_time.stop_on_sigterm():
        try:
            steps[BASE] = TorchStep(args, images, tdevice)
            steps[CONTROL] = TorchStep(args, images, tdevice)
            steps["chainer"] = step_time.build("jsd", "none", images, args, device)
            steps["chainer, per-parameter Adam"] = step_time.build("jsd", "none", images, args, device, adam="chainer")
            steps["chainer, unfused layers"] = step_time.build("jsd", "none", images, args, device, layers="chainer")
            steps["chainer, unfused losses"] = step_time.build("jsd", "none", images, args, device, losses="chainer")
            steps["chainer, backprop all"] = step_time.build("jsd", "none", images, args, device, backprop="all")
            steps["chainer, no speed-ups"] = step_time.build_unoptimised("jsd", "none", images, args, device)
            state = "timing"
            step_time.time_interleaved(steps, args.repeat, device, times, seed=args.seed)
        except step_time.Stopped:
            done = len(times.get(BASE, ()))
            print("# stopped by SIGTERM while {} ({} steps built, {} of {} rounds done)".format(
                state, len(steps), done, args.repeat), flush=True)
            if done and state == "timing":
                _print_rows(times, args.seed)
            return step_time.STOPPED_STATUS
    _print_rows(times, args.seed)
    return 0


def _print_rows(times: dict, seed: int) -> None:
    for name, stats in step_time.summarise(times, BASE, seed).items():
        print("{:<30} {}".format(name, step_time.row(stats)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
