"""Evaluation episodes with fixed seeds: the trained policy without exploration noise, and the uniform random policy."""
from __future__ import annotations

from typing import Callable, List, Optional

import numpy as np

DEFAULT_EVAL_SEED = 10_000  # evaluation episode i resets the environment with seed DEFAULT_EVAL_SEED + i


def make_env(env_id: str, max_episode_steps: Optional[int] = None):
    """A gymnasium environment (``Swimmer-v5`` by default in :mod:`rl.train`).

    Raises ValueError with a one-line message if the id is unknown, its dependencies are missing, or its
    action or observation space is not a flat (vector) Box (what the agent handles).
    """
    import gymnasium as gym

    try:
        kwargs = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise ValueError("cannot make gymnasium environment {!r} ({}); MuJoCo tasks need "
                         "gymnasium[mujoco] (e.g. Swimmer-v5, HalfCheetah-v5)".format(env_id, e)) from e
    space = env.action_space
    if not hasattr(space, "low") or len(space.shape) != 1:
        env.close()
        raise ValueError("environment {!r} needs a flat (vector) Box action space, got {}".format(env_id, space))
    obs_space = env.observation_space
    if obs_space.shape is None or len(obs_space.shape) != 1:
        env.close()
        raise ValueError("environment {!r} needs a 1-D (vector) observation space, got {}".format(env_id, obs_space))
    return env


def scale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map a in [-1, 1]^d (the policy's squashed range) affinely onto the environment's box [low, high]."""
    return low + 0.5 * (np.asarray(action) + 1.0) * (high - low)


def run_episodes(env, policy: Callable[[np.ndarray], np.ndarray], episodes: int,
                 seed: int = DEFAULT_EVAL_SEED) -> List[float]:
    """Undiscounted returns of ``episodes`` episodes; episode i resets with ``seed + i``.

    ``policy`` maps one observation to an action in [-1, 1]^d (rescaled to the environment's box).
    """
    low, high = env.action_space.low, env.action_space.high
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(scale_action(policy(obs), low, high))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def random_policy_returns(env, episodes: int, seed: int = DEFAULT_EVAL_SEED) -> List[float]:
    """Returns of the uniform random policy on the same fixed-seed episodes (actions from numpy seed ``seed``)."""
    rng = np.random.default_rng(seed)
    d = env.action_space.shape[0]
    return run_episodes(env, lambda obs: rng.uniform(-1.0, 1.0, size=d), episodes, seed)


def deterministic_policy(agent) -> Callable[[np.ndarray], np.ndarray]:
    """The agent's action without exploration noise: a = tanh(f(s, xi = 0))."""
    zeros = np.zeros((1, agent.config.act_dim), np.float32)
    return lambda obs: agent.act(np.asarray(obs, np.float32)[None], zeros)[0]
