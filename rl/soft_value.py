"""Importance-sampled soft value and the tanh change of variables (SPEC section 8; Haarnoja et al. 2017, Eq. 10).

Soft value: V(s) = alpha log integral exp(Q(s, a)/alpha) da over the action box, estimated with M
actions a_j ~ q(.|s) from a proposal as

    V(s) ~= alpha [ logsumexp_j (Q(s, a_j)/alpha - log q(a_j|s)) - log M ].

The actions are a = tanh(u) with u in R^d; a density q_u on u gives the action density
log q_a(a) = log q_u(u) - sum_i log(1 - tanh(u_i)^2).
"""
from __future__ import annotations

import math

import tensorflow as tf

LOG2 = math.log(2.0)


def soft_value(q_values: tf.Tensor, log_proposal: tf.Tensor, alpha: float = 1.0) -> tf.Tensor:
    """V = alpha (logsumexp_j(Q_j/alpha - log q_j) - log M) over the last axis (M samples per state).

    ``q_values`` and ``log_proposal`` have shape (..., M): Q(s, a_j) and log q(a_j|s) for a_j ~ q.
    The estimate's exponential is unbiased for exp(V/alpha); V itself is biased low by O(1/M).
    """
    if alpha <= 0:
        raise ValueError("soft_value: alpha must be > 0, got {}".format(alpha))
    q_values = tf.convert_to_tensor(q_values)
    log_proposal = tf.cast(log_proposal, q_values.dtype)
    m = tf.cast(tf.shape(q_values)[-1], q_values.dtype)
    return alpha * (tf.reduce_logsumexp(q_values / alpha - log_proposal, axis=-1) - tf.math.log(m))


def tanh_log_det(u: tf.Tensor) -> tf.Tensor:
    """sum_i log(1 - tanh(u_i)^2) = sum_i 2 (log 2 - u_i - softplus(-2 u_i)) over the last axis (stable for large |u|)."""
    u = tf.convert_to_tensor(u)
    return tf.reduce_sum(2.0 * (LOG2 - u - tf.nn.softplus(-2.0 * u)), axis=-1)


def squashed_log_prob(log_prob_u: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """log q_a(tanh u) = log q_u(u) - sum_i log(1 - tanh(u_i)^2): the density of a = tanh(u) on (-1, 1)^d."""
    return log_prob_u - tanh_log_det(u)


def uniform_box_log_prob(act_dim: int) -> float:
    """log density of the uniform distribution on [-1, 1]^d: -d log 2 (the original soft Q-learning's value proposal)."""
    return -act_dim * LOG2
