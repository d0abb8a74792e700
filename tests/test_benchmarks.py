"""The benchmark scripts run and print what they promise, and the pieces their numbers rest on are right:
the networks every configuration starts from, the order and pairing of rounds, the PyTorch twin's step,
the common window of concurrent runs, the profiler's rows, the GPU session's caps (tiny sizes; timings
themselves are not asserted)."""
import argparse
import copy
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _load(name):
    """A benchmark script as a module; its siblings import by name, as when run as a script."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("bench_" + name, BENCHMARKS / (name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def _rows(text, numbers):
    """(name, [numbers]) of the table rows in ``text``: lines ending in ``numbers`` numbers, not comments."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) <= numbers or line.startswith("#"):
            continue
        try:
            values = [float(p) for p in parts[-numbers:]]
        except ValueError:
            continue
        rows.append((" ".join(parts[:-numbers]), values))
    return rows


def _tiny_args(**kwargs):
    return argparse.Namespace(**{**dict(width=0.0625, batchsize=4, n_critic=1, warmup=0), **kwargs})


def _images(n=16):
    return numpy.random.RandomState(0).uniform(-1, 1, (n, 3, 32, 32)).astype(numpy.float32)


def _arrays(link):
    """Every parameter and persistent array of ``link`` (host copies), by path."""
    out = {path: numpy.asarray(p.array).copy() for path, p in link.namedparams()}
    for path, sub in link.namedlinks():
        for name in sub._persistent:
            out[path.rstrip("/") + "/" + name] = numpy.asarray(getattr(sub, name)).copy()
    return out


def _assert_same_networks(a, b):
    assert sorted(a.get_all_optimizers()) == sorted(b.get_all_optimizers())
    for name, optimizer in a.get_all_optimizers().items():
        link, other = optimizer.target, b.get_optimizer(name).target
        assert type(link) is type(other) and getattr(link, "fused", None) == getattr(other, "fused", None), name
        arrays, others = _arrays(link), _arrays(other)
        assert sorted(arrays) == sorted(others), name
        for path in arrays:
            numpy.testing.assert_array_equal(arrays[path], others[path], err_msg=name + path)


# -- step_time -------------------------------------------------------------------------------------------

def test_step_time_prints_a_paired_ratio_per_configuration_with_a_control_row(capsys):
    step_time = _load("step_time")
    assert step_time.main(["--device", "-1", "--width", "0.0625", "--batchsize", "4", "--repeat", "3",
                           "--objectives", "jsd,rkl", "--anneal", "lik,ent"]) == 0
    text = capsys.readouterr().out
    rows = _rows(text, 6)
    names = [name for name, _ in rows]
    assert names == ["jsd none", "jsd none (control)", "jsd lik", "jsd ent", "jsd none (chainer Adam)",
                     "jsd none (chainer layers)", "jsd none (chainer losses)", "jsd none (backprop all)",
                     "jsd ent (chainer losses)", "jsd ent (r_fake free)", "jsd none (noise inline)",
                     "jsd lik (r recomputed)",
                     "jsd none (all speed-ups off)",
                     "rkl none", "rkl none (control)", "rkl lik", "rkl ent", "rkl none (chainer layers)",
                     "rkl none (chainer losses)", "rkl none (backprop all)", "rkl ent (chainer losses)",
                     "rkl ent (r_fake free)", "rkl lik (noise inline)", "rkl none (all speed-ups off)"]
    values = dict(rows)
    for base in ("jsd none", "rkl none"):
        median, minimum, ratio, paired, low, high = values[base]
        assert ratio == paired == low == high == 1.0 and minimum <= median
    for name, (median, minimum, ratio, paired, low, high) in rows:
        base_median = values[name.split()[0] + " none"][0]
        assert ratio == pytest.approx(median / base_median, rel=2e-3, abs=1e-3), name
        assert 0 < low <= paired <= high < 100, name
    # each objective's networks are initialised once: jsd's G, D and two denoisers (ent's r_data comes
    # second), then rkl's are all copies of them
    assert re.search(r"# jsd: 13 configurations built .* \(4 networks initialised", text)
    assert re.search(r"# rkl: 11 configurations built .* \(0 networks initialised", text)


@pytest.mark.parametrize("objective, anneal, kwargs", [
    ("jsd", "none", {}), ("jsd", "ent", {}), ("jsd", "lik", dict(layers="chainer")),
    ("rkl", "lik", dict(noise="inline")), ("wgan", "ent", dict(losses="chainer"))])
