"""va_core.paired_stats: paired seed-by-seed comparisons for the Table 1 study."""
import ast
import dataclasses
import math
import pathlib
import warnings

import numpy as np
import pytest
from scipy import stats

from va_core import paired_stats as ps
from va_core.paired_stats import PairedComparison, SeedMismatchError

T_975_4 = 2.7764451051977987  # t_{0.975, 4}


def _comparison(mean_diff, ci_low, ci_high, p_t, p_adjusted=math.nan, higher_is_better=True):
    return PairedComparison(n=5, mean_baseline=0.0, mean_variant=mean_diff, mean_diff=mean_diff, ci_low=ci_low,
                            ci_high=ci_high, t_stat=1.0, p_t=p_t, p_wilcoxon=0.0625, p_adjusted=p_adjusted,
                            higher_is_better=higher_is_better)


def test_imports_only_numpy_scipy_and_the_standard_library():
    source = pathlib.Path(ps.__file__).read_text()
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            roots.add(node.module.split(".")[0])
    assert roots <= {"__future__", "dataclasses", "math", "typing", "numpy", "scipy"}, roots


def test_interval_and_t_test_against_a_hand_computation():
    baseline = [10.0, 20.0, 30.0, 40.0, 50.0]
    variant = [11.0, 22.0, 33.0, 44.0, 55.0]  # differences 1, 2, 3, 4, 5
    c = ps.paired_difference(baseline, variant)
    sd = math.sqrt(2.5)
    se = sd / math.sqrt(5)
    assert c.n == 5
    assert c.mean_baseline == pytest.approx(30.0) and c.mean_variant == pytest.approx(33.0)
    assert c.mean_diff == pytest.approx(3.0)
    assert c.t_stat == pytest.approx(3.0 / se, rel=1e-12)
    assert c.ci_low == pytest.approx(3.0 - T_975_4 * se, rel=1e-12)
    assert c.ci_high == pytest.approx(3.0 + T_975_4 * se, rel=1e-12)
    assert c.p_t == pytest.approx(2 * stats.t.sf(3.0 / se, 4), rel=1e-12)
    # Closed-form t CDF for 4 df: P(T <= t) = 1/2 + t / (2 sqrt(4 + t^2)) * (1 + 2 / (4 + t^2)); t^2 = 18 here.
    assert c.p_t == pytest.approx(1 - math.sqrt(18) / math.sqrt(22) * (1 + 2 / 22), rel=1e-12)  # 0.01324
    assert c.p_wilcoxon == 0.0625
    assert math.isnan(c.p_adjusted)
    assert c.confidence == 0.95 and c.higher_is_better is True


def test_other_confidence_level_widens_the_interval():
    c = ps.paired_difference([0.0] * 5, [1.0, 2.0, 3.0, 4.0, 5.0], confidence=0.99)
    se = math.sqrt(2.5) / math.sqrt(5)
    assert c.ci_high - 3.0 == pytest.approx(stats.t.ppf(0.995, 4) * se, rel=1e-12)
    assert c.confidence == 0.99


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_t_test_matches_scipy_ttest_rel(seed):
    rng = np.random.default_rng(seed)
    n = 5 + seed * 3
    baseline = rng.normal(30.0, 2.0, n)
    variant = baseline + rng.normal(-0.5, 1.0, n)
    c = ps.paired_difference(baseline, variant, higher_is_better=False)
    ref = stats.ttest_rel(variant, baseline)
    assert c.t_stat == pytest.approx(ref.statistic, rel=1e-10)
    assert c.p_t == pytest.approx(ref.pvalue, rel=1e-10)
    ci = ref.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert c.mean_diff == pytest.approx(np.mean(variant - baseline), rel=1e-12)


