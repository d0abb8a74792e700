"""Annealing schedules against hand-computed values (SPEC section 3, supplement J.1)."""
import math

import pytest

from va_core import schedules, tempering


def test_lgan_triangle_reference_values():
    f = schedules.make("lgan", 1.0, 150000, knot_interval=10000)
    assert f(0) == pytest.approx(1.0)
    assert f(10000) == pytest.approx(-0.9333333, abs=1e-6)
    assert f(20000) == pytest.approx(0.8666667, abs=1e-6)
    assert f(5000) == pytest.approx(0.0333333, abs=1e-6)
    assert f(140000) == pytest.approx(1.0 / 15.0)  # k = 14, even, last non-zero knot
    assert f(145000) == pytest.approx(1.0 / 30.0)
    assert f(150000) == 0.0 and f(200000) == 0.0


def test_linear_reaches_zero_at_t_max():
    f = schedules.make("linear", -2.0, 1000, end_fraction=0.8)
    assert f(0) == -2.0
    assert f(400) == pytest.approx(-1.0)
    assert f(800) == 0.0 and f(1000) == 0.0
    assert schedules.make("linear", 1.0, 100)(40) == pytest.approx(0.5)  # default T_max = 0.8 T


def test_exponential_decays_to_final_ratio():
    f = schedules.make("exponential", 10.0, 2000, final_ratio=1e-3)
    tau = math.log(1e3) / 2000
    assert f(0) == 10.0
    assert f(700) == pytest.approx(10.0 * math.exp(-tau * 700))
    assert f(2000) == pytest.approx(1e-2)


def test_sinusoidal_five_cycles_with_linear_envelope():
    T = 1000
    f = schedules.make("sinusoidal", 1.0, T)
    assert f(0) == 1.0
    assert f(100) == pytest.approx(0.9 * math.cos(2 * math.pi * 0.5))  # half a cycle: -0.9
    assert f(50) == pytest.approx(0.0, abs=1e-12)  # quarter cycle
    assert f(200) == pytest.approx(0.8)
    assert f(T) == 0.0
    sign_changes = sum(1 for t in range(1, T) if f(t) * f(t - 1) < 0)
    assert sign_changes == 10  # two per cycle


def test_stepwise_is_the_sign_of_the_sinusoid():
    T = 1000
    step = schedules.make("stepwise", 2.0, T, cycles=5)
    sine = schedules.make("sinusoidal", 2.0, T, cycles=5)
    for t in (0, 10, 60, 120, 160, 333, 999):
        envelope = 2.0 * (1 - t / T)
        assert abs(step(t)) == pytest.approx(envelope)
        if abs(sine(t)) > 1e-9:
            assert math.copysign(1, step(t)) == math.copysign(1, sine(t))
    assert step(T) == 0.0


def test_static_is_constant():
    f = schedules.make("static", 0.7, 10)
    assert [f(t) for t in (0, 5, 10)] == [0.7, 0.7, 0.7]


@pytest.mark.parametrize("name,options,message", [
    ("linear", {"end_fraction": 1.5}, "cannot reach 0"),
    ("linear", {"end_fraction": 0.0}, "cannot reach 0"),
    ("exponential", {"final_ratio": 0.5}, "must end near 0"),
    ("sinusoidal", {"cycles": 0}, "cycles"),
    ("lgan", {"knot_interval": 0}, "knot_interval"),
    ("linear", {"cycles": 3}, "unknown: cycles"),
])
def test_bad_options_are_clear_errors(name, options, message):
    with pytest.raises(ValueError, match=message):
        schedules.make(name, 1.0, 100, **options)


def test_unknown_name_and_bad_lengths():
    with pytest.raises(ValueError, match="unknown schedule 'cosine'.*linear"):
        schedules.make("cosine", 1.0, 100)
    with pytest.raises(ValueError, match="positive integer"):
        schedules.make("linear", 1.0, 0)
    with pytest.raises(ValueError, match="finite"):
        schedules.make("linear", float("nan"), 10)


def test_config_records_resolved_options():
    f = schedules.make("linear", 1.0, 100)
    assert f.config() == {"name": "linear", "lambda0": 1.0, "total_iterations": 100, "end_fraction": 0.8}


def test_implied_beta_corollary_2_2():
    assert tempering.implied_beta("lik", 1.0) == 2.0
    assert tempering.implied_beta("lik", -0.5) == 0.5
    assert tempering.implied_beta("ent", 1.0) == 0.5
    assert tempering.implied_beta("ent", -0.5) == 2.0
    assert tempering.implied_beta("none", 3.0) == 1.0
    # the LGAN release's term lam mean((sg r - f) f) has gradient lam (r - 2f): no tempered target
    assert math.isnan(tempering.implied_beta("lgan", 0.5))


def test_register_custom_schedule():
    name = "test_halfway_step"

    @schedules.register(name)
    def _halfway(lambda0, total_iterations, at=0.5):
        return lambda t: lambda0 if t < at * total_iterations else 0.0

    f = schedules.make(name, 3.0, 10, at=0.3)
    assert (f(2), f(3)) == (3.0, 0.0)
    with pytest.raises(ValueError, match="already registered"):
        schedules.register(name)(_halfway)


def test_misplaced_option_names_the_schedules_that_take_it():
    assert schedules.misplaced_option("linear", {"cycles": 3}) == (
        "--cycles is an option of the sinusoidal and stepwise schedules, not of linear; drop it")
    assert schedules.misplaced_option("static", ["end_fraction"]) == (
        "--end-fraction is an option of the linear, sinusoidal and stepwise schedules, not of static; drop it")
    assert schedules.misplaced_option("lgan", {"knot_interval": 5}) is None
    assert schedules.misplaced_option("no-such-schedule", {"cycles": 3}) is None  # named by make's own error
    assert schedules.misplaced_option("linear", {"end_fractoin": 0.5}) is None  # a typo: make names it
    with pytest.raises(ValueError, match="unknown: end_fractoin"):
        schedules.make("linear", 1.0, 100, end_fractoin=0.5)


def test_register_refuses_a_builder_whose_options_are_hidden():
    with pytest.raises(TypeError, match=r"named keyword argument with a default.*\(\*\*options hides the options\)"):
        schedules.register("hidden_options")(lambda lambda0, total_iterations, **options: (lambda t: 0.0))
    with pytest.raises(TypeError, match="named keyword argument with a default"):
        schedules.register("no_default")(lambda lambda0, total_iterations, width: (lambda t: 0.0))
    assert "hidden_options" not in schedules.names() and "no_default" not in schedules.names()


def test_one_rule_for_a_lambda0_with_nothing_to_anneal():
    assert tempering.idle_lambda0("none", 0.5) == (
        "--lambda0 0.5 would have no effect with --anneal none; drop it, or pass --anneal lik or ent")
    assert tempering.idle_lambda0("none", 2.0, style="python") == (
        "lambda0=2 would have no effect with anneal='none'; drop it, or pass anneal='lik' or 'ent'")
    assert tempering.idle_lambda0("none", -1.0, terms=("lik", "ent", "lgan")).endswith("pass --anneal lik, ent or lgan")
    for anneal, lambda0 in (("none", 0.0), ("none", None), ("lik", 0.5), ("ent", 0.0)):
        assert tempering.idle_lambda0(anneal, lambda0) is None
