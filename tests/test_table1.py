"""The Table 1 pipeline: grid, resumable runner, aggregation with reference numbers, submitit end to end."""
import contextlib
import csv
import io
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPRODUCE = Path(__file__).resolve().parents[1] / "reproduce"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPRODUCE / (name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # table1 imports `grid` by name, as it does when run as a script
    spec.loader.exec_module(module)
    return module


grid = _load("grid")
table1 = _load("table1")


def test_default_grid_is_three_objectives_by_four_variants_by_three_seeds(tmp_path):
    specs = grid.build_grid(str(tmp_path))
    assert len(specs) == 3 * 4 * 3
    assert {s.cell for s in specs} == {"{}/{}".format(o, v) for o in grid.OBJECTIVES for v in grid.VARIANTS}
    baseline = next(s for s in specs if s.cell == "rkl/none" and s.seed == 2)
    args = baseline.train_args
    assert args[args.index("--anneal") + 1] == "none" and float(args[args.index("--lambda0") + 1]) == 0.0
    assert args[args.index("--seed") + 1] == "2" and args[args.index("--out") + 1] == baseline.run_dir
    lik = next(s for s in specs if s.cell == "jsd/lik")
    assert lik.anneal == "lik" and lik.schedule == "linear" and lik.lambda0 == grid.DEFAULT_LAMBDA0


def test_lambda0_search_and_extra_schedules_expand_only_the_annealed_cells(tmp_path):
    specs = grid.build_grid(str(tmp_path), objectives=["jsd"], seeds=[0], schedules=["linear", "exponential"],
                            lambda0s=grid.LAMBDA0_GRID)
    cells = sorted({(s.cell, s.lambda0) for s in specs})
    # none: 1; lik and ent: 2 schedules x 3 lambda0; lgan: its own schedule x 3 lambda0
    assert len(cells) == 1 + 2 * 2 * 3 + 3
    assert ("jsd/lik/exponential", 10.0) in cells and ("jsd/none", 0.0) in cells
    with pytest.raises(ValueError, match="unknown objective"):
        grid.build_grid(str(tmp_path), objectives=["lsgan"])


def test_parse_seeds():
    assert table1.parse_seeds(None, 3) == [0, 1, 2]
    assert table1.parse_seeds("1", 3) == [0]
    assert table1.parse_seeds("0,4", 3) == [0, 4]


def test_run_one_skips_finished_resumes_partial_and_starts_new(tmp_path, capsys):
    spec = grid.build_grid(str(tmp_path), objectives=["rkl"], variants=["none"], seeds=[0])[0]
    calls = []

    def fake_runner(cmd):
        calls.append(cmd)
        Path(spec.run_dir, "result.json").write_text(json.dumps({"completed": True}))
        return 0

    assert grid.run_state(spec.run_dir) == "new"
    grid.run_one(spec, evaluate=False, runner=fake_runner)
    assert len(calls) == 1 and "--resume" not in calls[0] and calls[0][1:3] == ["-m", "chainer_va.train"]
    grid.run_one(spec, evaluate=False, runner=fake_runner)  # finished: not re-run
    assert len(calls) == 1
    Path(spec.run_dir, "result.json").write_text(json.dumps({"completed": False}))
    Path(spec.run_dir, "snapshot_iter_00000050.npz").write_bytes(b"")
    assert grid.run_state(spec.run_dir) == "partial"
    Path(spec.run_dir, "result.json").write_text('{"completed": tr')  # torn: resumed, with a warning
    assert grid.run_state(spec.run_dir) == "partial"
    assert "result.json is unreadable" in capsys.readouterr().err
    grid.run_one(spec, evaluate=False, runner=fake_runner)
    assert len(calls) == 2 and calls[1][-1] == "--resume"
    failing = grid.run_one(grid.build_grid(str(tmp_path / "x"), ["jsd"], ["none"], [0])[0], evaluate=False,
                           runner=lambda cmd: 1)
    assert "training failed" in failing["error"]

    def failing_with_a_reason(cmd):
        Path(cmd[cmd.index("--out") + 1], "train.out").write_text("...\nConfigError: CIFAR-10 not found: put it in X\n\n")
        return 1
    failing = grid.run_one(grid.build_grid(str(tmp_path / "y"), ["jsd"], ["none"], [0])[0], evaluate=False,
                           runner=failing_with_a_reason)
    assert "training failed (exit status 1): ConfigError: CIFAR-10 not found: put it in X; see" in failing["error"]


def test_the_grid_exits_nonzero_when_a_run_failed_and_tabulates_the_others(tmp_path, monkeypatch, capsys):
    def fake_run_local(specs, gpus, jobs):
        _write_metrics(specs[0].run_dir, 7.0, 30.0)
        return [{"cell": specs[0].cell, "seed": 0}] + [
            {"cell": s.cell, "seed": s.seed, "error": "training failed (exit status 2): no data"} for s in specs[1:]]
    monkeypatch.setattr(grid, "run_local", fake_run_local)
    results = tmp_path / "results"
    status = table1.main(["--only", "jsd", "--variants", "none,lik", "--seeds", "1", "--runs-dir", str(tmp_path / "r"),
                          "--results", str(results), "--dataset", "celeba", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 1 and "FAILED jsd/lik seed 0: training failed (exit status 2): no data" in err
    assert "1 of 2 runs failed" in err
    table = (results / "table1_celeba.md").read_text()
    assert "| jsd/none | 0 | 1/1 | 7.00 | 30.00 |" in table and "vs the CelebA training set" in table


def test_the_search_leaves_out_lambda0_an_oscillating_schedule_cannot_temper(tmp_path, capsys):
    # sinusoidal lambda_t swings to about -lambda0: lambda0 = 10 has no tempered target with lik/ent
    # (Corollary 2.2); LGAN's own term is not a tempering form and keeps its lambda0 = 10 point
    args = table1.build_parser().parse_args(["--runs-dir", str(tmp_path), "--seeds", "2", "--lambda0-search",
                                             "--schedules", "linear,sinusoidal", "--only", "jsd"])
    specs, info = table1.make_specs(args)
    points = {(s.cell, s.lambda0) for s in specs}
    assert ("jsd/lik/sinusoidal", 10.0) not in points and ("jsd/ent/sinusoidal", 10.0) not in points
    assert {("jsd/lik/sinusoidal", 1.0), ("jsd/lik", 10.0), ("jsd/lgan", 10.0)} <= points
    assert len(points) == 1 + 2 * 2 * 3 - 2 + 3 and len(info["skipped"]) == 2 * 2
    err = capsys.readouterr().err
    assert "left out jsd/lik/sinusoidal lambda0=10 (every seed)" in err and "lambda=-9.006" in err
    md, _ = table1.write_table([], info, tmp_path / "results", "t")
    assert "Left out" in Path(md).read_text() and "jsd/ent/sinusoidal lambda0=10" in Path(md).read_text()
    bad = table1.build_parser().parse_args(["--runs-dir", str(tmp_path), "--extra-train-args", "--lr -1"])
    with pytest.raises(SystemExit) as stop:
        table1.make_specs(bad)
    assert stop.value.code == 2 and "runs' settings are invalid: --lr must be a positive number" in capsys.readouterr().err


def test_a_run_made_with_other_settings_is_neither_reused_nor_tabulated(tmp_path):
    """The folder name holds only cell and seed: a finished 20k-iteration run (or one with another width
    or extra flags) in it must not be scored and reported as this grid's run."""
    from chainer_va import train
    from va_core import runinfo

    common = ["--iterations", "150000", "--width", "1.0"]
    spec = grid.build_grid(str(tmp_path), ["rkl"], ["lik"], [0], common_args=common)[0]
    made = train.resolve_config(spec.train_args)
    made.update(iterations=20000, sigma=0.5, channels=3)  # channels: filled in from the data, not compared
    runinfo.write_run_config(spec.run_dir, made, 0)
    Path(spec.run_dir, "result.json").write_text(json.dumps({"completed": True}))
    _write_metrics(spec.run_dir, 9.9, 1.0)
    assert grid.settings_mismatch(spec) == (
        "{} holds a run made with other settings (iterations 20000 there, 150000 now, sigma 0.5 there, 1.0 "
        "now); move it away or choose another --runs-dir".format(spec.run_dir))
    calls = []
    summary = grid.run_one(spec, evaluate=True, runner=lambda cmd: calls.append(cmd) or 0)
    assert calls == [] and summary["error"] == grid.settings_mismatch(spec) and "IS" not in summary
    row, = table1.aggregate([spec], "cifar10", comparable=True)
    assert "IS" not in row and "seeds_done" not in row
    # the same settings (device, speed-up switches and the data-filled keys aside): reused and tabulated
    made.update(iterations=150000, sigma=1.0, device="@cupy:0", layers="chainer")
    runinfo.write_run_config(spec.run_dir, made, 0)
    assert grid.settings_mismatch(spec) is None
    assert grid.run_one(spec, evaluate=False, runner=lambda cmd: calls.append(cmd) or 0)["state_before"] == "done"
    assert calls == [] and table1.aggregate([spec], "cifar10", comparable=True)[0]["IS"] == 9.9


def test_local_pool_gives_each_concurrent_run_its_own_device(tmp_path, monkeypatch):
    specs = grid.build_grid(str(tmp_path), objectives=["jsd", "rkl"], variants=["none", "lik"], seeds=[0])
    import threading
    import time

    active, seen, lock = {}, [], threading.Lock()

    def fake_run_one(spec, device, evaluate, concurrent_cpu_runs=1):
        with lock:
            assert device not in active.values(), "two runs on one slot"
            active[spec.run_dir] = device
            seen.append(device)
        time.sleep(0.05)
        with lock:
            del active[spec.run_dir]
        return {"cell": spec.cell, "device": device}

    monkeypatch.setattr(grid, "run_one", fake_run_one)
    results = grid.run_local(specs, gpus=["0", "1"], jobs_per_gpu=1, log=lambda *_: None)
    assert len(results) == 4 and set(seen) <= {"0", "1"}
    with pytest.raises(ValueError, match="jobs-per-gpu"):
        grid.run_local(specs, gpus=["0"], jobs_per_gpu=0)


def test_quick_specs_use_per_objective_iterations_lr_and_two_cpu_jobs(tmp_path):
    args = table1.build_parser().parse_args(["--quick", "--runs-dir", str(tmp_path)])
    specs, info = table1.make_specs(args)
    assert len(specs) == 2 * 2 * 1                                   # jsd/rkl x none/lik x 1 seed
    assert {s.cell for s in specs} == {"jsd/none", "jsd/lik", "rkl/none", "rkl/lik"}
    assert all(s.eval_kwargs["splits"] == 10 and s.eval_kwargs["fid_chunk"] == 500 for s in specs)  # as the real row
    assert {s.objective for s in table1.make_specs(table1.build_parser().parse_args(
        ["--quick", "--only", "wgan", "--runs-dir", str(tmp_path)]))[0]} == {"wgan"}

    def flag(spec, name):
        values = spec.train_args
        return values[len(values) - 1 - values[::-1].index(name) + 1]  # argparse keeps the last one

    for spec in specs:
        assert int(flag(spec, "--iterations")) == table1.QUICK["iterations"][spec.objective]
        assert int(flag(spec, "--snapshot-interval")) == table1.QUICK["iterations"][spec.objective] // 2
        assert float(flag(spec, "--lr")) == table1.QUICK["lr"]
    assert info["iterations"] == {"jsd": 1000, "rkl": 1000}
    assert table1.describe_iterations({"jsd": 400, "rkl": 400, "wgan": 120}) == "400 (wgan: 120)"
    assert table1.describe_iterations({"jsd": 7}) == "7" and table1.describe_iterations(150000) == "150000"
    # a user's --iterations and --extra-train-args win
    args = table1.build_parser().parse_args(["--quick", "--runs-dir", str(tmp_path), "--iterations", "9",
                                             "--extra-train-args", "--lr 1e-4"])
    specs, info = table1.make_specs(args)
    assert {int(flag(s, "--iterations")) for s in specs} == {9} and {flag(s, "--lr") for s in specs} == {"1e-4"}


def test_only_paper_settings_are_compared_and_short_lgan_runs_keep_fifteen_knots(tmp_path):
    def make(*flags):
        return table1.make_specs(table1.build_parser().parse_args(["--runs-dir", str(tmp_path)] + list(flags)))
    specs, info = make()
    assert info["comparable"] and info["iterations"]["jsd"] == 150000
    lgan = [s for s in specs if s.schedule == "lgan"]
    assert lgan and all("--knot-interval" not in s.train_args for s in lgan)  # the default 10000 of 150k
    for flags in (["--iterations", "20000"], ["--width", "0.5"], ["--batchsize", "32"],
                  ["--extra-train-args", "--lr 2e-4"], ["--quick"], ["--dataset", "celeba"],
                  ["--n-fid", "2500"], ["--n-is", "5000"]):  # FID is biased by the sample count
        assert not make(*flags)[1]["comparable"], flags
    specs, info = make("--quick", "--variants", "none,lgan", "--only", "jsd,rkl,wgan")
    knots = {s.objective: s.train_args[s.train_args.index("--knot-interval") + 1]
             for s in specs if s.schedule == "lgan"}
    assert knots == {"jsd": "66", "rkl": "66", "wgan": "6"}  # 1000 // 15, 100 // 15
    from chainer_va import train

    for spec in specs:  # every run of the quick grid is a valid configuration
        train_config = train.resolve_config(spec.train_args)
        assert train_config["knot_interval"] == (int(knots[spec.objective]) if spec.schedule == "lgan" else None)
    info = dict(info, quick=False, comparable=False)
    md, _ = table1.write_table([], info, tmp_path / "results", "t")
    assert "Not the paper's run settings (150000 iterations, batch 64, width 1.0" in Path(md).read_text()


def test_concurrent_cpu_runs_split_the_cores_between_them(tmp_path, monkeypatch):
    from chainer_va import device

    assert device.cpu_threads_per_run(1, cores=8) is None
    assert device.cpu_threads_per_run(2, cores=2) == 1 and device.cpu_threads_per_run(3, cores=8) == 2
    assert device.cpu_threads_per_run(4, cores=2) == 1
    assert device.cpu_thread_env(1, base={"A": "1"}) == {"A": "1"}
    monkeypatch.setattr(device.os, "cpu_count", lambda: 2)
    log = tmp_path / "out.txt"
    run = grid._subprocess_runner(log, concurrent_cpu_runs=2)
    assert run([sys.executable, "-c", "import os; print('threads', os.environ['OMP_NUM_THREADS'], "
                                      "os.environ['OPENBLAS_NUM_THREADS'])"]) == 0
    assert "threads 1 1" in log.read_text()


def _write_metrics(run_dir, IS, FID):
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    Path(run_dir, "metrics.json").write_text(json.dumps({"IS": IS, "IS_std": 0.0, "FID": FID}))


def test_table_aggregates_seeds_and_shows_the_difference_to_a_filled_reference(tmp_path):
    specs = grid.build_grid(str(tmp_path / "runs"), objectives=["jsd"], variants=["none", "lik"], seeds=[0, 1, 2])
    values = {("jsd/none", 0): (7.0, 30.0), ("jsd/none", 1): (7.2, 29.0), ("jsd/none", 2): (7.4, 31.0),
              ("jsd/lik", 0): (7.5, 25.0), ("jsd/lik", 1): (7.9, 26.0)}  # lik seed 2 unfinished
    for spec in specs:
        if (spec.cell, spec.seed) in values:
            _write_metrics(spec.run_dir, *values[(spec.cell, spec.seed)])
    # the one-line edit: fill the paper's IS of jsd/lik
    ref_path = tmp_path / "refs.csv"
    text = (REPRODUCE / "reference_numbers.csv").read_text().splitlines()
    text = [line.replace("table1/cifar10/jsd/lik,IS,n/a", "table1/cifar10/jsd/lik,IS,7.5") for line in text]
    ref_path.write_text("\n".join(text) + "\n")
    rows = table1.aggregate(specs, "cifar10", comparable=True)
    table1.attach_references(rows, table1.read_references(ref_path))
    by_cell = {r["cell"]: r for r in rows}
    none, lik = by_cell["jsd/none"], by_cell["jsd/lik"]
    assert none["IS"] == pytest.approx(7.2) and none["IS_std"] == pytest.approx(0.2)  # sample std (n-1)
    assert none["FID"] == pytest.approx(30.0) and none["FID_std"] == pytest.approx(1.0)
    assert lik["seeds_done"] == 2 and lik["seeds_planned"] == 3
    assert lik["paper_IS"] == 7.5 and lik["diff_IS"] == pytest.approx(7.7 - 7.5)
    assert none["paper_IS"] is None and none["diff_IS"] is None
    assert none["chainer_gan_lib_IS"] == 7.3 and none["chainer_gan_lib_FID"] == 30.1
    info = dict(dataset="cifar10", quick=False, n_is=50000, n_fid=10000, iterations=150000, batchsize=64,
                width=1.0, seeds=[0, 1, 2])
    md, csv_path = table1.write_table(rows, info, tmp_path / "results", "table1")
    markdown = Path(md).read_text()
    assert "| jsd/lik | 1 | 2/3 | 7.70 ± 0.28 | 25.50 ± 0.71 | 7.5 | +0.20 |" in markdown
    with open(csv_path) as f:
        assert {r["cell"] for r in csv.DictReader(f)} == {"jsd/none", "jsd/lik"}


def test_runs_scored_with_other_settings_stay_out_of_the_table(tmp_path, capsys):
    eval_kwargs = {"scorer": "inception", "n_is": 50000, "n_fid": 10000}
    specs = grid.build_grid(str(tmp_path), objectives=["jsd"], variants=["none"], seeds=[0, 1, 2],
                            eval_kwargs=eval_kwargs)
    scored = [dict(eval_kwargs), dict(eval_kwargs, n_is=5000), dict(eval_kwargs, scorer="classifier")]
    for spec, settings, value in zip(specs, scored, (7.0, 2.0, 5.0)):
        _write_metrics(spec.run_dir, value, 30.0)
        metrics = json.loads(Path(spec.run_dir, "metrics.json").read_text())
        Path(spec.run_dir, "metrics.json").write_text(json.dumps(dict(metrics, **settings)))
    (row,) = table1.aggregate(specs, "cifar10", comparable=True)
    assert row["seeds_done"] == 1 and row["IS"] == 7.0
    err = capsys.readouterr().err
    assert "was scored with other settings (n_is 5000 there, 50000 now)" in err
    assert "(scorer classifier there, inception now)" in err


def test_lambda0_search_reports_the_best_mean_is(tmp_path):
    specs = grid.build_grid(str(tmp_path), objectives=["rkl"], variants=["ent"], seeds=[0, 1],
                            lambda0s=grid.LAMBDA0_GRID)
    for spec in specs:
        _write_metrics(spec.run_dir, {0.1: 6.0, 1.0: 6.5, 10.0: 5.0}[spec.lambda0] + 0.1 * spec.seed, 40.0)
    (row,) = table1.aggregate(specs, "cifar10", comparable=True)
    assert row["lambda0"] == 1.0 and row["IS"] == pytest.approx(6.55)


def test_reference_numbers_file_has_every_source_and_a_row_per_cell():
    refs = table1.read_references(REPRODUCE / "reference_numbers.csv")
    assert refs[("real-data", "IS")]["value"] == 12.0 and refs[("real-data", "FID")]["value"] == 3.2
    assert refs[("chainer-gan-lib/dfm", "IS")]["value"] == 7.3 and refs[("chainer-gan-lib/dfm", "FID")]["value"] == 30.1
    assert refs[("chainer-gan-lib/wgan-gp", "IS")]["value"] == 6.8
    assert refs[("chainer-gan-lib/wgan-gp", "FID")]["value"] == 28.2
    assert refs[("dfm-paper/dfm", "IS")]["value"] == 7.72 and refs[("dfm-paper/dfm", "IS")]["std"] == "0.13"
    for objective in grid.OBJECTIVES:
        for variant in ("none", "lik", "ent"):
            for metric in ("IS", "FID"):
                row = refs[("table1/cifar10/{}/{}".format(objective, variant), metric)]
                assert row["value"] is None and "not transcribed" in row["note"]
    assert all(row["source"] for row in refs.values())


@pytest.mark.slow
def test_submitit_local_executor_trains_scores_and_tabulates_a_tiny_grid(tmp_path, monkeypatch):
    """Real end to end: 2 runs (jsd without/with VA, 2 iterations, tiny nets) through submitit's LocalExecutor."""
    pytest.importorskip("submitit")
    common = ["--dataset", "mnist5k", "--channels", "1", "--iterations", "2", "--batchsize", "8", "--width", "0.0625",
              "--limit", "64", "--snapshot-interval", "1", "--sample-interval", "2", "--log-interval", "1",
              "--plot-interval", "2", "--progress-interval", "1"]
    eval_kwargs = {"scorer": "classifier", "n_is": 100, "n_fid": 100, "splits": 2, "progress": False,
                   "classifier_overrides": {"epochs": 1, "width": 32, "hidden": 16}}
    specs = grid.build_grid(str(tmp_path / "runs"), ["jsd"], ["none", "lik"], [0], common_args=common,
                            eval_kwargs=eval_kwargs)
    summaries = grid.run_submitit(specs, "local", str(tmp_path / "submitit"), device="-1", timeout_min=10)
    assert all("error" not in s for s in summaries), summaries
    for spec in specs:
        assert grid.run_state(spec.run_dir) == "done"
        metrics = json.loads(Path(spec.run_dir, "metrics.json").read_text())
        assert 1.0 <= metrics["IS"] <= 10.0 and metrics["FID"] > 0 and metrics["comparable_with_paper"] is False
    # a second pass re-runs nothing: the result.json and metrics.json are reused
    before = {s.run_dir: Path(s.run_dir, "metrics.json").stat().st_mtime_ns for s in specs}
    again = [grid.run_one(s, evaluate=True, runner=lambda cmd: pytest.fail("re-ran " + " ".join(cmd)))
             for s in specs]
    assert all(a["state_before"] == "done" for a in again)
    assert before == {s.run_dir: Path(s.run_dir, "metrics.json").stat().st_mtime_ns for s in specs}
    rows = table1.aggregate(specs, "mnist5k", comparable=False)
    assert {r["cell"] for r in rows} == {"jsd/none", "jsd/lik"} and all(np.isfinite(r["IS"]) for r in rows)


def _stop(*flags):
    """make_specs' one-line error for ``flags`` (on stderr, exit status 2 as every command's bad settings)."""
    err = io.StringIO()
    with pytest.raises(SystemExit) as info, contextlib.redirect_stderr(err):
        table1.make_specs(table1.build_parser().parse_args(["--runs-dir", "unused"] + list(flags)))
    *notes, message = err.getvalue().splitlines()
    sys.stderr.write("".join(note + "\n" for note in notes))  # what came before the error (capsys reads it)
    assert info.value.code == 2 and message.startswith("table1: error: ")
    return message


@pytest.mark.parametrize("flags, message", [
    (["--iterations", "0"], "--iterations must be an integer >= 1, got 0; leave it out for the default"),
    (["--quick", "--iterations", "0"], "--iterations must be an integer >= 1, got 0"),
    (["--batchsize", "0"], "--batchsize must be an integer >= 1, got 0"),
    (["--width", "0"], "--width must be a positive number, got 0.0"),
    (["--n-is", "0"], "--n-is must be an integer >= 10 (the IS splits), got 0"),
    (["--n-fid", "1"], "--n-fid must be an integer >= 2 (FID needs a covariance), got 1"),
    (["--jobs-per-gpu", "0"], "--jobs-per-gpu must be an integer >= 1, got 0"),
    (["--seeds", "0"], "--seeds '0': give a number of seeds N >= 1"),
    (["--seeds", "two"], "--seeds 'two': give a number of seeds N >= 1"),
])
def test_an_explicit_zero_is_an_error_not_the_default(flags, message):
    assert _stop(*flags).startswith("table1: error: " + message)


def test_unknown_objectives_and_variants_are_named_with_the_known_ones():
    assert _stop("--only", "foo") == "table1: error: --only foo: unknown objective foo; choose from jsd,rkl,wgan"
    assert _stop("--only", "jsd,wgn") == "table1: error: --only jsd,wgn: unknown objective wgn; choose from jsd,rkl,wgan"
    assert _stop("--only", ",") == "table1: error: --only ,: no objective given; choose from jsd,rkl,wgan"
    assert _stop("--variants", "foo") == ("table1: error: --variants foo: unknown variant foo; choose from "
                                          "none,lik,ent,lgan,lik-cal,ent-cal")


def test_a_lambda0_without_tempered_target_stops_with_trains_message(tmp_path):
    from chainer_va import train

    with pytest.raises(train.UntemperedScheduleError) as trains:
        train.resolve_config(["--objective", "jsd", "--anneal", "ent", "--lambda0", "-2"])
    assert _stop("--lambda0", "-2", "--variants", "ent", "--only", "jsd") == \
        "table1: error: --lambda0 -2: " + str(trains.value)
    assert "keep lambda > -1 at every iteration" in str(trains.value)


def test_a_grid_left_empty_by_the_search_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(grid, "LAMBDA0_GRID", (10.0,))  # sinusoidal lambda_t reaches about -9: no tempered target
    message = _stop("--lambda0-search", "--variants", "ent", "--schedules", "sinusoidal", "--only", "jsd")
    assert message.startswith("table1: error: the grid has no run left: every run was left out (above)")
    assert "left out jsd/ent/sinusoidal lambda0=10" in capsys.readouterr().err


def test_the_shell_script_exits_2_with_the_message_and_documents_python(tmp_path):
    import subprocess

    script = REPRODUCE / "table1.sh"
    r = subprocess.run(["bash", str(script), "--quick", "--iterations", "0", "--table-only", "--runs-dir",
                        str(tmp_path / "runs"), "--results", str(tmp_path / "results")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr == "table1: error: --iterations must be an integer >= 1, got 0; leave it " \
                                             "out for the default\n", r.stderr
    assert not (tmp_path / "results").exists()
    header = [line for line in script.read_text().splitlines() if line.startswith("#")]
    assert any("PYTHON=" in line for line in header)
    assert "PYTHON=" in table1.build_parser().format_help()