def test_wilcoxon_exact_five_positive_differences():
    assert ps.wilcoxon_exact([1.0, 2.0, 3.0, 4.0, 5.0]) == 0.0625  # 2 / 2**5: the smallest p with 5 seeds
    assert ps.wilcoxon_exact([-1.0, -2.0, -3.0, -4.0, -5.0]) == 0.0625
    assert ps.wilcoxon_exact([1.0, -2.0, 3.0, 4.0, 5.0]) == 0.1875  # T+ = 13: P(T+ >= 13) = 3/32
    assert math.isnan(ps.wilcoxon_exact([0.0, 0.0, 0.0]))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_wilcoxon_matches_scipy_exact_without_ties(seed):
    rng = np.random.default_rng(seed)
    d = rng.normal(0.4, 1.0, 6 + 2 * seed)
    assert ps.wilcoxon_exact(d) == pytest.approx(stats.wilcoxon(d, method="exact").pvalue, rel=1e-12)


def test_wilcoxon_drops_zeros_and_uses_mid_ranks_for_ties():
    # Zeros dropped -> [1, 1, 2]: mid-ranks 1.5, 1.5, 3, all positive: T+ = 6 is the maximum, P = 1/8.
    assert ps.wilcoxon_exact([0.0, 1.0, -0.0, 1.0, 2.0]) == pytest.approx(0.25)
    # [1, -1, 2]: T+ = 1.5 + 3 = 4.5; sums over the 8 sign patterns: 0, 1.5, 1.5, 3, 3, 4.5, 4.5, 6 -> P(>=4.5)=3/8.
    assert ps.wilcoxon_exact([1.0, -1.0, 2.0]) == pytest.approx(0.75)


def test_zero_variance_differences():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scipy warnings may leak
        c = ps.paired_difference([1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0, 7.0])
        same = ps.paired_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
        lower = ps.paired_difference([3.0, 4.0, 5.0, 6.0, 7.0], [1.0, 2.0, 3.0, 4.0, 5.0], higher_is_better=False)
    assert (c.ci_low, c.ci_high, c.mean_diff) == (2.0, 2.0, 2.0)
    assert c.p_t == 0.0 and c.t_stat == math.inf
    assert c.p_wilcoxon == 0.0625
    assert c.verdict() == "better"
    assert (same.ci_low, same.ci_high, same.mean_diff) == (0.0, 0.0, 0.0)
    assert same.p_t == 1.0 and same.t_stat == 0.0
    assert math.isnan(same.p_wilcoxon)
    assert same.verdict() == "no detectable difference"
    assert lower.t_stat == -math.inf and lower.p_t == 0.0 and lower.verdict() == "better"


def test_paired_difference_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 seeds"):
        ps.paired_difference([1.0], [2.0])
    with pytest.raises(ValueError, match="at least 2 seeds"):
        ps.paired_difference([], [])
    with pytest.raises(ValueError, match="3 values but variant has 2"):
        ps.paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="variant has non-finite values at positions 1"):
        ps.paired_difference([1.0, 2.0, 3.0], [1.0, float("nan"), 3.0])
    with pytest.raises(ValueError, match="confidence"):
        ps.paired_difference([1.0, 2.0], [2.0, 3.5], confidence=95)


def test_verdict_branches_higher_is_better():
    assert _comparison(1.0, -0.5, 2.5, p_t=0.2).verdict() == "no detectable difference"
    assert _comparison(1.0, 0.0, 2.0, p_t=0.05).verdict() == "no detectable difference"  # closed interval
    assert _comparison(1.0, 0.5, 1.5, p_t=0.01).verdict() == "better"
    assert _comparison(-1.0, -1.5, -0.5, p_t=0.01).verdict() == "worse"
    after = "no detectable difference after correction"
    assert _comparison(1.0, 0.5, 1.5, p_t=0.01, p_adjusted=0.06).verdict() == after
    assert _comparison(1.0, 0.5, 1.5, p_t=0.01, p_adjusted=0.05).verdict() == after  # p >= alpha
    assert _comparison(1.0, 0.5, 1.5, p_t=0.01, p_adjusted=0.03).verdict() == "better"
    assert _comparison(1.0, 0.5, 1.5, p_t=0.01, p_adjusted=0.03).verdict(alpha=0.01) == \
        "no detectable difference after correction"
    # Unadjusted: p_t stands in for p_adjusted.
    assert _comparison(1.0, 0.5, 1.5, p_t=0.07).verdict() == "no detectable difference after correction"


