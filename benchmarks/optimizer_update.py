"""Time of one Adam update per network: FusedAdam vs Chainer's per-parameter Adam (issue 8).

    python benchmarks/optimizer_update.py --device -1 --width 0.5 --repeat 30
    python benchmarks/optimizer_update.py --device 0 --repeat 200          # paper sizes on a GPU

For the DFM generator, discriminator and denoiser at ``--width``, gradients are filled with random
numbers once, then ``optimizer.update()`` is timed for both optimizers, interleaved. Prints the number
of parameter arrays (Chainer's path makes one update call, and on a GPU one kernel launch, per array),
the median time of each and their ratio. On the CPU the clock is this process's CPU time.
"""
from __future__ import annotations

import argparse
import statistics
import sys

import numpy

import chainer_va  # noqa: F401  (the compat layer before chainer)
import chainer
from chainer_va import nets
from chainer_va.device import add_device_argument, get_device
from chainer_va.fused_adam import FusedAdam

import step_time  # benchmarks/ is the script's own folder


def networks(width: float) -> dict:
    """The DFM step's three networks at ``width`` (32x32, 3 channels)."""
    rng = numpy.random.RandomState(0)
    dis = nets.DFMDiscriminator(in_channels=3, width=width, size=32, rng=rng)
    return {"generator": nets.Generator(latent_dim=128, out_channels=3, width=width, size=32, rng=rng),
            "discriminator": dis, "denoiser": nets.Denoiser(dis.feature_shape, width=width, rng=rng)}


def time_updates(link, device, repeat: int) -> dict:
    """Median seconds of ``optimizer.update()`` for FusedAdam and chainer's Adam on copies of ``link``."""
    clock, _ = step_time.clock_for(device)
    links = {"fused": link, "chainer": link.copy(mode="copy")}
    optimizers = {}
    for name, target in links.items():
        target.to_device(device)
        optimizers[name] = (FusedAdam if name == "fused" else chainer.optimizers.Adam)(alpha=1e-4, beta1=0.5, beta2=0.9)
        optimizers[name].setup(target)
        rng = numpy.random.RandomState(1)
        for p in sorted(target.params(), key=lambda p: p.name):
            p.grad = device.send(rng.normal(size=p.shape).astype(numpy.float32))
    times = {name: [] for name in optimizers}
    for _ in range(repeat + 2):
        for name, optimizer in optimizers.items():
            start = clock()
            optimizer.update()
            step_time._synchronize(device)
            times[name].append(clock() - start)
    return {name: statistics.median(values[2:]) for name, values in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_argument(parser)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    device = get_device(args.device)
    _, unit = step_time.clock_for(device)
    print("device {}, width {}, {} timed updates per optimizer (median {})".format(device, args.width, args.repeat, unit))
    print("{:<14} {:>7} {:>12} {:>12} {:>12} {:>14}".format("network", "arrays", "parameters", "fused", "chainer",
                                                          "chainer/fused"))
    for name, link in networks(args.width).items():
        params = list(link.params())
        result = time_updates(link, device, args.repeat)
        print("{:<14} {:>7} {:>12} {:>12.4e} {:>12.4e} {:>14.2f}".format(
            name, len(params), sum(p.size for p in params), result["fused"], result["chainer"],
            result["chainer"] / result["fused"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
