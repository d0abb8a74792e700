"""Soft Q-learning agent (Haarnoja et al., ICML 2017) with two policy updates (SPEC section 8; supplement J.3).

* ``policy_update="maf"`` (the paper's U-GAN agent): the policy u = f(s, xi), a = tanh(u), is a
  U-GAN sampler of pi*(a|s) ∝ exp(Q(s, a)/alpha). A conditional 4-block MAF q(u|s) is fitted by
  maximum likelihood to the policy's samples, so log q_a (= log q(u|s) minus the tanh log-det) stands
  in for the policy's log-density. The policy minimises the annealed reverse KL (SPEC section 1)
      entropy form ("ent"):     (1 + lambda_t) E[log q_a(a|s)] - E[Q(s, a)]/alpha
      likelihood form ("lik"):  E[log q_a(a|s)] - (1 + lambda_t) E[Q(s, a)]/alpha
  ("none": lambda_t = 0, the plain reverse KL), back-propagating through the MAF's density and Q.
  The same MAF is the proposal of the importance-sampled soft value of the Q target.
* ``policy_update="svgd"`` (the baseline: the original soft Q-learning): amortised SVGD on the
  particles u_j = f(s, xi_j) towards log p(u|s) = Q(s, tanh u)/alpha + sum log(1 - tanh(u)^2)
  (the density on u whose image under tanh is exp(Q/alpha) on the action box); the soft value uses
  uniform actions on [-1, 1]^d as in the original code.

Temperature: alpha = 1 / reward_scale, implemented as the original code does (alpha = 1 on rewards
multiplied by ``reward_scale``). Action bounds: squashing with tanh and its log-determinant.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Tuple

import numpy as np
import tensorflow as tf

from va_core import tempering

from rl.networks import DEFAULT_HIDDEN, QNetwork, SamplingPolicy
from rl.soft_value import soft_value, squashed_log_prob, tanh_log_det, uniform_box_log_prob

POLICY_UPDATES = ("maf", "svgd")
VALUE_PROPOSALS = ("maf", "uniform")
MAF_GRAD_CLIP = 100.0  # global-norm clip of the MAF's likelihood gradient (as tfp_flows.maf.fit_maf; guards early steps)


@dataclass
class SoftQConfig:
    """Hyper-parameters; defaults are the paper's (J.3) or the reference soft Q-learning code's (SPEC section 8)."""

    obs_dim: int
    act_dim: int
    policy_update: str = "maf"
    value_proposal: str | None = None  # None: "maf" for the MAF agent, "uniform" for the SVGD baseline
    anneal: str = "ent"  # how lambda_t enters the MAF policy's objective (ignored by SVGD)
    hidden: Tuple[int, ...] = DEFAULT_HIDDEN  # Q and policy nets: 2 hidden layers of 128 (J.3)
    maf_blocks: int = 4  # "a four block shift and scale MAF" (J.3)
    maf_hidden: Tuple[int, ...] = (512, 512)  # "each has two hidden layers with size 512" (J.3)
    learning_rate: float = 4e-4  # J.3, for Q, policy and MAF
    batch_size: int = 128  # J.3
    particles: int = 16  # actions per state in the policy update (reference SQL code)
    value_samples: int = 16  # actions per state in the importance-sampled value (reference SQL code)
    reward_scale: float = 30.0  # temperature alpha = 1/reward_scale (current original SQL code; 100 in Li et al.)
    discount: float = 0.99  # reference SQL code
    target_update_interval: int = 1000  # gradient steps between hard target copies (reference SQL code)
    seed: int = 0

    def __post_init__(self):
        if self.policy_update not in POLICY_UPDATES:
            raise ValueError("policy_update must be one of {}, got {!r}".format(POLICY_UPDATES, self.policy_update))
        if self.value_proposal is None:
            self.value_proposal = "maf" if self.policy_update == "maf" else "uniform"
        if self.value_proposal not in VALUE_PROPOSALS:
            raise ValueError("value_proposal must be one of {}, got {!r}".format(VALUE_PROPOSALS, self.value_proposal))
        if self.anneal not in tempering.WEIGHTED_FORMS:
            raise ValueError("anneal must be one of {}, got {!r}".format(tempering.WEIGHTED_FORMS, self.anneal))
        for name in ("batch_size", "particles", "value_samples", "target_update_interval", "maf_blocks"):
            if int(getattr(self, name)) < 1:
                raise ValueError("{} must be >= 1, got {}".format(name, getattr(self, name)))
        if self.policy_update == "svgd" and self.particles < 2:
            raise ValueError("the SVGD update needs particles >= 2 (a kernel between particles), got {}".format(
                self.particles))
        if self.policy_update == "svgd" and self.value_proposal == "maf":
            raise ValueError("value_proposal='maf' needs policy_update='maf' (only the MAF policy update trains the "
                             "MAF); with policy_update='svgd' use value_proposal='uniform'")
        if self.policy_update == "maf" and int(self.act_dim) < 2:
            raise ValueError("policy_update='maf' needs act_dim >= 2, got {}: in one dimension the MAF's blocks are "
                             "affine maps of a Gaussian given the state; use policy_update='svgd'".format(self.act_dim))
        if not self.reward_scale > 0:
            raise ValueError("reward_scale (= 1/temperature) must be > 0, got {}".format(self.reward_scale))
        self.hidden = tuple(int(h) for h in self.hidden)
        self.maf_hidden = tuple(int(h) for h in self.maf_hidden)

    @property
    def uses_maf(self) -> bool:
        """Whether the agent builds the conditional MAF (as the policy or as the value's proposal)."""
        return self.policy_update == "maf" or self.value_proposal == "maf"

    def to_dict(self) -> dict:
        """The configuration as a plain dict (recorded in config.json and checkpoints)."""
        return asdict(self)


class SoftQAgent(tf.Module):
    """Q-network, target network, sampling policy, optional conditional MAF proposal, and their optimisers."""

    def __init__(self, config: SoftQConfig):
        super().__init__(name="soft_q_agent")
        self.config = c = config
        self.q = QNetwork(c.obs_dim, c.act_dim, c.hidden, seed=c.seed * 10 + 1, name="q")
        self.q_target = QNetwork(c.obs_dim, c.act_dim, c.hidden, seed=c.seed * 10 + 1, name="q_target")
        self.policy = SamplingPolicy(c.obs_dim, c.act_dim, c.hidden, seed=c.seed * 10 + 2, name="policy")
        self.maf = None
        if c.uses_maf:
            from tfp_flows.maf import MAF  # the project's conditional MAF (SPEC section 7)

            self.maf = MAF(c.act_dim, hidden_units=c.maf_hidden, num_blocks=c.maf_blocks,
                           conditional_dim=c.obs_dim, name="proposal_maf", seed=c.seed * 10 + 4)
        self.q_opt = tf.keras.optimizers.Adam(c.learning_rate)
        self.pi_opt = tf.keras.optimizers.Adam(c.learning_rate)
        self.maf_opt = tf.keras.optimizers.Adam(c.learning_rate) if self.maf is not None else None
        self.rng = tf.random.Generator.from_seed(c.seed * 10 + 3)
        self.gradient_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="gradient_steps")
        self._alpha = 1.0  # temperature 1/reward_scale carried by the scaled reward (reference SQL code)
        self._built = False
        self._train = tf.function(self._train_step, reduce_retracing=True)
        self._act = tf.function(self._act_fn, input_signature=[
            tf.TensorSpec([None, c.obs_dim], tf.float32), tf.TensorSpec([None, c.act_dim], tf.float32)])

    # ----------------------------------------------------------------------------------------------
    def _maf_variables(self):
        return list(self.maf.trainable_variables) if self.maf is not None else []

    def build(self) -> None:
        """Create every variable (network, optimiser slots) eagerly, so checkpoints can be restored into them."""
        if self._built:
            return
        c = self.config
        obs = tf.zeros([2, c.obs_dim])
        act = tf.zeros([2, c.act_dim])
        self.q(obs, act)
        self.q_target(obs, act)
        self.policy(obs, act)
        if self.maf is not None:
            self.maf.log_prob(act, conditional=obs)
        self.q_opt.build(self.q.trainable_variables)
        self.pi_opt.build(self.policy.trainable_variables)
        if self.maf_opt is not None:
            self.maf_opt.build(self._maf_variables())
        self.q_target.copy_from(self.q)
        self._built = True

    def checkpoint(self) -> tf.train.Checkpoint:
        """Everything that training changes: weights, optimiser states, the noise generator, the step count."""
        self.build()
        items = dict(q=self.q, q_target=self.q_target, policy=self.policy, q_opt=self.q_opt,
                     pi_opt=self.pi_opt, rng=self.rng, gradient_steps=self.gradient_steps)
        if self.maf is not None:
            items.update(maf=self.maf, maf_opt=self.maf_opt)
        return tf.train.Checkpoint(**items)

    # ----------------------------------------------------------------------------------------------
    def _act_fn(self, obs, noise):
        return self.policy(obs, noise)

    def act(self, obs: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Actions a = tanh(f(s, xi)) for observations (n, obs_dim) and noise (n, act_dim); xi = 0: no exploration noise."""
        self.build()
        return self._act(tf.constant(obs, tf.float32), tf.constant(noise, tf.float32)).numpy()

    # ----------------------------------------------------------------------------------------------
    def proposal_log_prob(self, u: tf.Tensor, obs: tf.Tensor) -> tf.Tensor:
        """log q(u|s) of the conditional MAF for u (..., act_dim) and obs (..., obs_dim) of equal leading shape."""
        lead = tf.shape(u)[:-1]
        flat_u = tf.reshape(u, [-1, self.config.act_dim])
        flat_s = tf.reshape(obs, [-1, self.config.obs_dim])
        return tf.reshape(self.maf.log_prob(flat_u, conditional=flat_s), lead)

    def proposal_sample(self, obs: tf.Tensor, n: int) -> Tuple[tf.Tensor, tf.Tensor]:
        """n pre-squash actions per state from the MAF, u (B, n, d), with log q(u|s) (B, n)."""
        c = self.config
        batch = tf.shape(obs)[0]
        flat_s = tf.reshape(tf.repeat(obs[:, None, :], n, axis=1), [-1, c.obs_dim])
        seed = self.rng.uniform_full_int([2], dtype=tf.int32)  # a stateless seed for the MAF sampler
        u, lp = self.maf.sample_and_log_prob(batch * n, conditional=flat_s, seed=seed)
        return tf.reshape(u, [batch, n, c.act_dim]), tf.reshape(lp, [batch, n])

    def target_soft_value(self, next_obs: tf.Tensor) -> tf.Tensor:
        """Importance-sampled V(s') under the target Q-network (value_samples actions from the proposal)."""
        c = self.config
        m = c.value_samples
        if c.value_proposal == "maf":
            u, lp_u = self.proposal_sample(next_obs, m)
            u = tf.stop_gradient(u)
            actions = tf.tanh(u)
            log_q = squashed_log_prob(tf.stop_gradient(lp_u), u)
        else:
            actions = self.rng.uniform([tf.shape(next_obs)[0], m, c.act_dim], -1.0, 1.0)
            log_q = tf.fill(tf.shape(actions)[:-1], uniform_box_log_prob(c.act_dim))
        q = self.q_target(next_obs[:, None, :], actions)
        return soft_value(q, log_q, self._alpha)

    # ----------------------------------------------------------------------------------------------
    def _q_update(self, obs, action, reward, next_obs, terminated) -> Dict[str, tf.Tensor]:
        c = self.config
        v_next = tf.stop_gradient(self.target_soft_value(next_obs))
        target = c.reward_scale * reward + c.discount * (1.0 - terminated) * v_next
        with tf.GradientTape() as tape:
            q = self.q(obs, action)
            loss = 0.5 * tf.reduce_mean(tf.square(q - target))
        grads = tape.gradient(loss, self.q.trainable_variables)
        self.q_opt.apply_gradients(zip(grads, self.q.trainable_variables))
        return {"q_loss": loss, "q_mean": tf.reduce_mean(q), "v_next_mean": tf.reduce_mean(v_next)}

    def _policy_noise(self, batch):
        return self.rng.normal([batch, self.config.particles, self.config.act_dim])

    def _maf_policy_update(self, obs, lam) -> Dict[str, tf.Tensor]:
        """One MAF maximum-likelihood step on the policy's samples and one policy step on the annealed reverse KL.

        Both gradients come from one pass through the MAF: d(mean log q)/d(MAF weights) for the fit
        and d(mean log q)/du for the policy's entropy term.
        """
        c = self.config
        c_ent, c_lik = tempering.weights(c.anneal, lam, one=tf.ones_like(lam))
        xi = self._policy_noise(tf.shape(obs)[0])
        obs_rep = tf.repeat(obs[:, None, :], c.particles, axis=1)
        pi_vars = self.policy.trainable_variables
        maf_vars = self._maf_variables()
        with tf.GradientTape(persistent=True) as tape:
            u = self.policy.pre_squash(obs_rep, xi)
            log_q_u = self.proposal_log_prob(u, obs_rep)
            mean_log_q_u = tf.reduce_mean(log_q_u)
            log_det = tanh_log_det(u)
            q = self.q(obs_rep, tf.tanh(u))
            rest = tf.reduce_mean(-c_ent * log_det - c_lik * q / self._alpha)
        g_fit = tape.gradient(mean_log_q_u, maf_vars + [u])
        g_maf, g_u_entropy = g_fit[:-1], g_fit[-1]
        g_u = c_ent * g_u_entropy + tape.gradient(rest, u)
        g_pi = tape.gradient(u, pi_vars, output_gradients=g_u)
        del tape
        g_maf, _ = tf.clip_by_global_norm([-g for g in g_maf], MAF_GRAD_CLIP)
        self.maf_opt.apply_gradients(zip(g_maf, maf_vars))
        self.pi_opt.apply_gradients(zip(g_pi, pi_vars))
        log_q_a = mean_log_q_u - tf.reduce_mean(log_det)
        return {"maf_nll": -mean_log_q_u, "policy_loss": c_ent * log_q_a - c_lik * tf.reduce_mean(q) / self._alpha,
                "entropy_estimate": -log_q_a, "lambda": lam}

    def _svgd_policy_update(self, obs) -> Dict[str, tf.Tensor]:
        """Amortised SVGD (Haarnoja et al. 2017, Sec. 3.2; Wang & Liu 2016) on pre-squash particles."""
        from tfp_flows.svgd import svgd_direction

        xi = self._policy_noise(tf.shape(obs)[0])
        obs_rep = tf.repeat(obs[:, None, :], self.config.particles, axis=1)
        pi_vars = self.policy.trainable_variables
        with tf.GradientTape() as tape:
            u = self.policy.pre_squash(obs_rep, xi)
            u_fixed = tf.stop_gradient(u)
            with tf.GradientTape() as inner:
                inner.watch(u_fixed)
                log_p = self.q(obs_rep, tf.tanh(u_fixed)) / self._alpha + tanh_log_det(u_fixed)
            grad_log_p = inner.gradient(log_p, u_fixed)
            phi = tf.stop_gradient(svgd_direction(u_fixed, grad_log_p))
            # d/dtheta of this surrogate is -sum phi du/dtheta: the policy moves its samples along phi.
            surrogate = -tf.reduce_mean(tf.reduce_sum(phi * u, axis=-1))
        grads = tape.gradient(surrogate, pi_vars)
        self.pi_opt.apply_gradients(zip(grads, pi_vars))
        return {"svgd_phi_norm": tf.reduce_mean(tf.norm(phi, axis=-1)), "log_p_mean": tf.reduce_mean(log_p)}

    def _train_step(self, obs, action, reward, next_obs, terminated, lam):
        stats = self._q_update(obs, action, reward, next_obs, terminated)
        if self.config.policy_update == "maf":
            stats.update(self._maf_policy_update(obs, lam))
        else:
            stats.update(self._svgd_policy_update(obs))
        self.gradient_steps.assign_add(1)
        if tf.equal(self.gradient_steps % self.config.target_update_interval, 0):
            self.q_target.copy_from(self.q)
        return stats

    def train_step(self, batch: Dict[str, np.ndarray], lam: float = 0.0) -> Dict[str, float]:
        """One gradient step on Q, then the MAF and the policy (or the SVGD policy step); ``lam`` = lambda_t."""
        self.build()
        stats = self._train(tf.constant(batch["obs"], tf.float32), tf.constant(batch["action"], tf.float32),
                            tf.constant(batch["reward"], tf.float32), tf.constant(batch["next_obs"], tf.float32),
                            tf.constant(batch["terminated"], tf.float32), tf.constant(lam, tf.float32))
        out = {k: float(v) for k, v in stats.items()}
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(
                "soft Q-learning step {} produced non-finite {}; lower --lr or --reward-scale".format(
                    int(self.gradient_steps.numpy()), ", ".join(bad)))
        return out
