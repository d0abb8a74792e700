"""Soft Q-learning pieces (rl/): importance-sampled soft value, tanh change of variables, MAF proposal
normalisation, replay buffer persistence, annealing weights, checkpoint/resume of the agent."""
import math

import numpy as np
import pytest

import rl  # noqa: F401  (compat layer, TF_USE_LEGACY_KERAS)
from va_core import schedules, tempering
from rl.replay import ReplayBuffer

tf = pytest.importorskip("tensorflow")


# ------------------------------------------------------------------------------------ soft value
def test_soft_value_matches_closed_form_for_quadratic_q_and_gaussian_proposal():
    """V = alpha log int exp(Q/alpha) da for Q(a) = c - k/2 ||a - m||^2 is c + alpha d/2 log(2 pi alpha / k)."""
    from rl.soft_value import soft_value

    rng = np.random.default_rng(0)
    d, alpha, n = 2, 0.5, 200_000
    ks, cs = np.array([3.0, 0.8]), np.array([1.5, -2.0])
    ms = np.array([[0.3, -0.2], [-1.0, 0.5]])
    mu, sigma = np.array([0.0, 0.1]), 0.9  # proposal N(mu, sigma^2 I), deliberately not the optimum
    a = mu + sigma * rng.standard_normal((2, n, d))
    log_q = -0.5 * np.sum(((a - mu) / sigma) ** 2, -1) - d * math.log(sigma) - 0.5 * d * math.log(2 * math.pi)
    q_vals = cs[:, None] - 0.5 * ks[:, None] * np.sum((a - ms[:, None, :]) ** 2, -1)
    v = soft_value(tf.constant(q_vals), tf.constant(log_q), alpha).numpy()
    exact = cs + alpha * 0.5 * d * np.log(2 * math.pi * alpha / ks)
    np.testing.assert_allclose(v, exact, atol=0.02)
    # With one sample the estimator is exactly Q - alpha log q.
    v1 = soft_value(tf.constant(q_vals[:, :1]), tf.constant(log_q[:, :1]), alpha).numpy()
    np.testing.assert_allclose(v1, q_vals[:, 0] - alpha * log_q[:, 0], rtol=1e-12)
    with pytest.raises(ValueError, match="alpha"):
        soft_value(tf.constant(q_vals), tf.constant(log_q), 0.0)


def test_config_rejects_an_untrained_maf_proposal_and_a_one_dimensional_maf_policy():
    from rl.agent import SoftQConfig

    # only the MAF policy update trains the MAF, so SVGD cannot use it as the value's proposal
    with pytest.raises(ValueError, match="value_proposal='maf' needs policy_update='maf'"):
        SoftQConfig(obs_dim=3, act_dim=2, policy_update="svgd", value_proposal="maf")
    # one action dimension: every block is an affine map of a state-conditioned Gaussian
    with pytest.raises(ValueError, match="policy_update='maf' needs act_dim >= 2, got 1"):
        SoftQConfig(obs_dim=3, act_dim=1, policy_update="maf")
    assert SoftQConfig(obs_dim=3, act_dim=1, policy_update="svgd").value_proposal == "uniform"
    assert SoftQConfig(obs_dim=3, act_dim=2).value_proposal == "maf"


def test_uniform_proposal_soft_value_of_constant_q_is_log_box_volume():
    from rl.soft_value import soft_value, uniform_box_log_prob

    q = tf.fill([3, 16], 2.0)
    v = soft_value(q, tf.fill([3, 16], uniform_box_log_prob(2)), alpha=1.0).numpy()
    np.testing.assert_allclose(v, 2.0 + math.log(4.0), rtol=1e-6)  # int_{[-1,1]^2} e^2 da = 4 e^2