def test_every_configuration_starts_from_the_weights_an_uncached_build_gives(objective, anneal, kwargs):
    step_time = _load("step_time")
    cache = step_time.NetworkCache()
    args, images, device = _tiny_args(), _images(), _device()
    for warm in ("jsd", "wgan"):  # fill the cache with other configurations' networks first
        step_time.build(warm, "ent", images, args, device, cache=cache)
    made = cache.made
    cached = step_time.build(objective, anneal, images, args, device, cache=cache, **kwargs)
    assert cache.made == made  # nothing new to initialise: G, D and both denoiser positions are known
    fresh = step_time.build(objective, anneal, images, args, device, cache=None, **kwargs)
    _assert_same_networks(cached, fresh)
    # a second copy has its own arrays: a step of one leaves the other at the initial weights
    other = step_time.build(objective, anneal, images, args, device, cache=cache, **kwargs)
    cached.update()
    _assert_same_networks(other, fresh)


def test_ent_gets_distinct_denoisers_from_the_cache():
    step_time = _load("step_time")
    updater = step_time.build("jsd", "ent", _images(), _tiny_args(), _device(), cache=step_time.NetworkCache())
    data, fake = updater.denoisers.get("data").link, updater.denoisers.get("fake").link
    assert not numpy.array_equal(data.l0.W.array, fake.l0.W.array)  # made second and first after D


def test_the_free_r_fake_row_trains_a_bias_in_place_of_the_second_denoiser_once_per_step():
    step_time = _load("step_time")
    updater = step_time.build("jsd", "ent", _images(), _tiny_args(), _device(), free_r_fake=True,
                              cache=step_time.NetworkCache())
    fake = updater.denoisers.get("fake")
    assert type(fake.link) is step_time.FreeDenoiser
    assert updater.get_optimizer("denoiser_fake") is fake.optimizer and fake.optimizer.target is fake.link
    assert fake.link.b.shape == (updater.dis.feature_shape[0],)
    data_before = updater.denoisers.get("data").link.l0.W.array.copy()
    updater.update()
    # Adam's first step moves every element by lr (its gradient 2 mean(sigma eps + b) is nonzero)
    numpy.testing.assert_allclose(numpy.abs(fake.link.b.array), fake.optimizer.alpha, rtol=1e-3)
    assert not numpy.array_equal(updater.denoisers.get("data").link.l0.W.array, data_before)  # r_data still trains


def test_time_interleaved_shuffles_every_round_and_keeps_only_complete_rounds():
    step_time = _load("step_time")
    order = []

    class Step:
        def __init__(self, name, fail_at=None):
            self.name, self.calls, self.fail_at = name, 0, fail_at

        def update(self):
            self.calls += 1
            if self.calls == self.fail_at:
                raise step_time.Stopped()
            order.append(self.name)

    steps = {name: Step(name) for name in "ABCD"}
    times = step_time.time_interleaved(steps, 40, _device(), sync=lambda: None, seed=1)
    rounds = ["".join(order[i:i + 4]) for i in range(0, len(order), 4)]
    assert len(rounds) == 40 and all(sorted(r) == list("ABCD") for r in rounds)
    assert rounds == ["".join(o) for o in step_time.round_orders(list("ABCD"), 40, seed=1)]  # seeded
    assert {r[0] for r in rounds} == set("ABCD")  # every configuration sometimes runs first,
    assert {r[r.index("B") - 1] for r in rounds if r[0] != "B"} == set("ACD")  # and after each other one
    assert {name: len(v) for name, v in times.items()} == dict(A=40, B=40, C=40, D=40)
    order.clear()
    steps = {"A": Step("A"), "B": Step("B", fail_at=3), "C": Step("C")}
    partial = {}
    with pytest.raises(step_time.Stopped):
        step_time.time_interleaved(steps, 4, _device(), partial, sync=lambda: None)
    assert {name: len(v) for name, v in partial.items()} == dict(A=2, B=2, C=2)  # round 3 is dropped
    assert len(order) >= 6