def test_verdict_fid_direction():
    # FID: lower is better, so a negative difference (variant lower) is "better".
    assert _comparison(-2.0, -3.0, -1.0, p_t=0.01, higher_is_better=False).verdict() == "better"
    assert _comparison(2.0, 1.0, 3.0, p_t=0.01, higher_is_better=False).verdict() == "worse"
    assert _comparison(-2.0, -3.0, 1.0, p_t=0.2, higher_is_better=False).verdict() == "no detectable difference"
    c = ps.paired_difference([40.0, 42.0, 38.0, 41.0, 39.0], [35.0, 38.0, 33.5, 36.0, 34.0], higher_is_better=False)
    assert c.mean_diff == pytest.approx(-4.7) and c.ci_high < 0
    assert c.verdict() == "better"


def test_verdict_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        _comparison(1.0, 0.5, 1.5, p_t=0.01).verdict(alpha=5)


def test_holm_hand_example():
    assert ps.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_passes_nan_through_and_does_not_count_it():
    out = ps.holm([0.01, math.nan, 0.04, 0.03])
    assert math.isnan(out[1])
    assert [out[0], out[2], out[3]] == pytest.approx([0.03, 0.06, 0.06])
    assert all(math.isnan(x) for x in ps.holm([math.nan, math.nan]))
    assert ps.holm([]) == []


def test_holm_caps_at_one_and_stays_monotone():
    # sorted 0.001 (x4), 0.2 (x3 = 0.6), 0.5 (x2 = 1.0), 0.6 (x1 = 0.6 -> max 1.0)
    assert ps.holm([0.5, 0.001, 0.6, 0.2]) == pytest.approx([1.0, 0.004, 1.0, 0.6])
    assert ps.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert ps.holm([0.02]) == pytest.approx([0.02])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ps.holm([0.5, 1.5])


def test_adjust_sets_p_adjusted_from_p_t_only():
    comparisons = [_comparison(1.0, 0.5, 1.5, p_t=p) for p in (0.01, 0.04, 0.03)]
    adjusted = ps.adjust(comparisons)
    assert [c.p_adjusted for c in adjusted] == pytest.approx([0.03, 0.06, 0.06])
    assert [c.verdict() for c in adjusted] == ["better", "no detectable difference after correction",
                                               "no detectable difference after correction"]
    for before, after in zip(comparisons, adjusted):
        assert dataclasses.replace(after, p_adjusted=math.nan) == before  # nothing else changed
    assert all(math.isnan(c.p_adjusted) for c in comparisons)  # the inputs are untouched (frozen)


def test_pair_by_seed_orders_by_seed():
    seeds, base, var = ps.pair_by_seed({3: 30.0, 0: 0.0, 1: 10.0}, {1: 11.0, 3: 33.0, 0: 1.0})
    assert seeds == [0, 1, 3]
    np.testing.assert_array_equal(base, [0.0, 10.0, 30.0])
    np.testing.assert_array_equal(var, [1.0, 11.0, 33.0])
    assert base.dtype == np.float64 and var.dtype == np.float64


def test_seed_mismatch_message():
    baseline = {s: 1.0 for s in range(5)}
    variant = {s: 2.0 for s in range(4)}
    with pytest.raises(SeedMismatchError) as info:
        ps.pair_by_seed(baseline, variant, what="rkl/lik vs rkl/none")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("rkl/lik has seeds 0,1,2,3 but rkl/none has 0,1,2,3,4: ")
    assert "same seeds in both cells" in message and "run the missing seeds" in message and "--seeds" in message
    assert isinstance(info.value, ValueError)


def test_seed_mismatch_message_without_cell_names():
    with pytest.raises(SeedMismatchError, match=r"^IS: the variant has seeds 1,2 but the baseline has 0,1:"):
        ps.pair_by_seed({0: 1.0, 1: 1.0}, {1: 1.0, 2: 1.0}, what="IS")
    with pytest.raises(SeedMismatchError, match=r"^the variant has seeds none but the baseline has 0:"):
        ps.pair_by_seed({0: 1.0}, {})
