"""Q-network and sampling policy network for soft Q-learning (supplement J.3: 3-layer nets, 128 hidden units).

Both are plain ``tf.Module`` MLPs whose weights are initialised from an explicit seed (Glorot
uniform, zero biases), so two networks built with the same seed are identical and a checkpoint
restores them exactly.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

DEFAULT_HIDDEN = (128, 128)  # "three layer ... both hidden layers has 128 units" (supplement J.3)


class MLP(tf.Module):
    """Fully connected net: ReLU hidden layers, linear output."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, seed: int, name: str | None = None):
        super().__init__(name=name)
        rng = np.random.default_rng(seed)
        sizes = [int(in_dim)] + [int(h) for h in hidden] + [int(out_dim)]
        self.weights, self.biases = [], []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            w = rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(np.float32)
            self.weights.append(tf.Variable(w, name="w{}".format(i)))
            self.biases.append(tf.Variable(np.zeros(fan_out, np.float32), name="b{}".format(i)))

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Apply the net to the last axis of ``x`` (any leading batch dimensions)."""
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = tf.tensordot(h, w, axes=[[-1], [0]]) + b
            if i < last:
                h = tf.nn.relu(h)
        return h


class QNetwork(tf.Module):
    """Q(s, a): an MLP on the concatenation [s, a] (supplement J.3)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = DEFAULT_HIDDEN, seed: int = 0,
                 name: str | None = None):
        super().__init__(name=name)
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.net = MLP(obs_dim + act_dim, hidden, 1, seed, name="q_mlp")

    def __call__(self, obs: tf.Tensor, action: tf.Tensor) -> tf.Tensor:
        """Q values of shape ``batch``: ``obs`` (..., obs_dim) broadcast against ``action`` (..., act_dim)."""
        obs = tf.convert_to_tensor(obs, tf.float32)
        action = tf.convert_to_tensor(action, tf.float32)
        shape = tf.broadcast_dynamic_shape(tf.shape(obs)[:-1], tf.shape(action)[:-1])
        obs = tf.broadcast_to(obs, tf.concat([shape, [self.obs_dim]], 0))
        action = tf.broadcast_to(action, tf.concat([shape, [self.act_dim]], 0))
        return self.net(tf.concat([obs, action], axis=-1))[..., 0]

    def copy_from(self, other: "QNetwork") -> None:
        """Hard copy of ``other``'s weights (the target network update)."""
        for mine, theirs in zip(self.trainable_variables, other.trainable_variables):
            mine.assign(theirs)


class SamplingPolicy(tf.Module):
    """The policy as a sampler: u = f(s, xi), xi ~ N(0, I); the action is a = tanh(u) in (-1, 1)^d.

    This is the U-GAN generator of exp(Q(s, .)/alpha) (SPEC section 8) and, with an SVGD update,
    the amortised sampler of the original soft Q-learning. ``u`` is the pre-squash action: densities
    on u relate to densities on a through the tanh log-determinant (:mod:`rl.soft_value`).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = DEFAULT_HIDDEN, seed: int = 0,
                 name: str | None = None):
        super().__init__(name=name)
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.noise_dim = self.act_dim
        self.net = MLP(obs_dim + self.noise_dim, hidden, act_dim, seed, name="policy_mlp")

    def pre_squash(self, obs: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
        """u = f(s, xi): ``obs`` (..., obs_dim) broadcast against ``noise`` (..., act_dim)."""
        obs = tf.convert_to_tensor(obs, tf.float32)
        noise = tf.convert_to_tensor(noise, tf.float32)
        shape = tf.broadcast_dynamic_shape(tf.shape(obs)[:-1], tf.shape(noise)[:-1])
        obs = tf.broadcast_to(obs, tf.concat([shape, [self.obs_dim]], 0))
        noise = tf.broadcast_to(noise, tf.concat([shape, [self.noise_dim]], 0))
        return self.net(tf.concat([obs, noise], axis=-1))

    def __call__(self, obs: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
        """The action a = tanh(f(s, xi))."""
        return tf.tanh(self.pre_squash(obs, noise))
