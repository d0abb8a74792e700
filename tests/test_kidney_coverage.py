"""reproduce/kidney_coverage.py (issue 20 item 1): the lobe criterion, the intervals and tests against
hand values, and figS1's preset flags."""
import numpy as np
import pytest

from reproduce import kidney_coverage as kc


def test_a_run_keeps_both_lobes_when_its_right_share_is_near_the_exact_one():
    exact = np.array([[1.0, 0.0]] * 50 + [[-1.0, 0.0]] * 50)
    assert kc.right_share(exact) == 0.5
    near = np.array([[1.0, 0.0]] * 59 + [[-1.0, 0.0]] * 41)
    lost = np.array([[1.0, 0.0]] * 97 + [[-1.0, 0.0]] * 3)
    assert kc.both_lobes(near, exact) and not kc.both_lobes(lost, exact)
    assert not kc.both_lobes(np.array([[1.0, 0.0]] * 61 + [[-1.0, 0.0]] * 39), exact)  # 0.11 off


def test_clopper_pearson_against_closed_forms():
    # k = n: [(alpha/2)^(1/n), 1]; k = 0: [0, 1 - (alpha/2)^(1/n)]
    assert kc.clopper_pearson(20, 20) == pytest.approx((0.025 ** (1 / 20), 1.0))
    assert kc.clopper_pearson(0, 20) == pytest.approx((0.0, 1 - 0.025 ** (1 / 20)))
    low, high = kc.clopper_pearson(10, 20)
    assert low == pytest.approx(0.2720, abs=1e-4) and high == pytest.approx(0.7280, abs=1e-4)


def test_fisher_and_mcnemar_on_paired_seeds():
    annealed = {s: s < 18 for s in range(20)}  # 18 / 20 kept
    plain = {s: s < 10 for s in range(20)}  # 10 / 20 kept, every one also kept by the annealed run
    t = kc.coverage_tests({kc.ANNEALED: annealed, kc.PLAIN: plain})
    assert t["table"] == [[18, 2], [10, 10]]
    # hypergeometric: P(X >= 18) + P(X <= 10) with 28 kept among 40, 20 per arm, by hand with math.comb
    from math import comb
    p = sum(comb(28, k) * comb(12, 20 - k) for k in range(8, 21) if k >= 18 or k <= 10) / comb(40, 20)
    assert t["fisher_p"] == pytest.approx(p)
    assert (t["only_annealed_kept"], t["only_plain_kept"]) == (8, 0)
    assert t["mcnemar_exact_p"] == pytest.approx(2 * 0.5 ** 8)  # 8 discordant pairs, all one way
    same = kc.coverage_tests({kc.ANNEALED: plain, kc.PLAIN: plain})
    assert same["fisher_p"] == pytest.approx(1.0) and same["mcnemar_exact_p"] == 1.0


@pytest.mark.parametrize("flags, message", [
    (["--preset", "kidney-coverage", "--seed", "3"],
     "error: --seed cannot be combined with --preset kidney-coverage: the preset runs the kidney with all three "
     "samplers over seeds 0..N-1 (--seeds N) into its own folders and resumes them itself; drop it"),
    (["--preset", "kidney-coverage", "--targets", "banana"], "error: --targets cannot be combined with --preset"),
    (["--seeds", "20"], "error: --seeds needs --preset kidney-coverage (a single figS1 run takes --seed)"),
    (["--preset", "kidney-coverage", "--seeds", "1"], "error: --seeds must be >= 2 (a coverage rate over seeds), "
                                                      "got 1"),
])
def test_figs1_preset_refuses_inconsistent_flags_in_one_line(tmp_path, capsys, flags, message):
    from reproduce import figS1

    assert figS1.main(flags + ["--out", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err
    assert not (tmp_path / "k").exists()


def test_figs1_preset_passes_its_other_flags_to_every_seed(tmp_path, monkeypatch):
    from reproduce import figS1

    calls = []
    monkeypatch.setattr(kc, "run", lambda out, seeds, flags: calls.append((out, seeds, flags)) or 0)
    argv = ["--preset", "kidney-coverage", "--seeds", "3", "--steps", "40", "--hidden-units", "8,8", "--lr", "0.01",
            "--out", str(tmp_path / "k")]
    assert figS1.main(argv) == 0
    assert calls == [(tmp_path / "k", 3, ["--steps", "40", "--hidden-units", "8,8", "--lr", "0.01"])]
    assert figS1.parse_args(["--preset", "kidney-coverage"]).out == "results/kidney_coverage"
    assert figS1.parse_args([]).out == "results/figS1"


def test_log_u_summary_is_the_median_gap_over_seeds_in_nats_and_standard_errors():
    rows = {name: {s: {"log_u_gap": -0.1 * (s + 1), "log_u_gap_se": 0.05} for s in range(3)} for name in kc.SAMPLERS}
    lines = kc.log_u_lines(rows)
    assert lines[4] == "| {} | -0.200 [-0.300, -0.100] | -4.0 |".format(kc.SAMPLERS[kc.ANNEALED])
    assert len(lines) == 4 + len(kc.SAMPLERS)