def test_tanh_log_det_matches_jacobian_and_stays_finite():
    from rl.soft_value import tanh_log_det

    u = tf.constant([[0.3, -1.2], [2.5, 0.0], [-4.0, 1.0]], tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(u)
        a = tf.tanh(u)
    jac = tape.batch_jacobian(a, u).numpy()
    expected = np.log(np.abs(np.linalg.det(jac)))
    np.testing.assert_allclose(tanh_log_det(u).numpy(), expected, rtol=1e-10)
    big = tanh_log_det(tf.constant([[40.0, -40.0]], tf.float32)).numpy()
    np.testing.assert_allclose(big, 2 * 2 * (math.log(2.0) - 40.0), rtol=1e-5)  # log(4 e^-80), no -inf


# ----------------------------------------------------------------------- MAF proposal normalisation
def _proposal(act_dim, obs_dim, seed):
    from tfp_flows.maf import MAF

    return MAF(act_dim, hidden_units=(32, 32), num_blocks=4, conditional_dim=obs_dim, seed=seed)


def test_conditional_maf_log_prob_integrates_to_one_1d():
    """1-D: int q(u|s) du = 1, and int q_a(a|s) da = 1 on (-1, 1) for the squashed action density."""
    from rl.soft_value import squashed_log_prob

    maf = _proposal(1, 3, seed=1)
    u = np.linspace(-60, 60, 24001)[:, None].astype(np.float32)  # the flow can scale by up to e^12
    for s in ([1.0, 0.5, -2.0], [2.0, -1.0, 0.5]):  # s = 0 would give the identity flow in 1-D
        lp = maf.log_prob(u, conditional=np.tile(np.array(s, np.float32), (len(u), 1))).numpy()
        assert np.trapezoid(np.exp(lp.astype(np.float64)), u[:, 0]) == pytest.approx(1.0, abs=1e-3)
        # Not a trivial flow: the density differs from the standard normal.
        assert np.max(np.abs(lp - (-0.5 * u[:, 0] ** 2 - 0.5 * math.log(2 * math.pi)))) > 0.5
    # Action space, on a uniform grid of a (a conditional whose mass stays away from the box's edges,
    # where q_a has sharp peaks a uniform grid cannot resolve).
    a = np.linspace(-1, 1, 40001)[1:-1]
    ua = np.arctanh(a)[:, None].astype(np.float32)
    cond = np.tile(np.array([0.3, -0.2, 0.1], np.float32), (len(ua), 1))
    lpa = squashed_log_prob(maf.log_prob(ua, conditional=cond), tf.constant(ua)).numpy()
    assert np.trapezoid(np.exp(lpa.astype(np.float64)), a) == pytest.approx(1.0, abs=1e-3)


def test_conditional_maf_log_prob_integrates_to_one_2d():
    """2-D: the agent's conditional MAF proposal log q(u|s), for two observations s."""
    from rl.agent import SoftQAgent, SoftQConfig

    agent = SoftQAgent(SoftQConfig(obs_dim=8, act_dim=2, hidden=(16, 16), maf_hidden=(32, 32), seed=3))
    g = np.linspace(-40, 40, 401)
    uu = tf.constant(np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2).astype(np.float32))
    totals = []
    for scale in (0.5, 1.0):
        s = scale * np.random.default_rng(0).standard_normal(8).astype(np.float32)
        lp = agent.proposal_log_prob(uu, tf.constant(np.tile(s, (len(g) ** 2, 1)))).numpy().astype(np.float64)
        totals.append(np.trapezoid(np.trapezoid(np.exp(lp).reshape(len(g), len(g)), g, axis=1), g))
    np.testing.assert_allclose(totals, 1.0, atol=5e-3)


# ------------------------------------------------------------------------------------ replay buffer
def _transition(i, obs_dim=3, act_dim=2):
    # Values exactly representable in float32, distinct per transition.
    obs = np.arange(obs_dim, dtype=np.float32) + 0.25 * i
    return obs, np.full(act_dim, -0.5 + 0.125 * i, np.float32), 1.5 * i, obs + 1.0, i % 3 == 0


def test_replay_buffer_keeps_exact_transitions_across_save_load(tmp_path):
    buf = ReplayBuffer(3, 2, capacity=5)
    for i in range(8):  # wraps around: transitions 3..7 remain
        buf.add(*_transition(i))
    assert len(buf) == 5
    kept = buf.in_order()
    for j, i in enumerate(range(3, 8)):
        obs, act, rew, nxt, term = _transition(i)
        np.testing.assert_array_equal(kept["obs"][j], obs)
        np.testing.assert_array_equal(kept["action"][j], act)
        assert kept["reward"][j] == rew and kept["terminated"][j] == term
        np.testing.assert_array_equal(kept["next_obs"][j], nxt)
    buf.save(tmp_path / "replay.npz")
    back = ReplayBuffer.load(tmp_path / "replay.npz")
    assert (back.capacity, len(back)) == (5, 5)
    for k, v in buf.in_order().items():
        np.testing.assert_array_equal(back.in_order()[k], v)
        assert back.in_order()[k].dtype == v.dtype
    # Same insertion point: the next transition overwrites the same (oldest) slot in both.
    buf.add(*_transition(8))
    back.add(*_transition(8))
    for k, v in buf.in_order().items():
        np.testing.assert_array_equal(back.in_order()[k], v)
    b1 = buf.sample(16, np.random.default_rng(7))
    b2 = back.sample(16, np.random.default_rng(7))
    for k in b1:
        np.testing.assert_array_equal(b1[k], b2[k])
    assert set(b1["reward"].tolist()) <= {1.5 * i for i in range(4, 9)}


