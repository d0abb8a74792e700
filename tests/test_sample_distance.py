"""Energy distance and MMD against closed forms and brute-force formulas."""
import math

import numpy as np
import pytest

from va_core import sample_distance as sd


def test_energy_distance_matches_brute_force_and_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    y = rng.normal(size=(200, 2)) + np.array([0.5, 0.0])
    dist = lambda a, b: np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).mean()
    brute = 2 * dist(x, y) - dist(x, x) - dist(y, y)
    assert sd.energy_distance(x, y, chunk=7) == pytest.approx(brute, rel=1e-7)
    # 1-D closed form: N(0,1) vs N(0,1) shifted by a: 2 E|X - Y| - 2 E|X - X'|,
    # E|N(a, 2)| = 2 phi(a/sqrt2) sqrt2 + a (2 Phi(a/sqrt2) - 1).
    a = 1.0
    big = rng.normal(size=(6000, 1))
    big_y = rng.normal(size=(6000, 1)) + a
    s = math.sqrt(2.0)
    phi = math.exp(-0.5 * (a / s) ** 2) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + math.erf(a / s / math.sqrt(2)))
    exact = 2 * (s * 2 * phi + a * (2 * Phi - 1)) - 2 * (2 * s / math.sqrt(2 * math.pi))
    assert sd.energy_distance(big, big_y) == pytest.approx(exact, abs=0.03)
    assert sd.energy_distance(big[:3000], big[3000:]) < 0.01


def test_mmd_matches_brute_force_and_separates():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 3))
    y = rng.normal(size=(120, 3)) * 1.5
    h = 1.3
    k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * h * h))
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    brute = ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
             - 2 * kxy.mean())
    assert sd.mmd2(x, y, bandwidth=h, chunk=11) == pytest.approx(brute, rel=1e-7)
    same = sd.mmd2(rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)))
    diff = sd.mmd2(rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)) * 1.3)
    assert abs(same) < 0.003 < diff
    # median heuristic: pooled N(0, I_2) distances are Rayleigh(sqrt 2), median 2 sqrt(ln 2)
    assert sd.median_bandwidth(rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2))) == pytest.approx(
        2 * math.sqrt(math.log(2)), rel=0.05)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same dimension"):
        sd.energy_distance(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        sd.mmd2(np.array([[0.0], [np.nan]]), np.zeros((3, 1)))
