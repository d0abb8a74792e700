"""Time of one training step per objective, without and with each annealing term, on one device.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296 OPENBLAS_NUM_THREADS=1 \
        python benchmarks/step_time.py --device -1 --width 0.5 --repeat 25 --objectives jsd   # CPU
    python benchmarks/step_time.py --device 0 --repeat 30            # paper sizes on a GPU

Per objective the baseline (``--anneal none``), an identical copy of it (``none (control)``: its ratio
shows the run's noise), each annealing term and the before/after rows of the speed-ups
(:func:`configurations`) are timed in one process on the same random 32x32 data, from the same starting
weights (:class:`NetworkCache`), in rounds of one step each in a fresh seeded random order
(:func:`time_interleaved`). Each row gives the ratio of medians to the baseline and the median of the
per-round paired ratios with a seeded bootstrap 90% interval. A step is ``updater.update()`` (for
``wgan`` with its ``--n-critic`` critic steps). A SIGTERM (``timeout``, as ``gpu_session.sh`` caps each
part) prints the rows of the rounds finished so far and exits with status 143. On the CPU the malloc
settings above keep freed arrays in the heap; without them page faults move the medians by about 10%.
Method and results: docs/status/gan.md, "Speed".
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import signal
import statistics
import sys
import time
from typing import Dict, List, Optional

import numpy

import chainer_va  # noqa: F401  (the compat layer before chainer)
import chainer
import chainer.functions as F
from chainer_va import train, updaters
from chainer_va.device import add_device_argument, get_device

BASE = "none"
CONTROL = "none (control)"
STOPPED_STATUS = 128 + signal.SIGTERM


def _synchronize(device) -> None:
    if device.xp is not numpy:
        device.xp.cuda.Stream.null.synchronize()


class Stopped(Exception):
    """A SIGTERM arrived (``timeout`` stops a capped part with one)."""


@contextlib.contextmanager
def stop_on_sigterm():
    """Turn SIGTERM into :class:`Stopped` inside the block, so that what was measured can be printed."""
    def handler(signum, frame):
        raise Stopped()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class NetworkCache:
    """Networks initialised once per process and handed out as copies, with the same weights.

    Patches ``train.make_generator``, ``make_discriminator`` and ``make_denoiser`` while :meth:`active`.
    A network is keyed by its role, shape and the state of the seeded ``rng`` it draws its weights from
    (so ``ent``'s r_data, made after r_fake, is not confused with a denoiser made first); a copy leaves
    that state as making the network would have. So every configuration starts from exactly the weights
    an uncached ``train.build_updater`` would give it (a test compares them).
    """

    def __init__(self):
        self._networks: Dict[tuple, tuple] = {}
        self.made = 0
        self.copied = 0

    @staticmethod
    def _rng_state(rng: numpy.random.RandomState) -> str:
        name, keys, pos, has_gauss, cached = rng.get_state()
        return hashlib.sha1(keys.tobytes() + repr((name, pos, has_gauss, cached)).encode()).hexdigest()

    @staticmethod
    def _shape(role: str, config: dict, rest: tuple) -> tuple:
        common = (config["width"], config["channels"], config["image_size"])
        if role == "generator":
            return common + (config["latent_dim"],)
        if role == "discriminator":
            return common + (train.updaters.get(config["objective"]).discriminator_class.__name__,)
        return (config["width"], tuple(rest[0]))  # denoiser: the feature shape

    def _wrap(self, role: str, make):
        def made(config, *rest):
            rng = rest[-1] if rest and isinstance(rest[-1], numpy.random.RandomState) else None
            if rng is None:  # a caller without a seeded state: nothing to reproduce, nothing to cache
                return make(config, *rest)
            key = (role, self._shape(role, config, rest), self._rng_state(rng))
            if key not in self._networks:
                link = make(config, *rest)
                self._networks[key] = (link, rng.get_state())
                self.made += 1
            else:
                rng.set_state(self._networks[key][1])
                self.copied += 1
            return self._networks[key][0].copy(mode="copy")  # the kept network stays on the host, untouched
        return made

    @contextlib.contextmanager
    def active(self):
        names = {"generator": "make_generator", "discriminator": "make_discriminator", "denoiser": "make_denoiser"}
        originals = {role: getattr(train, name) for role, name in names.items()}
        try:
            for role, name in names.items():
                setattr(train, name, self._wrap(role, originals[role]))
            yield self
        finally:
            for role, name in names.items():
                setattr(train, name, originals[role])

    def clear(self) -> None:
        self._networks.clear()


NETWORKS = NetworkCache()


class FreeDenoiser(chainer.Link):
    """r(f) = f + b (``F.bias`` over the feature channels): a stand-in for ent's r_fake that costs almost
    nothing, for the ``ent (r_fake free)`` row. Only a timing device: it denoises nothing."""

    def __init__(self, channels: int):
        super().__init__()
        with self.init_scope():
            self.b = chainer.Parameter(numpy.zeros(channels, numpy.float32))

    def forward(self, f):
        """f + b, b broadcast over the feature channels (axis 1)."""
        return F.bias(f, self.b, axis=1)


def free_fake_denoiser(updater, config: dict, device) -> None:
    """Replace ``updater``'s r_fake (with its optimizer, registered under the same name) by a
    :class:`FreeDenoiser`; r_fake's loss, backward, Adam step and noise draw stay in the step."""
    denoiser = updater.denoisers.get("fake")
    link = FreeDenoiser(updater.dis.feature_shape[0])
    link.to_device(device)
    denoiser.link = link
    denoiser.optimizer = updaters.make_adam(link, config["lr"], config["beta1"], config["beta2"],
                                            fused=config["adam"] == "fused")
    denoiser.forget()
    updater.require_denoiser("fake")  # registers the new optimizer under r_fake's name


def build(objective: str, anneal: str, images: numpy.ndarray, args, device, reuse: bool = True,
          adam: str = "fused", layers: str = "fused", losses: str = "fused", noise: str = "prefetch",
          backprop: str = "needed", free_r_fake: bool = False, cache: Optional[NetworkCache] = NETWORKS):
    """An updater for ``objective`` x ``anneal`` at the benchmark's size, warmed up (``args.warmup`` steps).

    ``reuse`` ... ``backprop`` switch the speed-ups off; ``free_r_fake`` puts a :class:`FreeDenoiser` in place
    of ent's r_fake; ``cache``: where its networks come from (None: initialised afresh, the same weights)."""
    flags = ["--objective", objective, "--anneal", anneal, "--width", str(args.width), "--batchsize",
             str(args.batchsize), "--iterations", "1000", "--n-critic", str(args.n_critic), "--seed", "0",
             "--adam", adam, "--layers", layers, "--losses", losses, "--noise", noise, "--backprop", backprop]
    if anneal != "none":
        flags += ["--lambda0", "1"]
    config = train.resolve_config(flags)
    config["channels"], config["image_size"] = images.shape[1], images.shape[2]
    with (cache.active() if cache is not None else contextlib.nullcontext()):
        updater = train.build_updater(config, images, device)
    if free_r_fake:
        free_fake_denoiser(updater, config, device)
    for _, denoiser in updater.denoisers.items():
        denoiser.reuse_reconstruction = reuse
    for _ in range(args.warmup):
        updater.update()
    _synchronize(device)
    return updater


def build_unoptimised(objective: str, anneal: str, images: numpy.ndarray, args, device, **kwargs):
    """:func:`build` with every speed-up of issue 8 off and type checks on every step: the step before them."""
    updater = build(objective, anneal, images, args, device, reuse=False, adam="chainer", layers="chainer",
                    losses="chainer", noise="inline", backprop="all", **kwargs)
    updater.check_types_every_step = True
    return updater


def clock_for(device):
    """The clock a benchmark on ``device`` reads: this process's CPU time on the CPU (other processes
    on a shared machine do not inflate it; with several BLAS threads it is their sum, i.e. the work
    done), wall time on a GPU (where the work is the device's, not this process's)."""
    return (time.process_time, "cpu_s") if device.xp is numpy else (time.perf_counter, "wall_s")


def finish_prefetch(step) -> None:
    """Wait for the noise ``step`` (an updater, or an object whose ``step`` has one) drew ahead in its
    background thread. On the CPU clock (this process's CPU time, every thread's) the draws then count in
    the step that started them, not in whichever configuration is timed next."""
    noise = getattr(step, "noise", None) or getattr(getattr(step, "step", None), "noise", None)
    for future in list(getattr(noise, "_ahead", ())):
        future.result()


def round_orders(names: List[str], rounds: int, seed: int = 0) -> List[List[str]]:
    """The order of each round: a seeded random permutation of ``names``, drawn afresh every round, so no
    configuration always runs first, or always right after the same one."""
    rng = numpy.random.RandomState(seed)
    return [[names[i] for i in rng.permutation(len(names))] for _ in range(rounds)]


def time_interleaved(steps: dict, repeat: int, device, times: Optional[dict] = None,
                     sync=None, seed: int = 0, on_round=None) -> dict:
    """Seconds per step of each entry of ``steps`` (anything with ``update()``), ``repeat`` rounds of one
    step each on :func:`clock_for`'s clock; returns (and fills ``times`` with) ``{name: [seconds per round]}``.

    Interleaving spreads drift in machine load over every configuration alike; a fresh random order each
    round (:func:`round_orders`) keeps the cost of a position, or of following a particular configuration
    (warm caches: a copy run right after its original measured 4% faster on the CPU), off any one of them.
    Only complete rounds are kept, so ``times`` is usable after an interrupt (:class:`Stopped`). ``sync``
    runs after each step (default: the device's synchronize); on the CPU each step also waits for the noise
    it prefetched (:func:`finish_prefetch`). ``on_round`` gets the number of finished rounds.
    """
    clock, _ = clock_for(device)
    sync = sync or (lambda: _synchronize(device))
    settle = finish_prefetch if device.xp is numpy else (lambda step: None)
    times = {name: [] for name in steps} if times is None else times
    for name in steps:
        times.setdefault(name, [])
    for order in round_orders(list(steps), repeat, seed):
        this_round = {}
        for name in order:
            start = clock()
            steps[name].update()
            sync()
            settle(steps[name])
            this_round[name] = clock() - start
        for name, seconds in this_round.items():  # a round counts once it is complete
            times[name].append(seconds)
        if on_round is not None:
            on_round(len(times[order[0]]))
    return times


def paired_ratios(values: List[float], base: List[float]) -> numpy.ndarray:
    """Per-round ratios ``values[r] / base[r]`` (the rounds both finished)."""
    n = min(len(values), len(base))
    return numpy.asarray(values[:n], dtype=float) / numpy.asarray(base[:n], dtype=float)


def bootstrap_median_interval(ratios, level: float = 0.9, resamples: int = 2000, seed: int = 0) -> tuple:
    """A percentile-bootstrap ``level`` interval of the median of ``ratios`` (resampling rounds, seeded)."""
    ratios = numpy.asarray(ratios, dtype=float)
    if len(ratios) == 0:
        return float("nan"), float("nan")
    rng = numpy.random.RandomState(seed)
    medians = numpy.median(ratios[rng.randint(0, len(ratios), (resamples, len(ratios)))], axis=1)
    tail = 100 * (1 - level) / 2
    return float(numpy.percentile(medians, tail)), float(numpy.percentile(medians, 100 - tail))


def summarise(times: dict, base: str, seed: int = 0) -> Dict[str, dict]:
    """Per configuration: median, minimum, ratio of medians to ``base``, median paired ratio and its
    bootstrap 90% interval (seeded)."""
    base_median = statistics.median(times[base])
    out = {}
    for name, values in times.items():
        if not values:
            continue
        ratios = paired_ratios(values, times[base])
        low, high = bootstrap_median_interval(ratios, seed=seed)
        out[name] = dict(median=statistics.median(values), min=min(values), rounds=len(values),
                         ratio=statistics.median(values) / base_median, paired=float(numpy.median(ratios)),
                         low=low, high=high)
    return out


COLUMNS = "{:>10} {:>10} {:>13} {:>9} {:>8} {:>8}"
ROW = "{:>10.5f} {:>10.5f} {:>13.3f} {:>9.3f} {:>8.3f} {:>8.3f}"


def header(unit: str, base: str) -> str:
    """Column names of :func:`row` (``paired``: median of per-round ratios; p05/p95: its bootstrap 90% interval)."""
    u = unit.split("_")[0]
    return COLUMNS.format("median_" + u, "min_" + u, "ratio_" + base, "paired", "p05", "p95")


def row(stats: dict) -> str:
    return ROW.format(stats["median"], stats["min"], stats["ratio"], stats["paired"], stats["low"], stats["high"])


def configurations(objective: str, args) -> list:
    """(row name, :func:`build` settings) of every configuration timed for ``objective``, baseline first."""
    anneals = [a for a in args.anneal.split(",") if a and a != "none"]
    plan = [(BASE, dict(anneal="none")), (CONTROL, dict(anneal="none"))]
    plan += [(a, dict(anneal=a)) for a in anneals]
    # each speed-up's before/after, then all of them off
    if objective == "jsd":
        plan.append(("none (chainer Adam)", dict(anneal="none", adam="chainer")))
    plan.append(("none (chainer layers)", dict(anneal="none", layers="chainer")))
    plan.append(("none (chainer losses)", dict(anneal="none", losses="chainer")))
    plan.append(("none (backprop all)", dict(anneal="none", backprop="all")))
    if "ent" in anneals:
        plan.append(("ent (chainer losses)", dict(anneal="ent", losses="chainer")))
        plan.append(("ent (r_fake free)", dict(anneal="ent", free_r_fake=True)))
    noisy = "none" if objective == "jsd" else (anneals[0] if anneals else None)  # draws denoiser noise
    if noisy:
        plan.append(("{} (noise inline)".format(noisy), dict(anneal=noisy, noise="inline")))
    if objective == "jsd" and "lik" in anneals:
        plan.append(("lik (r recomputed)", dict(anneal="lik", reuse=False)))
    plan.append(("none (all speed-ups off)", dict(anneal="none", unoptimised=True)))
    return plan


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_argument(parser)
    parser.add_argument("--width", type=float, default=1.0, help="network width multiplier (1.0 = paper)")
    parser.add_argument("--batchsize", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (steps per configuration)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--n-critic", type=int, default=5, help="wgan critic steps per step (5)")
    parser.add_argument("--objectives", default="jsd,rkl,wgan")
    parser.add_argument("--anneal", default="lik,ent,lgan", help="terms compared with --anneal none")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rounds' orders and the bootstrap intervals")
    parser.add_argument("--progress", type=int, default=0, metavar="N",
                        help="print '# OBJECTIVE: K rounds done' every N rounds (0: never)")
    args = parser.parse_args(argv)
    device = get_device(args.device)
    images = numpy.random.RandomState(0).uniform(
        -1, 1, (max(4 * args.batchsize * args.n_critic, 256), 3, 32, 32)).astype(numpy.float32)
    _, unit = clock_for(device)
    print("device {}, width {}, batch {}, {} rounds (one step per configuration, in a random order each round) after "
          "{} warm-up; {} per step".format(device, args.width, args.batchsize, args.repeat, args.warmup, unit))
    print("{:<8} {:<26} {}".format("objective", "anneal", header(unit, BASE)))
    with stop_on_sigterm():
        for objective in args.objectives.split(","):
            updaters, times, state = {}, {}, "building"
            try:
                start, made, copied = time.perf_counter(), NETWORKS.made, NETWORKS.copied
                for name, spec in configurations(objective, args):
                    spec = dict(spec)
                    anneal = spec.pop("anneal")
                    maker = build_unoptimised if spec.pop("unoptimised", False) else build
                    updaters[name] = maker(objective, anneal, images, args, device, **spec)
                print("# {}: {} configurations built and warmed up in {:.1f} s ({} networks initialised, {} "
                      "copied); timing {} rounds".format(objective, len(updaters), time.perf_counter() - start,
                                                         NETWORKS.made - made, NETWORKS.copied - copied,
                                                         args.repeat), flush=True)
                state = "timing"
                time_interleaved(updaters, args.repeat, device, times, seed=args.seed,
                                 on_round=_progress_printer(objective, args.progress))
                state = "printing"
                _print_rows(objective, times, args.seed)
            except Stopped:
                done = len(times.get(BASE, ()))
                print("# {}: stopped by SIGTERM while {} ({} configurations built, {} of {} rounds done)".format(
                    objective, state, len(updaters), done, args.repeat), flush=True)
                if done and state == "timing":
                    _print_rows(objective, times, args.seed)
                return STOPPED_STATUS
            finally:
                del updaters
    return 0


def _progress_printer(objective: str, every: int):
    """``on_round`` for :func:`time_interleaved` that prints a progress line every ``every`` rounds (0: none)."""
    def on_round(done: int) -> None:
        if every > 0 and done % every == 0:
            print("# {}: {} rounds done".format(objective, done), flush=True)
    return on_round


def _print_rows(objective: str, times: dict, seed: int) -> None:
    for name, stats in summarise(times, BASE, seed).items():
        print("{:<8} {:<26} {}".format(objective, name, row(stats)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