def test_replay_buffer_rejects_bad_shapes_and_empty_sampling():
    buf = ReplayBuffer(3, 2, capacity=4)
    with pytest.raises(ValueError, match="action must have shape"):
        buf.add(np.zeros(3), np.zeros(3), 0.0, np.zeros(3), False)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(2, np.random.default_rng(0))


# ------------------------------------------------------------------------------------- annealing
@pytest.mark.parametrize("anneal", ["ent", "lik"])
@pytest.mark.parametrize("lam", [-0.5, 0.0, 1.0, 3.0])
def test_anneal_weights_target_the_implied_temperature(anneal, lam):
    """c_ent E[log q] - c_lik E[Q] is minimised by q ∝ exp(Q)^(c_lik/c_ent): beta must match Corollary 2.2."""
    lam_t = tf.constant(lam)
    c_ent, c_lik = (float(w) for w in tempering.weights(anneal, lam_t, one=tf.ones_like(lam_t)))  # as the agent calls it
    assert c_lik / c_ent == pytest.approx(tempering.implied_beta(anneal, lam))


# --------------------------------------------------------------------------- agent resume, CLI input
def _batch(rng, n=8):
    return {"obs": rng.standard_normal((n, 8)).astype(np.float32),
            "action": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
            "reward": rng.standard_normal(n).astype(np.float32),
            "next_obs": rng.standard_normal((n, 8)).astype(np.float32),
            "terminated": np.zeros(n, np.float32)}


@pytest.mark.slow
def test_maf_agent_checkpoint_restores_training_exactly(tmp_path):
    """Train, checkpoint, train on: a restored agent continues with identical losses (weights, Adam, RNG)."""
    from rl.agent import SoftQAgent, SoftQConfig

    cfg = dict(obs_dim=8, act_dim=2, hidden=(16, 16), maf_hidden=(16, 16), batch_size=8, particles=4,
               value_samples=4, target_update_interval=2, seed=5)
    rng = np.random.default_rng(0)
    batches = [_batch(rng) for _ in range(5)]
    tf.config.run_functions_eagerly(True)  # five tiny steps: eager is faster than tracing the step twice
    try:
        _train_save_restore(SoftQAgent, SoftQConfig, cfg, batches, tmp_path)
    finally:
        tf.config.run_functions_eagerly(False)


def _train_save_restore(SoftQAgent, SoftQConfig, cfg, batches, tmp_path):
    agent = SoftQAgent(SoftQConfig(**cfg))
    for b in batches[:3]:
        agent.train_step(b, lam=0.5)
    agent.checkpoint().write(str(tmp_path / "ckpt"))
    after = [agent.train_step(b, lam=0.5) for b in batches[3:]]
    restored = SoftQAgent(SoftQConfig(**cfg))
    restored.checkpoint().read(str(tmp_path / "ckpt")).assert_existing_objects_matched()
    again = [restored.train_step(b, lam=0.5) for b in batches[3:]]
    for x, y in zip(after, again):
        for k in x:
            assert x[k] == pytest.approx(y[k], rel=1e-5, abs=1e-6), k
    assert after[0]["q_loss"] != pytest.approx(after[1]["q_loss"])  # training did move


def test_train_cli_rejects_bad_settings(tmp_path):
    from rl.train import main

    with pytest.raises(ValueError, match="--steps must be >= 1"):
        main(["--steps", "0", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="reaches lambda=-1 at iteration 0.*keep lambda > -1"):
        main(["--anneal", "ent", "--lambda0", "-1", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="the sinusoidal schedule with lambda0=2 reaches lambda=-1.8"):
        main(["--anneal", "ent", "--lambda0", "2", "--schedule", "sinusoidal", "--steps", "1000",
              "--start-steps", "10", "--out", str(tmp_path)])


def test_random_policy_baseline_uses_the_agents_episode_length(monkeypatch):
    """reproduce/rl.py's random baseline runs the horizon that --max-episode-steps gives the agents."""
    import importlib.util
    from pathlib import Path

    from rl import evaluation

    path = Path(__file__).resolve().parents[1] / "reproduce" / "rl.py"
    spec = importlib.util.spec_from_file_location("reproduce_rl", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lengths = []

    def episode_lengths(env, episodes):
        for i in range(episodes):
            env.reset(seed=i)
            steps, done = 0, False
            while not done:
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                steps, done = steps + 1, terminated or truncated
            lengths.append(steps)
        return [0.0] * episodes
    monkeypatch.setattr(evaluation, "random_policy_returns", episode_lengths)
    module.random_baseline("Swimmer-v5", 2, ["--max-episode-steps", "7", "--steps", "100"])
    module.random_baseline("Swimmer-v5", 1)
    assert lengths == [7, 7, 1000]