def test_cpu_timing_waits_for_each_steps_prefetched_noise_before_the_next_step():
    import concurrent.futures

    step_time = _load("step_time")
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    seen = []

    sources = []

    class Step:  # an updater whose noise source draws ahead in a background thread, as with --noise prefetch
        def __init__(self):
            self.noise = argparse.Namespace(_ahead=[])
            sources.append(self.noise)

        def update(self):
            seen.append(all(f.done() for noise in sources for f in noise._ahead))
            self.noise._ahead = [executor.submit(time.sleep, 0.05)]

    class Twin:  # compare_torch's TorchStep: the source is one level down
        def __init__(self):
            self.step = Step()

        def update(self):
            self.step.update()

    steps = {"A": Step(), "B": Twin(), "C": Step(), "D": Twin()}
    step_time.time_interleaved(steps, 3, _device(), sync=lambda: None)
    executor.shutdown()
    assert len(seen) == 12 and all(seen)  # no step ran while another one's draws were still running


def test_summary_pairs_rounds_and_bootstraps_the_median_ratio():
    step_time = _load("step_time")
    base = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # load drifting upwards round by round
    slower = [1.1, 2.4, 3.3, 4.4, 5.0, 6.6, 7.7]  # 1.1 x the same round's baseline but for two rounds
    stats = step_time.summarise({"none": base, "x": slower}, "none", seed=3)
    assert stats["none"]["paired"] == stats["none"]["low"] == stats["none"]["high"] == 1.0
    x = stats["x"]
    assert x["paired"] == pytest.approx(1.1) and x["ratio"] == pytest.approx(4.4 / 4.0)
    assert x["median"] == 4.4 and x["min"] == 1.1 and x["rounds"] == 7
    assert 1.0 <= x["low"] <= 1.1 <= x["high"] <= 1.2
    assert step_time.summarise({"none": base, "x": slower}, "none", seed=3) == stats  # seeded
    ratios = numpy.random.RandomState(0).normal(1.0, 0.05, 200)
    low, high = step_time.bootstrap_median_interval(ratios)
    half = 1.645 * 1.2533 * 0.05 / numpy.sqrt(200)  # the median's standard error under a normal
    assert high - low == pytest.approx(2 * half, rel=0.35) and low < numpy.median(ratios) < high


def test_step_time_prints_the_finished_rounds_when_stopped_by_sigterm():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(BENCHMARKS / "step_time.py"), "--device", "-1", "--width", "0.03125",
                             "--batchsize", "2", "--repeat", "100000", "--objectives", "rkl", "--anneal", "lik",
                             "--progress", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    try:
        for line in proc.stdout:  # stop it once 3 rounds are done, however long they take
            lines.append(line)
            if line.startswith("# rkl: 3 rounds done"):
                break
        proc.send_signal(signal.SIGTERM)
        lines += proc.stdout.readlines()
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines)
    done = re.search(r"# rkl: stopped by SIGTERM while timing \(8 configurations built, (\d+) of 100000 rounds done",
                     text)
    assert done and int(done.group(1)) >= 3, text
    assert [name for name, _ in _rows(text, 6)][:3] == ["rkl none", "rkl none (control)", "rkl lik"]


# -- compare_torch and the PyTorch twin ------------------------------------------------------------------

