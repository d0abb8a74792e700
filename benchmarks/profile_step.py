"""Where one training step's time goes: per network and phase, per Chainer function, and on a GPU per kernel.

    python benchmarks/profile_step.py --device -1 --width 0.5 --anneal none,lik,ent        # CPU
    python benchmarks/profile_step.py --device -1 --width 0.03125 --anneal none            # host floor
    python benchmarks/profile_step.py --device 0 --anneal none,ent --kernels               # GPU (+ torch)

Issue 8's profile. A ``FunctionHook`` times every function node's forward and backward, charged to the
network (``gen``, ``dis``, ``denoiser_*``: a ``LinkHook``) that created the node; each optimizer update
is its network's ``update`` phase, the host's random draws the ``sampling`` row (with ``--noise
prefetch`` only what the step still waits for), the real batch the ``data`` row, and the rest ``other``.
Times are exclusive and on the host clock: compute time on the CPU, dispatch time on a GPU. With
``--kernels`` on a GPU, ``torch.profiler`` also counts the kernels per step and the GPU's busy time
(:func:`trace_kernels`). A width far below 1 leaves only the host's per-node cost, the floor under any
device's step time. Method and results: docs/status/gan.md, "Where a step's time goes".
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy

import chainer_va  # noqa: F401  (the compat layer before chainer)
import chainer
from chainer_va import latent as latent_module, speedups
from va_core import runinfo
from chainer_va.device import add_device_argument, get_device

import step_time  # benchmarks/ is the script's own folder

OTHER = "other"  # time in a step outside every timed node and optimizer update
LOSSES = "losses"  # nodes created outside the named networks (loss arithmetic)
BACKWARD_SUFFIX = ".backward"  # a node's backward call; the nodes it applies are listed by their own names
SAMPLING = "sampling"  # host-side random draws (latent z, denoiser noise, WGAN-GP's u)
DATA = "data"  # the real batch: iterator, stacking, copy to the device
HOST = "host"  # their phase
#: (class, method) of the host-side random draws timed as the ``sampling`` row
SAMPLERS = ((latent_module.LatentSampler, "__call__"), (latent_module.NoiseSource, "normal"),
            (latent_module.NoiseSource, "uniform"))
STEP_ANNOTATION = "va_profile_step"  # the torch.profiler range around each traced step


class StepProfile:
    """Exclusive host seconds and call counts per (network, phase, function), accumulated over steps."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.seconds: Dict[Tuple[str, str, str], float] = collections.defaultdict(float)
        self.calls: Dict[Tuple[str, str, str], int] = collections.defaultdict(int)
        self.step_seconds: List[float] = []
        self._networks: List[str] = []  # the named links being called, innermost last
        self._frames: List[list] = []  # [network, phase, function, start, seconds of nested frames]

    # -- frames ------------------------------------------------------------------------------------
    def current_network(self) -> str:
        """The label a node created now gets: the enclosing backward's, else the innermost named link's."""
        for frame in reversed(self._frames):
            if frame[1] == "backward":
                return frame[0]
        return self._networks[-1] if self._networks else LOSSES

    def in_backward(self) -> bool:
        return any(frame[1] == "backward" for frame in self._frames)

    def push(self, network: str, phase: str, function: str) -> None:
        self._frames.append([network, phase, function, self.clock(), 0.0])

    def pop(self) -> None:
        network, phase, function, start, nested = self._frames.pop()
        elapsed = self.clock() - start
        key = (network, phase, function)
        self.seconds[key] += elapsed - nested
        self.calls[key] += 1
        if self._frames:
            self._frames[-1][4] += elapsed

    # -- summaries ---------------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return len(self.step_seconds)

    def other_seconds(self) -> float:
        """Step time not inside any timed node, update, draw or batch (graph bookkeeping, copies, reports)."""
        return sum(self.step_seconds) - sum(self.seconds.values())

    def by(self, *fields: str) -> Dict[tuple, Tuple[float, float]]:
        """(seconds per step, calls per step) grouped by some of ``network``, ``phase``, ``function``."""
        index = [("network", "phase", "function").index(f) for f in fields]
        out: Dict[tuple, list] = collections.defaultdict(lambda: [0.0, 0.0])
        for key, seconds in self.seconds.items():
            group = tuple(key[i] for i in index)
            out[group][0] += seconds / self.steps
            out[group][1] += self.calls[key] / self.steps
        return {k: (v[0], v[1]) for k, v in out.items()}

    def node_calls_per_step(self) -> Dict[str, float]:
        """Per step: nodes applied (forward, and inside backward passes) and backward calls of nodes."""
        counts = {"applied": 0.0, "backward": 0.0}
        for (_, phase, function), calls in self.calls.items():
            if phase in ("forward", "backward"):
                counts["backward" if function.endswith(BACKWARD_SUFFIX) else "applied"] += calls / self.steps
        return counts


