"""reproduce/rl_compare.py (issue 20 item 2): curve metrics against hand values, the common plateau,
censoring, paired comparisons with Holm per metric; reproduce/rl.py's presets and flag checks."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from reproduce import rl_compare
from reproduce.rl_compare import Curve

ROOT = Path(__file__).resolve().parent.parent


def curve(returns, every=250):
    return Curve(np.arange(len(returns)) * float(every), np.asarray(returns, dtype=float))


def test_auc_is_the_trapezoid_area_over_the_span():
    assert rl_compare.auc(curve([0.0, 10.0, 20.0])) == pytest.approx(10.0)  # (1250 + 3750) / 500
    assert rl_compare.auc(curve([0.0, 40.0, 40.0, 40.0])) == pytest.approx((20 + 40 + 40) / 3)
    uneven = Curve(np.array([0.0, 100.0, 400.0]), np.array([2.0, 4.0, 1.0]))
    assert rl_compare.auc(uneven) == pytest.approx((3.0 * 100 + 2.5 * 300) / 400)
    with pytest.raises(ValueError, match="at least 2 evaluations"):
        rl_compare.auc(curve([1.0]))


def test_steps_to_reach_takes_the_first_evaluation_at_the_level_and_censors_a_miss():
    c = curve([-18.0, 5.0, 37.0, 30.0, 41.0])
    assert rl_compare.steps_to_reach(c, 36.0) == (500.0, True)  # the first crossing, not the last
    assert rl_compare.steps_to_reach(c, 41.0) == (1000.0, True)  # >= counts
    assert rl_compare.steps_to_reach(c, 50.0) == (1250.0, False)  # last step + one interval


def test_the_plateau_is_one_level_for_every_agent():
    slow = {0: curve([0, 0, 0, 10, 20, 30, 40, 40]), 1: curve([0, 0, 0, 0, 0, 20, 40, 40])}
    fast = {0: curve([0, 40, 44, 44, 44, 44, 44, 44]), 1: curve([0, 30, 44, 44, 44, 44, 44, 44])}
    level, metrics = rl_compare.run_metrics({"slow": slow, "fast": fast})
    finals = [np.mean([20, 30, 40, 40]), np.mean([0, 20, 40, 40]), 44.0, 44.0]
    assert level == pytest.approx(np.mean(finals))  # 37.1875 -> 90%: 33.47
    assert metrics["fast"][0]["steps_to_90"] == 250.0 and metrics["fast"][1]["steps_to_90"] == 500.0
    assert metrics["slow"][0]["steps_to_90"] == 1500.0 and metrics["slow"][1]["steps_to_90"] == 1500.0
    assert metrics["slow"][0]["final"] == pytest.approx(32.5) and metrics["slow"][1]["reached"]


def test_comparisons_pair_by_seed_and_correct_over_the_agent_pairs_of_each_metric():
    rng = np.random.default_rng(0)
    runs = {name: {s: curve(shift + rng.normal(0, 1, 12)) for s in range(5)}
            for name, shift in (("svgd", 0.0), ("maf_no_anneal", 3.0), ("maf_anneal", 3.2))}
    _, metrics = rl_compare.run_metrics(runs)
    rows = rl_compare.comparisons(metrics)
    assert [(r["metric"], r["variant"], r["baseline"]) for r in rows] == [
        (m, v, b) for m in rl_compare.METRICS for v, b in rl_compare.PAIRS]
    auc_rows = [r for r in rows if r["metric"] == "auc"]
    for r in auc_rows:
        d = [metrics[r["variant"]][s]["auc"] - metrics[r["baseline"]][s]["auc"] for s in range(5)]
        c = r["comparison"]
        assert c.mean_diff == pytest.approx(np.mean(d))
        assert c.p_t == pytest.approx(stats.ttest_rel(np.array(d), np.zeros(5)).pvalue)
        half = stats.t.ppf(0.975, 4) * np.std(d, ddof=1) / np.sqrt(5)
        assert (c.ci_low, c.ci_high) == pytest.approx((np.mean(d) - half, np.mean(d) + half))
    ps = sorted(r["comparison"].p_t for r in auc_rows)
    assert sorted(r["comparison"].p_adjusted for r in auc_rows)[0] == pytest.approx(min(1.0, 3 * ps[0]))
    steps_row = next(r for r in rows if r["metric"] == "steps_to_90")
    assert steps_row["comparison"].higher_is_better is False


def test_a_comparison_needs_the_same_seeds_in_both_agents():
    metrics = {"maf_anneal": {0: {"auc": 1.0}, 1: {"auc": 2.0}}, "maf_no_anneal": {0: {"auc": 1.0}, 2: {"auc": 2.0}}}
    with pytest.raises(ValueError, match="same seeds"):
        rl_compare.comparisons({k: {s: dict(v, steps_to_90=0.0, final=0.0) for s, v in r.items()}
                                for k, r in metrics.items()})


# ------------------------------------------------------------------------- reproduce/rl.py, the presets
def _sweep_module():
    spec = importlib.util.spec_from_file_location("reproduce_rl_compare", ROOT / "reproduce" / "rl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_run(module, out, name, seed, p, returns):
    from va_core import runinfo

    run = out / name / "seed{}".format(seed)
    cfg = module.expected_config(module.train_flags(name, seed, p, "Swimmer-v5", []))
    runinfo.write_run_config(run, cfg)
    (run / "checkpoints" / "step_{:09d}".format(cfg["steps"])).mkdir(parents=True)
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"dir": "step_{:09d}".format(cfg["steps"]),
                                                                 "step": cfg["steps"]}))
    steps = np.arange(len(returns)) * p["eval_every"]
    (run / "eval.csv").write_text("step,mean_return,std_return,wall_seconds,returns\n" + "".join(
        "{},{},0.0,{},\n".format(s, r, 1.0 + i) for i, (s, r) in enumerate(zip(steps, returns))))


def test_the_efficiency_preset_tabulates_paired_curve_metrics(tmp_path, monkeypatch):
    m = _sweep_module()
    assert m.PRESETS["efficiency"]["discount"] == 0.99 and m.PRESETS["gamma999"]["discount"] == 0.999
    out = tmp_path / "eff"
    p = dict(m.PRESETS["efficiency"], steps=1000, seeds=2)
    shapes = {"svgd": [0, 5, 10, 20, 30], "maf_no_anneal": [0, 20, 40, 42, 44], "maf_anneal": [0, 30, 42, 44, 44]}
    for name, returns in shapes.items():
        for seed in range(2):
            _fake_run(m, out, name, seed, p, [r + seed for r in returns])
    monkeypatch.setattr(m, "run_one", lambda run_dir, flags: pytest.fail("a finished run was trained again"))
    monkeypatch.setattr(m, "random_baseline", lambda env, episodes, extra=(): [0.0, 2.0])
    assert m.main(["--preset", "efficiency", "--steps", "1000", "--seeds", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())["comparison"]
    assert summary["per_run"]["svgd"]["0"]["auc"] == pytest.approx((2.5 + 7.5 + 15 + 25) / 4)
    # plateau: every run's last 4 evaluations (seed 1 adds 1 to each)
    finals = [np.mean(r[-4:]) + s for r in shapes.values() for s in range(2)]
    assert summary["plateau"] == pytest.approx(np.mean(finals))
    first = next(c for c in summary["comparisons"] if c["metric"] == "auc")
    assert (first["variant"], first["baseline"]) == ("maf_anneal", "maf_no_anneal")
    assert first["mean_diff"] == pytest.approx((5 + 6 + 2 + 1) / 4)  # the same difference on both seeds
    table = (out / "summary.md").read_text()
    assert "| AUC (mean eval return) | maf_anneal − maf_no_anneal | 2 | +3.50 [+3.50, +3.50]" in table


@pytest.mark.parametrize("flags, message", [
    (["--preset", "gamma999", "--discount", "0.99"],
     "error: --discount is set by the gamma999 preset (0.999): drop it, or choose the preset with the value you "
     "need (efficiency 0.99, gamma999 0.999, local 0.99, paper 0.99, quick 0.99); for another value run python -m "
     "rl.train --discount directly"),
    (["--preset", "efficiency", "--eval-ev=100"],
     "error: --eval-ev=100 is set by the efficiency preset (250): drop it, or choose the preset with the value "
     "you need (efficiency 250, gamma999 500, local 1500, paper 10000, quick 500); for another value run python "
     "-m rl.train --eval-every directly"),
    (["--preset", "efficiency", "--seed", "3"], "error: --seed is set by the sweep (seeds 0..N-1): use --seeds N"),
    (["--quick", "--lambda0", "2"], "error: --lambda0 is set by the sweep for each agent (--agents chooses them): "
                                    "drop it"),
])
def test_flags_the_sweep_sets_itself_are_refused_in_one_line(tmp_path, capsys, flags, message):
    m = _sweep_module()
    assert m.main(flags + ["--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "x").exists()