def test_compare_torch_prints_precision_settings_and_ratios_to_pytorch(capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports torch_reference when it runs
    compare_torch = _load("compare_torch")
    assert compare_torch.main(["--device", "-1", "--width", "0.0625", "--batchsize", "4", "--repeat", "2",
                               "--warmup", "1", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    settings = [line for line in text.splitlines() if line.startswith("# torch settings:")]
    assert len(settings) == 1
    for key in ("float32_matmul_precision highest", "cuda.matmul.allow_tf32 False", "cudnn.allow_tf32 False",
                "cudnn.benchmark", "cudnn.version"):
        assert key in settings[0]
    rows = _rows(text, 6)
    assert [name for name, _ in rows] == ["pytorch", "pytorch (control)", "chainer", "chainer, per-parameter Adam",
                                          "chainer, unfused layers", "chainer, unfused losses", "chainer, backprop all",
                                          "chainer, no speed-ups"]
    torch_median = rows[0][1][0]
    for name, (median, minimum, ratio, paired, low, high) in rows:
        assert ratio == pytest.approx(median / torch_median, rel=2e-3, abs=1e-3), name
        assert low <= paired <= high, name


@pytest.mark.parametrize("width", [0.03125, 0.1, 0.3, 0.45])
def test_twin_has_chainers_parameter_counts(width):
    pytest.importorskip("torch")
    reference = _load("torch_reference")
    from chainer_va import nets

    dis = nets.DFMDiscriminator(width=width)
    chainer_nets = [nets.Generator(width=width), dis, nets.Denoiser(dis.feature_shape, width=width)]
    twin_dis = reference.Discriminator(width)
    twin_nets = [reference.Generator(width), twin_dis, reference.Denoiser(twin_dis.feature_shape, width)]
    assert [reference.count_parameters(n) for n in twin_nets] == [nets.count_parameters(n) for n in chainer_nets]
    if width == 0.3:  # scaled(2048, 0.3) = 614 hidden units, 4 * scaled(512, 0.3) = 616 features
        assert nets.count_parameters(chainer_nets[2]) == 3789610


def test_twin_step_is_the_chainer_jsd_step():
    """Same weights and inputs: the twin's losses, gradients and BN statistics are Chainer's (its G and D
    both from one forward pass, two D forwards, r in inference mode for DFM's term)."""
    pytest.importorskip("torch")
    import torch

    torch.set_num_threads(1)
    reference = _load("torch_reference")
    step_time = _load("step_time")
    from chainer_va.latent import NoiseSource

    images = _images(32)
    updater = step_time.build("jsd", "none", images, _tiny_args(batchsize=8), _device())
    twin = reference.DFMStep(width=0.0625, batchsize=8, images=images)
    pairs = [(twin.gen, updater.gen), (twin.dis, updater.dis), (twin.denoiser, updater.denoisers.get("data").link)]
    for module, link in pairs:
        reference.load_chainer_weights(module, link)
    for step in range(2):
        iterator = copy.deepcopy(updater.get_iterator("main"))
        twin.real_batch = lambda: numpy.stack(iterator.next())
        twin.latent.random_state = copy.deepcopy(updater.latent.random_state)
        twin.noise = NoiseSource(0)  # drawing inline from where Chainer's prefetching source logically is
        twin.noise.random_state.set_state(updater.noise.logical_state())
        observed = {}
        import chainer

        reporter = chainer.Reporter()
        with reporter.scope(observed):
            updater.update()
        losses = twin()
        assert twin.d_forwards == 2 * (step + 1)
        for name, value in losses.items():
            assert value == pytest.approx(float(observed[name].array), rel=1e-4), (step, name)
        for module, link in pairs:
            grads = dict(module.named_parameters())
            compared = [(p.grad, grads[_torch_name(reference, path)].grad.numpy()) for path, p in link.namedparams()]
            scale = max(numpy.abs(g).max() for g, _ in compared)
            assert max(numpy.abs(g - t).max() for g, t in compared) < 1e-4 * scale
            buffers = dict(module.named_buffers())
            for path, sub in link.namedlinks():
                for name in set(sub._persistent) - {"N"}:
                    key = _torch_name(reference, path.rstrip("/") + "/" + name)
                    numpy.testing.assert_allclose(getattr(sub, name), buffers[key].numpy(), rtol=1e-3, atol=1e-5,
                                                  err_msg=key)
        for module, link in pairs:  # next step from the same weights again (Adam's sign-like first steps
            reference.load_chainer_weights(module, link)  # flip on rounding-level gradients)


def _torch_name(reference, path):
    *layers, name = path.strip("/").split("/")
    return ".".join(layers + [reference._CHAINER_NAMES[name]])


def test_twin_refuses_unknown_sampling_and_can_sample_on_the_device():
    pytest.importorskip("torch")
    reference = _load("torch_reference")
    with pytest.raises(ValueError, match="sampling"):
        reference.DFMStep(width=0.03125, batchsize=2, sampling="gpu")
    twin = reference.DFMStep(width=0.03125, batchsize=2, sampling="device")
    state = twin.latent.random_state.get_state()[1].copy()
    twin()
    assert numpy.array_equal(state, twin.latent.random_state.get_state()[1])  # the host generator was not used
    assert twin.d_forwards == 2


# -- optimizer_update --------------------------------------------------------------------------------------

def test_optimizer_update_benchmark_counts_arrays_and_prints_the_ratio(capsys):
    optimizer_update = _load("optimizer_update")
    assert optimizer_update.main(["--device", "-1", "--width", "0.0625", "--repeat", "2"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[0] for r in rows] == ["generator", "discriminator", "denoiser"]
    nets = optimizer_update.networks(0.0625)
    for row in rows:
        params = list(nets[row[0]].params())
        assert int(row[1]) == len(params) and int(row[2]) == sum(p.size for p in params)
        assert float(row[5]) == pytest.approx(float(row[4]) / float(row[3]), abs=0.01)


# -- concurrency -------------------------------------------------------------------------------------------

def test_concurrency_benchmark_reports_rates_over_the_common_window(capsys):
    concurrency = _load("concurrency")
    assert concurrency.main(["--device", "-1", "--runs", "2", "--width", "0.0625", "--batchsize", "4",
                             "--steps", "4", "--warmup", "1", "--anneal", "none", "--cores", "2"]) == 0
    text = capsys.readouterr().out
    assert "BLAS threads per run: 2 for 1, 1 for 2" in text
    rows = [line.split() for line in text.splitlines()[2:]]
    assert [int(r[0]) for r in rows] == [1, 2]
    assert float(rows[0][4]) == 1.0 and float(rows[1][4]) > 0
    for runs, window, steps, rate, _, share in rows:
        assert float(rate) == pytest.approx(float(steps) / float(window), rel=0.01)
        assert 0 < float(steps) <= 4 * int(runs) + 1e-6 and 0 < float(share) <= 1
    assert float(rows[0][2]) == pytest.approx(4)  # one run: its whole timed span


def test_common_window_counts_only_the_time_every_worker_was_stepping():
    concurrency = _load("concurrency")
    fast = dict(start=0.0, ends=[float(t) for t in range(1, 11)])  # 1 step/s, done at 10 s
    slow = dict(start=0.0, ends=[float(t) for t in range(2, 21, 2)])  # 0.5 step/s, alone from 10 s to 20 s
    result = concurrency.common_window_rate([fast, slow])
    assert result["window_s"] == 10.0 and result["steps"] == pytest.approx(15.0)
    assert result["steps_per_s"] == pytest.approx(1.5)  # 20 steps / 20 s = 1.0 would be the biased rate
    assert result["window_share"] == pytest.approx(0.5)
    late = dict(start=3.0, ends=[3.5 + t for t in range(10)])  # starts late; interpolated at the window's start
    result = concurrency.common_window_rate([fast, late])
    assert result["window_s"] == 7.0 and result["steps"] == pytest.approx((10 - 3) + (7.5 - 0))
    assert concurrency.progress(2.5, 0.0, [1.0, 2.0, 4.0]) == pytest.approx(2.25)
    with pytest.raises(RuntimeError, match="did not overlap"):
        concurrency.common_window_rate([dict(start=0.0, ends=[1.0]), dict(start=2.0, ends=[3.0])])


def test_cpu_workers_get_cores_over_n_threads_also_for_one_run(monkeypatch):
    concurrency = _load("concurrency")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    args = argparse.Namespace(device="-1", cores=4)
    assert concurrency.worker_env(1, args)["OPENBLAS_NUM_THREADS"] == "4"
    assert {concurrency.worker_env(3, args)[v] for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                          "MKL_NUM_THREADS")} == {"1"}
    assert concurrency.worker_env(1, argparse.Namespace(device="0", cores=4))["OPENBLAS_NUM_THREADS"] == "1"


def test_a_worker_waiting_at_the_start_line_gives_up_when_the_run_is_abandoned(tmp_path):
    concurrency = _load("concurrency")
    sync = tmp_path / "sync"
    sync.mkdir()
    timer = threading.Timer(0.2, lambda: sync.rmdir())
    timer.start()
    frozen = dict(clock=lambda: 0.0, timeout=1.0)  # a clock that never reaches the deadline: no timeout
    assert concurrency.wait_for_start(sync, os.getppid(), **frozen) is False  # the folder went away
    sync.mkdir()
    assert concurrency.wait_for_start(sync, os.getppid() + 1, **frozen) is False  # not its parent any more
    (sync / "go").touch()
    assert concurrency.wait_for_start(sync, os.getppid(), timeout=20) is True


def test_a_failed_worker_stops_the_others(monkeypatch):
    concurrency = _load("concurrency")
    started = []
    real_popen = subprocess.Popen

    def popen(command, **kwargs):
        started.append(real_popen(command, **kwargs))
        return started[-1]

    def command(args, sync, worker_id):  # worker 0 waits for ever, worker 1 fails at once
        code = "import time; time.sleep(120)" if worker_id == 0 else "import sys; sys.exit(3)"
        return [sys.executable, "-c", code]

    monkeypatch.setattr(concurrency.subprocess, "Popen", popen)
    monkeypatch.setattr(concurrency, "worker_command", command)
    args = argparse.Namespace(device="-1", cores=2)
    with pytest.raises(RuntimeError, match="failed before the start line"):
        concurrency.run_concurrent(2, args)
    assert len(started) == 2 and all(p.poll() is not None for p in started)
    assert started[0].returncode < 0 and started[1].returncode == 3  # worker 0 was stopped by a signal, not waited for


# -- profile_step ----------------------------------------------------------------------------------------

def _device():
    from chainer_va.device import get_device

    return get_device("-1")


def _tiny_updater(profile_step, objective, anneal, reuse=True, layers="fused"):
    updater = profile_step.step_time.build(objective, anneal, _images(), _tiny_args(warmup=1), _device(),
                                           reuse=reuse, layers=layers)
    return updater, _device()


def _count(links, cls):
    return sum(isinstance(link, cls) for link in links)


@pytest.mark.parametrize("layers", ["chainer", "fused"])
def test_profile_charges_every_node_to_its_network_and_phase(layers):
    import chainer
    import chainer.links as L

    profile_step = _load("profile_step")
    steps = 2
    updater, device = _tiny_updater(profile_step, "jsd", "ent", layers=layers)
    profile = profile_step.profile_steps(updater, steps, device)
    calls = {key: n / steps for key, n in profile.calls.items()}
    denoiser = updater.denoisers.get("fake").link
    n_linear, n_hidden = _count(denoiser.links(), L.Linear), denoiser.n_layers
    n_deconv, n_conv = _count(updater.gen.links(), L.Deconvolution2D), _count(updater.dis.links(), L.Convolution2D)
    fused = {"chainer": 0, "fused": 1}[layers]  # hidden layers run as one AffineBNActivation node each
    # r_fake: one training forward (back-propagated) and one inference forward for the entropy term;
    # r_data: one training forward and one inference forward for DFM's term
    for source in ("data", "fake"):
        net = "denoiser_" + source
        assert calls[(net, "forward", "LinearFunction")] == 2 * (n_linear - fused * n_hidden)
        assert calls[(net, "backward", "LinearFunction.backward")] == n_linear - fused * n_hidden
        assert calls.get((net, "forward", "AffineBNActivation"), 0) == 2 * fused * n_hidden
        assert calls.get((net, "backward", "AffineBNActivation.backward"), 0) == fused * n_hidden
        assert calls[(net, "update", "optimizer")] == 1
    n_gen_fused, n_dis_fused = len(updater.gen._hidden) + 1, len(updater.dis._hidden) + 2  # + output deconv;
    # + first and feature conv
    assert calls.get(("gen", "forward", "Deconvolution2DFunction"), 0) == n_deconv - fused * n_gen_fused
    assert calls.get(("gen", "forward", "AffineBNActivation"), 0) == fused * (n_gen_fused + 1)  # + l0/bn0
    assert calls.get(("dis", "forward", "Convolution2DFunction"), 0) == 2 * (n_conv - fused * n_dis_fused)
    assert calls.get(("dis", "forward", "AffineBNActivation"), 0) == 2 * fused * n_dis_fused
    assert not any(network == "losses" and "Convolution" in function for network, _, function in calls)
    # host-side draws: one z, one noise array per denoiser's training loss; one real batch
    assert calls[("sampling", "host", "LatentSampler.__call__")] == 1
    assert calls[("sampling", "host", "NoiseSource.normal")] == 2
    assert calls[("data", "host", "real_batch")] == 1
    # exclusive times: nothing is counted twice, so the timed parts fit inside the steps
    assert all(seconds >= 0 for seconds in profile.seconds.values())
    assert 0 <= profile.other_seconds() < sum(profile.step_seconds)
    # the hooks and wrappers are gone afterwards
    from chainer_va import latent

    assert len(chainer.get_function_hooks()) == 0
    assert "real_batch" not in vars(updater)
    for cls, method in profile_step.SAMPLERS:
        assert vars(cls)[method].__qualname__ == "{}.{}".format(cls.__name__, method)
    assert latent.LatentSampler.__call__.__module__ == "chainer_va.latent"
    for name, optimizer in updater.get_all_optimizers().items():
        assert "update" not in vars(optimizer)
        assert len(optimizer.target.local_link_hooks) == 0


def test_profile_counts_show_the_reused_reconstruction_the_penalty_double_backprop_and_the_draws():
    import chainer.links as L

    profile_step = _load("profile_step")
    for reuse, inference_forwards in ((True, 1), (False, 2)):  # lik: DFM's r_data(f_fake) reused or not
        updater, device = _tiny_updater(profile_step, "jsd", "lik", reuse=reuse)
        profile = profile_step.profile_steps(updater, 1, device)
        n_layers = updater.denoisers.get("data").link.n_layers
        assert profile.calls[("denoiser_data", "forward", "AffineBNActivation")] == (1 + inference_forwards) * n_layers
    updater, device = _tiny_updater(profile_step, "wgan", "none")
    profile = profile_step.profile_steps(updater, 1, device)
    n_conv = _count(updater.dis.links(), L.Convolution2D)
    # critic step (n_critic=1): real, fake and x_hat forwards; generator step: fake (+ real features for
    # r); every conv is fused (with its lReLU, but the feature conv)
    assert profile.calls.get(("dis", "forward", "Convolution2DFunction"), 0) == 0
    assert profile.calls[("dis", "forward", "AffineBNActivation")] == 5 * n_conv
    # the penalty's input gradient applies nodes inside a backward pass; they are charged to the critic:
    # one per conv (its activation's gradient and the data gradient as one node)
    applied_in_backward = {f: n for (net, phase, f), n in profile.calls.items()
                           if net == "dis" and phase == "backward" and not f.endswith(".backward")}
    assert applied_in_backward.get("ConvolutionInputGrad", 0) == n_conv
    assert applied_in_backward.get("Deconvolution2DFunction", 0) == 0
    # z for the critic step and for the generator step, u for the penalty, no denoiser noise
    draws = {f: n for (net, _, f), n in profile.calls.items() if net == "sampling"}
    assert draws == {"LatentSampler.__call__": 2, "NoiseSource.uniform": 1}


def test_profiling_does_not_change_the_step():
    profile_step = _load("profile_step")
    plain, device = _tiny_updater(profile_step, "jsd", "ent")
    profiled, _ = _tiny_updater(profile_step, "jsd", "ent")
    profile_step.time_plain_steps(plain, 2, device)
    profile_step.profile_steps(profiled, 2, device)
    _assert_same_networks(plain, profiled)
    assert plain.latent.random_state.get_state()[2] == profiled.latent.random_state.get_state()[2]


def test_kernel_summary_counts_kernels_per_step_and_the_union_of_their_busy_intervals():
    profile_step = _load("profile_step")
    events = [
        dict(ph="X", cat="kernel", ts=0, dur=10), dict(ph="X", cat="kernel", ts=5, dur=10),  # overlap: 0-15
        dict(ph="X", cat="kernel", ts=20, dur=10), dict(ph="X", cat="gpu_memcpy", ts=28, dur=4),  # 20-32
        dict(ph="X", cat="cuda_runtime", ts=0, dur=100), dict(ph="i", cat="kernel", ts=50),  # not kernels
    ]
    assert profile_step.kernel_summary(events) == dict(kernels=3, kernel_us=30.0, busy_us=27.0, copies=1)
    assert profile_step.busy_time([(3, 4), (0, 1), (0.5, 2)]) == 3.0
    windows = [dict(ph="X", cat="user_annotation", name=profile_step.STEP_ANNOTATION, ts=ts, dur=17)
               for ts in (18, -1)] + [dict(ph="X", cat="user_annotation", name="other", ts=0, dur=100)]
    assert profile_step.step_windows(events + windows) == [(-1.0, 16.0), (18.0, 35.0)]
    assert profile_step.kernel_summary(events, profile_step.step_windows(windows))["per_step"] == [2, 1]


def test_kernel_lines_compare_busy_time_with_the_untraced_step_and_kernels_with_node_calls():
    profile_step = _load("profile_step")
    k = dict(steps=3, wall_ms=20.0, kernels=300.0, kernel_ms=4.0, busy_ms=5.0, copies=2.0, per_step=[300, 300, 300])
    nodes = dict(applied=100.0, backward=50.0)
    busy, sanity = profile_step.kernel_lines(k, 10.0, nodes)
    assert "(25%)" in busy and "untraced median step of 10.00 ms (50%)" in busy
    assert "300 kernels per step for 150 function-node calls" in sanity and "2.00 kernels per node call" in sanity
    assert "300 in every traced step" in sanity
    k["per_step"] = [290, 300, 310]
    assert "NOT steady: 290, 300, 310" in profile_step.kernel_lines(k, 10.0, nodes)[1]


def test_profile_step_prints_a_table_per_term_and_writes_json(capsys, tmp_path):
    profile_step = _load("profile_step")
    out = tmp_path / "profile.json"
    assert profile_step.main(["--device", "-1", "--width", "0.0625", "--batchsize", "4", "--anneal", "none,ent",
                              "--steps", "1", "--warmup", "1", "--kernels", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "--kernels: the CPU launches no kernels; skipped" in text
    assert re.search(r"^sampling +host +2\.0 ", text, re.M) and re.search(r"^sampling +host +3\.0 ", text, re.M)
    results = json.loads(out.read_text())["results"]
    assert [r["name"] for r in results] == ["jsd + none", "jsd + ent"]
    networks = [{row["network"] for row in r["rows"]} for r in results]
    assert "denoiser_fake" not in networks[0] and "denoiser_fake" in networks[1]
    assert {"sampling", "data"} <= networks[0]
    assert results[1]["node_calls"]["applied"] > results[0]["node_calls"]["applied"]


# -- gpu_session.sh ----------------------------------------------------------------------------------------

def test_gpu_session_caps_fit_the_lease_and_its_files_fit_the_device_tool():
    script = (BENCHMARKS / "gpu_session.sh").read_text()
    parts = re.findall(r"^part (\w+) (\d+) ", script, re.M)
    grace, check = re.search(r'timeout -k (\d+) (\d+) "\$PY" -c', script).groups()  # the device check
    part_grace = re.search(r'timeout -k (\d+) "\$limit"', script).group(1)
    total = sum(int(cap) for _, cap in parts) + int(check)
    kill_grace = int(grace) + int(part_grace) * len(parts)
    assert total + kill_grace <= 560  # the session's command runs under 590 s
    scripts = {name for name in re.findall(r"benchmarks/(\w+)\.py", script)}
    # the twin runs inside compare_torch; the RL sweep (TensorFlow) runs on the CPU only
    assert scripts == {p.stem for p in BENCHMARKS.glob("*.py")} - {"torch_reference", "rl_sweep_jobs"}
    names = set(re.search(r'^PARTS="([^"]+)"', script, re.M).group(1).split())
    assert {name for name, _ in parts} == names
    assert len(names) + 1 <= 8  # + profile.json; the device tool brings back at most eight files
    code = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert '--out "$OUT/profile.json"' in script and not any("/tmp/" in line for line in code)  # mktemp -d
    assert "--progress-interval 1000" in script


# -- RL sweep side by side ----------------------------------------------------------------------------------

def test_rl_sweep_jobs_runs_the_same_sweep_twice_and_prints_the_ratio(capsys, monkeypatch):
    """The two sweeps differ only in --jobs and their folders; the ratio is one-at-a-time over side-by-side."""
    bench = _load("rl_sweep_jobs")
    commands, clock = [], iter([0.0, 90.0, 100.0, 150.0])
    monkeypatch.setattr(bench.subprocess, "run", lambda cmd, **kw: commands.append(cmd))
    monkeypatch.setattr(bench.time, "time", lambda: next(clock))
    assert bench.main(["--seeds", "3", "--steps", "400"]) == 0
    first, second = commands
    differ = [(a, b) for a, b in zip(first, second) if a != b]
    assert len(first) == len(second) and [d[0].rsplit("/", 1)[-1] for d in differ] == ["one_at_a_time", "1"]
    assert [d[1].rsplit("/", 1)[-1] for d in differ] == ["side_by_side", "2"]
    assert first[first.index("--start-steps") + 1] == "100" and first[first.index("--seeds") + 1] == "3"
    assert capsys.readouterr().out.strip() == (
        "6 runs of 400 steps: one at a time 90 s, --jobs 2 50 s; ratio 1.80")
    with pytest.raises(SystemExit):
        bench.main(["--jobs", "1"])
    assert len(commands) == 2  # refused before any sweep
