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
    assert names == ["jsd none", "jsd lik", "jsd ent", "jsd none (chainer Adam)", "jsd lik (r recomputed)",
                     "rkl none", "rkl lik", "rkl ent"]
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
    for line, name in zip(lines[2:], ("chainer", "chainer, per-parameter Adam")):
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