class _FunctionTimer(chainer.FunctionHook):
    name = "VAStepProfile"

    def __init__(self, profile: StepProfile):
        self.profile = profile

    def forward_preprocess(self, function, in_data):
        p = self.profile
        network = p.current_network()
        function._va_profile_network = network  # its backward is charged to the same network
        p.push(network, "backward" if p.in_backward() else "forward", function.label)

    def forward_postprocess(self, function, in_data):
        self.profile.pop()

    def backward_preprocess(self, function, in_data, out_grad):
        network = getattr(function, "_va_profile_network", LOSSES)
        self.profile.push(network, "backward", function.label + BACKWARD_SUFFIX)

    def backward_postprocess(self, function, in_data, out_grad):
        self.profile.pop()


class _NetworkLabel(chainer.LinkHook):
    name = "VAStepProfileNetwork"

    def __init__(self, profile: StepProfile, network: str):
        self.profile = profile
        self.network = network

    def forward_preprocess(self, args):
        self.profile._networks.append(self.network)

    def forward_postprocess(self, args):
        self.profile._networks.pop()


def _timed(profile: StepProfile, network: str, phase: str, function: str, call):
    def timed(*args, **kwargs):
        profile.push(network, phase, function)
        try:
            return call(*args, **kwargs)
        finally:
            profile.pop()
    return timed


def profile_steps(updater, steps: int, device, profile: Optional[StepProfile] = None) -> StepProfile:
    """Run ``steps`` updates of ``updater`` under the hooks; the hooks and wrappers are removed afterwards."""
    profile = profile or StepProfile()
    wrapped, patched = [], []
    try:
        for cls, method in SAMPLERS:  # on the class: ``z = self.latent(n)`` looks ``__call__`` up there
            original = cls.__dict__[method]
            setattr(cls, method, _timed(profile, SAMPLING, HOST, "{}.{}".format(cls.__name__, method), original))
            patched.append((cls, method, original))
        updater.real_batch = _timed(profile, DATA, HOST, "real_batch", updater.real_batch)
        for name, optimizer in updater.get_all_optimizers().items():  # the step's top-level links: gen, dis, ...
            optimizer.target.add_hook(_NetworkLabel(profile, name))
            # an instance attribute over the class's method
            optimizer.update = _timed(profile, name, "update", "optimizer", optimizer.update)
            wrapped.append(optimizer)
        with _FunctionTimer(profile):
            for _ in range(steps):
                start = profile.clock()
                updater.update()
                step_time._synchronize(device)
                profile.step_seconds.append(profile.clock() - start)
    finally:
        for optimizer in wrapped:
            optimizer.target.delete_hook(_NetworkLabel.name)
            del optimizer.update  # the class's method shows through again
        vars(updater).pop("real_batch", None)
        for cls, method, original in patched:
            setattr(cls, method, original)
    return profile


def time_plain_steps(updater, steps: int, device, clock=time.perf_counter) -> List[float]:
    """Seconds per step without any hook (the hooks' own cost is the difference)."""
    times = []
    for _ in range(steps):
        start = clock()
        updater.update()
        step_time._synchronize(device)
        times.append(clock() - start)
    return times


