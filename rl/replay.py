"""Uniform replay buffer for soft Q-learning (supplement J.3: a 1e6-transition buffer), saved with checkpoints."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Dict

import numpy as np

from va_core.runinfo import atomic_write_bytes

DEFAULT_CAPACITY = 1_000_000  # "maintained a 10^6 replay buffer" (supplement J.3)
FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


class ReplayBuffer:
    """A ring buffer of transitions (s, a, r, s', terminated) with uniform sampling.

    Values are stored as ``dtype`` (float32 by default: what the TensorFlow networks consume); a
    transition whose numbers are representable in ``dtype`` comes back bit for bit, also after
    :meth:`save` / :meth:`load`. ``terminated`` marks true terminal states only (a time-limit
    truncation is not terminal: the soft value of s' is still bootstrapped).
    """

    def __init__(self, obs_dim: int, act_dim: int, capacity: int = DEFAULT_CAPACITY, dtype=np.float32):
        for name, value in (("obs_dim", obs_dim), ("act_dim", act_dim), ("capacity", capacity)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError("ReplayBuffer: {} must be a positive integer, got {!r}".format(name, value))
        self.obs_dim, self.act_dim, self.capacity = int(obs_dim), int(act_dim), int(capacity)
        self.dtype = np.dtype(dtype)
        self._data: Dict[str, np.ndarray] = {
            "obs": np.zeros((self.capacity, self.obs_dim), self.dtype),
            "action": np.zeros((self.capacity, self.act_dim), self.dtype),
            "reward": np.zeros((self.capacity,), self.dtype),
            "next_obs": np.zeros((self.capacity, self.obs_dim), self.dtype),
            "terminated": np.zeros((self.capacity,), np.bool_),
        }
        self._next = 0  # slot the next transition goes to
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, obs, action, reward: float, next_obs, terminated: bool) -> None:
        """Store one transition, overwriting the oldest once the buffer is full."""
        obs, action, next_obs = (np.asarray(v) for v in (obs, action, next_obs))
        if obs.shape != (self.obs_dim,) or next_obs.shape != (self.obs_dim,):
            raise ValueError("ReplayBuffer.add: observations must have shape ({},), got {} and {}".format(
                self.obs_dim, obs.shape, next_obs.shape))
        if action.shape != (self.act_dim,):
            raise ValueError("ReplayBuffer.add: action must have shape ({},), got {}".format(
                self.act_dim, action.shape))
        i = self._next
        self._data["obs"][i] = obs
        self._data["action"][i] = action
        self._data["reward"][i] = reward
        self._data["next_obs"][i] = next_obs
        self._data["terminated"][i] = bool(terminated)
        self._next = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        """``batch_size`` transitions drawn uniformly with replacement (``rng``: a numpy Generator)."""
        if self._size == 0:
            raise ValueError("ReplayBuffer.sample: the buffer is empty; add transitions first")
        idx = rng.integers(0, self._size, size=batch_size)
        return self.get(idx)

    def get(self, idx) -> Dict[str, np.ndarray]:
        """Transitions at storage indices ``idx`` (0 = oldest slot written while not yet wrapped)."""
        idx = np.asarray(idx)
        if idx.size and (idx.min() < 0 or idx.max() >= self._size):
            raise IndexError("ReplayBuffer.get: indices must be in [0, {})".format(self._size))
        return {k: v[idx] for k, v in self._data.items()}

    def in_order(self) -> Dict[str, np.ndarray]:
        """All stored transitions, oldest first."""
        if self._size < self.capacity:
            order = np.arange(self._size)
        else:
            order = (np.arange(self.capacity) + self._next) % self.capacity
        return self.get(order)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the filled part of the buffer to ``path`` (an .npz) atomically."""
        buf = io.BytesIO()
        n = self._size
        np.savez(buf, capacity=self.capacity, next=self._next, size=n, dtype=str(self.dtype),
                 **{k: v[:n] for k, v in self._data.items()})
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ReplayBuffer":
        """Read a buffer written by :meth:`save` (same capacity, contents and insertion point)."""
        with np.load(path, allow_pickle=False) as f:
            obs = f["obs"]
            buffer = cls(obs.shape[1], f["action"].shape[1], int(f["capacity"]), dtype=str(f["dtype"]))
            n = int(f["size"])
            for k in FIELDS:
                buffer._data[k][:n] = f[k]
            buffer._size = n
            buffer._next = int(f["next"])
        return buffer
