"""The Table 1 study (reproduce/study.py): its grid, ledger, paired comparisons and refusals."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from test_table1 import grid, table1  # noqa: F401  (loads reproduce/grid.py and table1.py by name)
import importlib.util

_spec = importlib.util.spec_from_file_location("study", Path(table1.__file__).with_name("study.py"))
study = importlib.util.module_from_spec(_spec)
sys.modules["study"] = study
_spec.loader.exec_module(study)

REAL = {"IS": 9.5, "FID": 2.0, "n": 500, "accuracy": 0.985}


def _args(tmp_path, *flags):
    return table1.build_parser().parse_args(["--study", "--runs-dir", str(tmp_path / "runs"),
                                             "--results", str(tmp_path / "results")] + list(flags))


def test_the_grid_pairs_every_cell_with_the_same_seeds_and_adds_the_calibrated_flag(tmp_path):
    specs = study.build_specs(str(tmp_path), ["jsd", "wgan"], [0, 1, 2, 3, 4], study.STUDY)
    cells = {(s.cell, s.lambda0) for s in specs}
    assert cells == {("{}/{}".format(o, v), lam) for o in ("jsd", "wgan") for v, lam in study.STUDY_CELLS}
    for key in cells:
        assert sorted(s.seed for s in specs if (s.cell, s.lambda0) == key) == [0, 1, 2, 3, 4]
    calibrated = [s for s in specs if s.variant == "lik-cal"]
    assert calibrated and all(s.train_args[s.train_args.index("--anneal-scale") + 1] == "calibrated"
                              for s in calibrated)
    assert all("--anneal-scale" not in s.train_args for s in specs if s.variant != "lik-cal")
    wgan = next(s for s in specs if s.objective == "wgan")
    assert wgan.train_args[wgan.train_args.index("--iterations") + 1] == str(study.STUDY["iterations"]["wgan"])
    assert all(s.eval_kwargs["fid_chunk"] == 500 and s.eval_kwargs["splits"] == 10 for s in specs)


def test_the_architecture_reaches_every_run_and_keeps_its_own_run_folders(tmp_path):
    preset = dict(study.STUDY, arch={"jsd": "dcgan", "wgan": "mlp"})
    specs = study.build_specs(str(tmp_path), ["jsd", "wgan"], [0, 1], preset)
    for objective, arch, group in (("jsd", "dcgan", "mnist5k"), ("wgan", "mlp", "mnist5k-mlp")):
        mine = [s for s in specs if s.objective == objective]
        flags = {s.train_args[s.train_args.index("--arch") + 1] if "--arch" in s.train_args else "dcgan" for s in mine}
        assert flags == {arch} and {Path(s.run_dir).parents[1].name for s in mine} == {group}
    assert study.arch_of(dict(study.STUDY, arch="mlp"), "rkl") == "mlp"
    assert study.networks_text(preset, ["jsd", "wgan"]) == (
        "jsd on Table S1 networks; wgan on the fully connected networks of `--arch mlp` (not the paper's)")
    info = dict(width=0.125, batchsize=64, lr=4e-4, seeds="0", iterations="jsd 1")
    assert "Table S1 networks at width" in study.markdown([], REAL, info)
    assert "Table S1 networks; wgan on the fully" in study.markdown(
        [], REAL, dict(info, networks=study.networks_text(preset, ["jsd", "wgan"])))


def _ledger(tmp_path, specs, values):
    """Write one record per spec with IS/FID from ``values(spec)``, as write_record would."""
    results = tmp_path / "results"
    for spec in specs:
        is_, fid = values(spec)
        path = study.record_path(results, spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(study._settings(spec), cell=spec.cell, seed=spec.seed, IS=is_, FID=fid,
                                        grad_ratio_first=0.001 if spec.variant == "lik" else 10.0)))
    return results


def test_paired_comparison_matches_a_hand_t_test_and_holm(tmp_path):
    specs = study.build_specs(str(tmp_path), ["rkl"], [0, 1, 2, 3, 4], study.STUDY)
    shift = {"none": 0.0, "lik": 0.0, "lik-cal": 1.0}
    noise = np.array([0.1, -0.2, 0.05, 0.3, -0.1])

    def values(spec):
        base = 5.0 + spec.seed * 0.5  # seed effects shared by every cell: pairing removes them
        extra = noise[spec.seed] if spec.variant != "none" else 0.0
        return base + shift[spec.variant] * spec.lambda0 + extra, 50.0 - spec.seed

    results = _ledger(tmp_path, specs, values)
    rows = study.cell_rows(specs, study.collect(results, specs))
    study.compare(rows)
    row = next(r for r in rows if r["variant"] == "lik-cal" and r["lambda0"] == 1.0)
    c = row["IS_cmp"]
    d = noise + 1.0
    t = stats.ttest_rel(d, np.zeros(5))
    assert c.mean_diff == pytest.approx(d.mean()) and c.p_t == pytest.approx(t.pvalue)
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert (c.ci_low, c.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    ps = sorted(r["IS_cmp"].p_t for r in rows if r["variant"] != "none")
    assert c.p_adjusted == pytest.approx(min(1.0, 3 * ps[0]))  # the smallest of 3 p values, times 3 (Holm)
    assert c.verdict() == "better"
    faithful = next(r for r in rows if r["variant"] == "lik")
    assert faithful["IS_cmp"].verdict() == "no detectable difference"
    assert faithful["FID_cmp"].mean_diff == 0.0  # FID is identical seed by seed
    text = study.markdown(rows, REAL, dict(width=0.125, batchsize=32, lr=2e-4, seeds="0,1,2,3,4", iterations="rkl 9"))
    assert "| real digits (held-out test split) | | | 500 images | 9.50 | 1.00 | 2.00 |" in text
    assert "no detectable difference" in text and "held-out accuracy 0.9850" in text
    csv_lines = study.csv_text(rows, REAL).splitlines()
    assert csv_lines[1].startswith("real,") and len(csv_lines) == 2 + len(rows)


def test_a_cell_missing_seeds_is_pending_not_compared(tmp_path):
    specs = study.build_specs(str(tmp_path), ["jsd"], [0, 1, 2, 3, 4], study.STUDY)
    done = [s for s in specs if not (s.variant == "lik" and s.seed == 4)]
    results = _ledger(tmp_path, done, lambda s: (5.0 + s.seed, 40.0))
    rows = study.cell_rows(specs, study.collect(results, specs))
    study.compare(rows)
    lik = next(r for r in rows if r["variant"] == "lik")
    assert lik["IS_cmp"] is None and "pending (4/5 seeds)" in study.markdown(
        rows, REAL, dict(width=1, batchsize=1, lr=1, seeds="", iterations=""))


def test_a_record_with_other_settings_is_not_reused(tmp_path, capsys):
    specs = study.build_specs(str(tmp_path), ["jsd"], [0], study.STUDY)
    results = _ledger(tmp_path, specs[:1], lambda s: (5.0, 40.0))
    assert study.read_record(results, specs[0]) is not None
    other = study.build_specs(str(tmp_path), ["jsd"], [0], dict(study.STUDY, width=0.25))[0]
    assert study.read_record(results, other) is None
    assert "other settings" in capsys.readouterr().err
    # the run folder is not part of the settings: a fresh clone with another --runs-dir reuses the record
    moved = study.build_specs(str(tmp_path / "elsewhere"), ["jsd"], [0], study.STUDY)[0]
    assert study.read_record(results, moved) is not None


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "0,0,1"], "--seeds 0,0,1 repeats a seed"),
    (["--seeds", "1"], "--study needs at least 2 seeds"),
    (["--variants", "none,lik"], "--study runs a fixed grid (reproduce/study.py STUDY_CELLS); drop --variants"),
    (["--quick"], "drop --quick"),
])
def test_bad_study_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as info:
        table1.main(["--study", "--runs-dir", str(tmp_path), "--results", str(tmp_path)] + flags)
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and err.count("\n") == 1


def test_the_driver_runs_only_what_the_ledger_lacks_and_writes_table_csv_and_figure(tmp_path, monkeypatch, capsys):
    """The study end to end with a fake runner: it writes each record as the run ends, reruns nothing."""
    import chainer_va.metrics.real_data as real_data

    monkeypatch.setattr(real_data, "classifier_real_row", lambda **kw: dict(REAL))
    scorer_starts = []  # the real one trains the CNN in a background thread while the runs train
    monkeypatch.setattr(table1, "start_scorer_training", lambda: scorer_starts.append(1))
    ran = []

    def fake_run_local(specs, gpus, jobs, on_done=None, **kw):
        out = []
        for spec in specs:
            ran.append(spec.run_dir)
            run = Path(spec.run_dir)
            run.mkdir(parents=True, exist_ok=True)
            (run / "metrics.json").write_text(json.dumps({"IS": 5.0 + spec.seed + (spec.variant != "none"),
                                                          "FID": 30.0}))
            (run / "result.json").write_text(json.dumps({"completed": True, "seconds": 1.0}))
            (run / "config.json").write_text(json.dumps({"environment": {"git_commit": "abc"}}))
            (run / "log").write_text(json.dumps([{"grad_ratio_anneal": 0.5}, {"grad_ratio_anneal": 0.25}]))
            summary = {"cell": spec.cell, "seed": spec.seed}
            on_done(spec, summary)
            out.append(summary)
        return out

    monkeypatch.setattr(grid, "run_local", fake_run_local)
    flags = ["--only", "rkl", "--seeds", "2", "--iterations", "3", "--width", "0.0625", "--batchsize", "4"]
    assert table1.main(["--study", "--runs-dir", str(tmp_path / "runs"), "--results", str(tmp_path / "out")] + flags) == 0
    assert len(ran) == 4 * 2 and scorer_starts == [1]
    results = tmp_path / "out" / "table1_study"
    record = json.loads((results / "runs" / "rkl-lik-linear-l1" / "seed1.json").read_text())
    assert record["grad_ratio_first"] == 0.5 and record["grad_ratio_median"] == pytest.approx(0.375)
    assert record["git_commit"] == "abc"
    table = (results / "table.md").read_text()
    assert "below the evidence standard" in capsys.readouterr().err
    assert "| rkl/lik-cal | 0.1 | calibrated | 2/2 |" in table
    assert (results / "table.csv").is_file() and (results / "study.png").is_file()
    ran.clear()
    assert table1.main(["--study", "--runs-dir", str(tmp_path / "fresh"), "--results", str(tmp_path / "out")] + flags) == 0
    assert ran == [] and scorer_starts == [1]  # every run is in the ledger, even with the run folders gone


def test_a_diverged_run_is_recorded_as_an_outcome_and_its_cell_is_not_compared(tmp_path):
    specs = study.build_specs(str(tmp_path / "runs"), ["rkl"], [0, 1], study.STUDY)
    calibrated = next(s for s in specs if s.variant == "lik-cal" and s.lambda0 == 1.0 and s.seed == 1)
    run = Path(calibrated.run_dir)
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"completed": False, "diverged": True, "iterations": 7,
                                                 "error": "loss 'loss_gen' is nan at iteration 7"}))
    results = tmp_path / "results"
    path = study.write_record(results, calibrated, {"error": "training failed (exit status 1)"})
    assert json.loads(path.read_text())["diverged_at"] == 7 and study.read_record(results, calibrated) is not None
    (run / "result.json").write_text(json.dumps({"completed": False, "iterations": 7, "error": "disk full"}))
    assert study.write_record(results / "other", calibrated, {"error": "training failed"}) is None  # not an outcome
    others = [s for s in specs if s is not calibrated]
    _ledger(tmp_path, others, lambda s: (5.0 + s.seed, 40.0))
    rows = study.cell_rows(specs, study.collect(results, specs))
    study.compare(rows)
    row = next(r for r in rows if r["variant"] == "lik-cal" and r["lambda0"] == 1.0)
    assert row["diverged"] == [1] and row["IS_cmp"] is None and row["IS"] == 5.0
    text = study.markdown(rows, REAL, dict(width=1, batchsize=1, lr=1, seeds="", iterations=""))
    assert "diverged on 1/2 seeds (NaN loss): not compared" in text