def busy_time(intervals: Iterable[Tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals (kernels on several streams may overlap)."""
    total, end_so_far = 0.0, None
    for start, end in sorted(intervals):
        if end_so_far is None or start > end_so_far:
            total += end - start
            end_so_far = end
        elif end > end_so_far:
            total += end - end_so_far
            end_so_far = end
    return total


def step_windows(trace_events: Iterable[dict], name: str = STEP_ANNOTATION) -> List[Tuple[float, float]]:
    """The ``(start, end)`` microseconds of the host-side ranges named ``name`` (one per traced step), in order."""
    return sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in trace_events
                  if e.get("ph") == "X" and e.get("cat") == "user_annotation" and e.get("name") == name)


def kernel_summary(trace_events: Iterable[dict], windows: Optional[List[Tuple[float, float]]] = None) -> dict:
    """Kernels, their summed and busy (union) microseconds, and memcpy/memset counts in a Chrome trace;
    with the steps' ``windows`` (synchronised at their end), ``per_step`` counts the kernels started in each."""
    trace_events = list(trace_events)
    kernels = [e for e in trace_events if e.get("ph") == "X" and e.get("cat") == "kernel"]
    copies = [e for e in trace_events if e.get("ph") == "X" and e.get("cat") in ("gpu_memcpy", "gpu_memset")]
    out = dict(kernels=len(kernels), kernel_us=sum(float(e["dur"]) for e in kernels),
               busy_us=busy_time((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in kernels + copies),
               copies=len(copies))
    if windows is not None:
        out["per_step"] = [sum(start <= float(e["ts"]) <= end for e in kernels) for start, end in windows]
    return out


def trace_kernels(updater, steps: int, device) -> dict:
    """Kernels per step and GPU busy time vs wall time over ``steps`` updates, through torch.profiler (each
    step in a ``record_function`` range, synchronised at its end, so that its kernels can be counted)."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step_time._synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            with record_function(STEP_ANNOTATION):
                updater.update()
                step_time._synchronize(device)
        wall = time.perf_counter() - start
    torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f).get("traceEvents", [])
    summary = kernel_summary(events, step_windows(events))
    return dict(steps=steps, wall_ms=1e3 * wall / steps, kernels=summary["kernels"] / steps,
                kernel_ms=summary["kernel_us"] / 1e3 / steps, busy_ms=summary["busy_us"] / 1e3 / steps,
                copies=summary["copies"] / steps, per_step=summary["per_step"])


def kernel_lines(k: dict, plain_step_ms: float, node_calls: Dict[str, float]) -> List[str]:
    """The printed account of :func:`trace_kernels`' numbers: busy share of the traced and of the
    untraced step, and the sanity line (kernels vs node calls per step, steady count or not)."""
    lines = ["kernels: {:.0f} per step, {:.2f} ms of kernel time, GPU busy {:.2f} ms of a {:.2f} ms traced step "
             "({:.0f}%) and of the untraced median step of {:.2f} ms ({:.0f}%), {:.0f} copies/sets".format(
                 k["kernels"], k["kernel_ms"], k["busy_ms"], k["wall_ms"], 100 * k["busy_ms"] / k["wall_ms"],
                 plain_step_ms, 100 * k["busy_ms"] / plain_step_ms, k["copies"])]
    nodes = node_calls["applied"] + node_calls["backward"]
    per_step = k.get("per_step") or []
    if not per_step:
        steady = "no per-step ranges in the trace"
    elif len(per_step) != k["steps"]:
        steady = "{} per-step ranges for {} steps: {}".format(len(per_step), k["steps"], per_step)
    else:
        steady = "{} in every traced step".format(per_step[0]) if len(set(per_step)) == 1 else \
            "NOT steady: {} per traced step".format(", ".join(str(n) for n in per_step))
    lines.append("sanity: {:.0f} kernels per step for {:.0f} function-node calls per step ({:.0f} applied + {:.0f} "
                 "backward): {:.2f} kernels per node call; kernel count {}".format(
                     k["kernels"], nodes, node_calls["applied"], node_calls["backward"],
                     k["kernels"] / nodes if nodes else float("nan"), steady))
    return lines


def report(name: str, profile: StepProfile, plain: List[float], top: int) -> dict:
    """Print one configuration's tables; return its numbers (for ``--out``)."""
    step = statistics.mean(profile.step_seconds)
    plain_step = statistics.median(plain) if plain else float("nan")
    nodes = profile.node_calls_per_step()
    print("\n== {}: {:.1f} ms per step without hooks (median of {}), {:.1f} ms with (mean of {}); per step "
          "{:.0f} function nodes applied and {:.0f} backward calls".format(
              name, 1e3 * plain_step, len(plain), 1e3 * step, profile.steps, nodes["applied"], nodes["backward"]))
    print("{:<16} {:<9} {:>10} {:>10} {:>7}".format("network", "phase", "calls", "ms", "share"))
    rows = sorted(profile.by("network", "phase").items(), key=lambda kv: -kv[1][0])
    for (network, phase), (seconds, calls) in rows:
        print("{:<16} {:<9} {:>10.1f} {:>10.2f} {:>6.1f}%".format(network, phase, calls, 1e3 * seconds,
                                                                  100 * seconds / step))
    other = profile.other_seconds() / profile.steps
    print("{:<16} {:<9} {:>10} {:>10.2f} {:>6.1f}%   (includes the hooks' own cost)".format(
        OTHER, "", "", 1e3 * other, 100 * other / step))
    print("top functions (all networks; NAME.backward = the backward call itself, outside the nodes it applies):")
    functions = collections.defaultdict(lambda: [0.0, 0.0])
    for (function, phase), (seconds, calls) in profile.by("function", "phase").items():
        if phase in ("forward", "backward"):
            functions[function][0] += seconds
            functions[function][1] += calls
    for function, (seconds, calls) in sorted(functions.items(), key=lambda kv: -kv[1][0])[:top]:
        print("  {:<32} {:>8.1f} calls {:>10.2f} ms {:>6.1f}%".format(function, calls, 1e3 * seconds,
                                                                     100 * seconds / step))
    return dict(name=name, step_ms=1e3 * step, plain_step_ms=1e3 * plain_step, node_calls=nodes,
                other_ms=1e3 * other,
                rows=[dict(network=n, phase=p, calls=c, ms=1e3 * s) for (n, p), (s, c) in rows])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_argument(parser)
    parser.add_argument("--objective", default="jsd")
    parser.add_argument("--anneal", default="none,lik,ent", help="comma-separated annealing terms")
    parser.add_argument("--width", type=float, default=1.0, help="network width multiplier (1.0 = paper)")
    parser.add_argument("--batchsize", type=int, default=64)
    parser.add_argument("--n-critic", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="profiled steps (and as many plain ones)")
    parser.add_argument("--top", type=int, default=8, help="functions listed")
    parser.add_argument("--kernels", action="store_true",
                        help="GPU only: also count kernels and GPU busy time with torch.profiler")
    parser.add_argument("--out", default=None, help="also write the numbers as JSON here (after each term)")
    speedups.add_flags(parser.add_argument)  # as train's: the second choice profiles the step without it
    args = parser.parse_args(argv)
    device = get_device(args.device)
    images = numpy.random.RandomState(0).uniform(
        -1, 1, (max(4 * args.batchsize * args.n_critic, 256), 3, 32, 32)).astype(numpy.float32)
    print("device {}, {}, width {}, batch {}, noise {}; host clock (on a GPU: dispatch time, kernels run "
          "asynchronously)".format(device, args.objective, args.width, args.batchsize, args.noise))
    results = []
    for anneal in [a for a in args.anneal.split(",") if a]:
        updater = step_time.build(args.objective, anneal, images, args, device, adam=args.adam,
                                  layers=args.layers, losses=args.losses, noise=args.noise,
                                  backprop=args.backprop)
        plain, profile = [], StepProfile()
        for _ in range(args.steps):  # interleaved, so drift in machine load hits both equally
            plain += time_plain_steps(updater, 1, device)
            profile_steps(updater, 1, device, profile)
        result = report("{} + {}".format(args.objective, anneal), profile, plain, args.top)
        if args.kernels:
            if device.xp is numpy:
                print("--kernels: the CPU launches no kernels; skipped")
            else:
                try:
                    k = trace_kernels(updater, args.steps, device)
                except ImportError:
                    print("--kernels needs torch (pip install -e .[crosscheck]); skipped")
                else:
                    result["kernels"] = k
                    if k["kernels"] == 0:
                        print("kernels: torch.profiler recorded none (CUPTI did not see this process's "
                              "kernels); no kernel numbers")
                    else:
                        for line in kernel_lines(k, result["plain_step_ms"], result["node_calls"]):
                            print(line)
        results.append(result)
        del updater
        if args.out:  # after every configuration: a part stopped by its time cap keeps what it measured
            runinfo.atomic_write_text(Path(args.out), json.dumps(
                dict(device=str(device), width=args.width, results=results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
