"""The benchmark scripts run and print what they promise (tiny sizes; timings themselves are not asserted)."""
import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _load(name):
    spec = importlib.util.spec_from_file_location("bench_" + name, BENCHMARKS / (name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_step_time_prints_a_ratio_per_annealing_term_and_the_reuse_before_after(capsys):
    step_time = _load("step_time")
    assert step_time.main(["--device", "-1", "--width", "0.0625", "--batchsize", "4", "--repeat", "2",
                           "--objectives", "jsd,rkl", "--anneal", "lik,ent"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    names = [" ".join(r[:-3]) for r in rows]
    assert names == ["jsd none", "jsd lik", "jsd ent", "jsd none (chainer Adam)", "jsd none (chainer layers)",
                     "jsd none (chainer losses)", "jsd ent (chainer losses)", "jsd lik (r recomputed)",
                     "jsd none (all speed-ups off)",
                     "rkl none", "rkl lik", "rkl ent", "rkl none (chainer layers)", "rkl none (chainer losses)",
                     "rkl ent (chainer losses)", "rkl none (all speed-ups off)"]
    ratios = {name: float(r[-1]) for name, r in zip(names, rows)}
    assert ratios["jsd none"] == ratios["rkl none"] == 1.0
    assert all(0 < value < 100 for value in ratios.values())


def test_concurrency_benchmark_reports_aggregate_rates_against_one_run(capsys):
    concurrency = _load("concurrency")
    assert concurrency.main(["--device", "-1", "--runs", "2", "--width", "0.0625", "--batchsize", "4",
                             "--steps", "2", "--warmup", "1", "--anneal", "none"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [int(r[0]) for r in rows] == [1, 2]
    ratios = [float(r[-1]) for r in rows]
    assert ratios[0] == 1.0 and ratios[1] > 0
    for runs, wall, rate, _ in rows:
        assert float(rate) == pytest.approx(2 * int(runs) / float(wall), rel=0.01)


def test_compare_torch_prints_both_chainer_steps_and_their_ratio_to_pytorch(capsys):
    pytest.importorskip("torch")
    sys.path.insert(0, str(BENCHMARKS))  # compare_torch imports its siblings by name, as a script
    try:
        compare_torch = _load("compare_torch")
        assert compare_torch.main(["--device", "-1", "--width", "0.0625", "--batchsize", "4", "--repeat", "2",
                                   "--warmup", "1", "--threads", "1"]) == 0
    finally:
        sys.path.remove(str(BENCHMARKS))
    lines = capsys.readouterr().out.splitlines()
    torch_s = float(lines[1].split()[1])
    names = ("chainer", "chainer, per-parameter Adam", "chainer, unfused layers", "chainer, unfused losses",
             "chainer, no speed-ups")
    assert len(lines) == 2 + len(names)
    for line, name in zip(lines[2:], names):
        assert line.startswith(name + " ")
        seconds, ratio = float(line.split()[-5]), float(line.split()[-1])
        assert ratio == pytest.approx(seconds / torch_s, abs=0.01)


def test_optimizer_update_benchmark_counts_arrays_and_prints_the_ratio(capsys):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        optimizer_update = _load("optimizer_update")
        assert optimizer_update.main(["--device", "-1", "--width", "0.0625", "--repeat", "2"]) == 0
    finally:
        sys.path.remove(str(BENCHMARKS))
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[0] for r in rows] == ["generator", "discriminator", "denoiser"]
    nets = optimizer_update.networks(0.0625)
    for row in rows:
        params = list(nets[row[0]].params())
        assert int(row[1]) == len(params) and int(row[2]) == sum(p.size for p in params)
        assert float(row[5]) == pytest.approx(float(row[4]) / float(row[3]), abs=0.01)


def _profile_module():
    sys.path.insert(0, str(BENCHMARKS))  # profile_step imports step_time by name, as a script
    try:
        return _load("profile_step")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _tiny_updater(profile_step, objective, anneal, reuse=True, layers="fused"):
    import argparse

    import numpy

    from chainer_va.device import get_device

    args = argparse.Namespace(width=0.0625, batchsize=4, n_critic=1, warmup=1)
    images = numpy.random.RandomState(0).uniform(-1, 1, (16, 3, 32, 32)).astype(numpy.float32)
    device = get_device("-1")
    return profile_step.step_time.build(objective, anneal, images, args, device, reuse=reuse, layers=layers), device


def _count(links, cls):
    return sum(isinstance(link, cls) for link in links)


@pytest.mark.parametrize("layers", ["chainer", "fused"])
def test_profile_charges_every_node_to_its_network_and_phase(layers):
    import chainer
    import chainer.links as L

    profile_step = _profile_module()
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
    # exclusive times: nothing is counted twice, so the timed parts fit inside the steps
    assert all(seconds >= 0 for seconds in profile.seconds.values())
    assert 0 <= profile.other_seconds() < sum(profile.step_seconds)
    # the hooks are gone afterwards
    assert len(chainer.get_function_hooks()) == 0
    for name, optimizer in updater.get_all_optimizers().items():
        assert "update" not in vars(optimizer)
        assert len(optimizer.target.local_link_hooks) == 0


def test_profile_counts_show_the_reused_reconstruction_and_the_penalty_double_backprop():
    import chainer.links as L

    profile_step = _profile_module()
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


def test_profiling_does_not_change_the_step():
    import numpy

    profile_step = _profile_module()
    plain, device = _tiny_updater(profile_step, "jsd", "ent")
    profiled, _ = _tiny_updater(profile_step, "jsd", "ent")
    profile_step.time_plain_steps(plain, 2, device)
    profile_step.profile_steps(profiled, 2, device)
    for name, optimizer in plain.get_all_optimizers().items():
        other = profiled.get_optimizer(name).target
        for (path, p), (_, q) in zip(sorted(optimizer.target.namedparams()), sorted(other.namedparams())):
            numpy.testing.assert_array_equal(p.array, q.array, err_msg=name + path)


def test_kernel_summary_counts_kernels_and_the_union_of_their_busy_intervals():
    profile_step = _profile_module()
    events = [
        dict(ph="X", cat="kernel", ts=0, dur=10), dict(ph="X", cat="kernel", ts=5, dur=10),  # overlap: 0-15
        dict(ph="X", cat="kernel", ts=20, dur=10), dict(ph="X", cat="gpu_memcpy", ts=28, dur=4),  # 20-32
        dict(ph="X", cat="cuda_runtime", ts=0, dur=100), dict(ph="i", cat="kernel", ts=50),  # not kernels
    ]
    assert profile_step.kernel_summary(events) == dict(kernels=3, kernel_us=30.0, busy_us=27.0, copies=1)
    assert profile_step.busy_time([(3, 4), (0, 1), (0.5, 2)]) == 3.0


def test_profile_step_prints_a_table_per_term_and_writes_json(capsys, tmp_path):
    import json

    profile_step = _profile_module()
    out = tmp_path / "profile.json"
    assert profile_step.main(["--device", "-1", "--width", "0.0625", "--batchsize", "4", "--anneal", "none,ent",
                              "--steps", "1", "--warmup", "1", "--kernels", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "--kernels: the CPU launches no kernels; skipped" in text
    results = json.loads(out.read_text())["results"]
    assert [r["name"] for r in results] == ["jsd + none", "jsd + ent"]
    networks = [{row["network"] for row in r["rows"]} for r in results]
    assert "denoiser_fake" not in networks[0] and "denoiser_fake" in networks[1]
    assert results[1]["node_calls"]["applied"] > results[0]["node_calls"]["applied"]
