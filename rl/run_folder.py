"""An RL run folder: checkpoints (:mod:`va_core.checkpoints`), the episode and evaluation CSVs, and log.txt
with the lines a resumed run cuts back kept in log_discarded.txt (what rl.train trains stays there).

``out/checkpoints/step_<N>/`` holds the agent's variables, the replay buffer and state.json.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import List, Optional

import numpy as np

from va_core import checkpoints, runinfo
from va_core.checkpoints import CheckpointError, has_checkpoint, latest_step  # noqa: F401  (rl.train's)

LOG = "log.txt"
LOG_DISCARDED = "log_discarded.txt"


class Logs:
    """Episode and evaluation records, rewritten atomically as CSV files and stored in checkpoints."""

    EPISODE_HEADER = ["step", "return", "length"]
    EVAL_HEADER = ["step", "mean_return", "std_return", "wall_seconds", "returns"]

    def __init__(self, out: Path, episodes: Optional[list] = None, evals: Optional[list] = None):
        self.out, self.episodes, self.evals = out, list(episodes or []), list(evals or [])

    @staticmethod
    def _csv(header: List[str], rows: List[list]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows(rows)
        return buf.getvalue()

    def write(self) -> None:
        """Rewrite episodes.csv and eval.csv from the records (on a start or a resume: drops later rows)."""
        runinfo.atomic_write_text(self.out / "episodes.csv", self._csv(self.EPISODE_HEADER, self.episodes))
        runinfo.atomic_write_text(self.out / "eval.csv", self._csv(self.EVAL_HEADER, self.evals))

    def add_episode(self, step: int, ret: float, length: int) -> None:
        """Record a finished training episode and rewrite episodes.csv."""
        self.episodes.append([step, ret, length])
        runinfo.atomic_write_text(self.out / "episodes.csv", self._csv(self.EPISODE_HEADER, self.episodes))

    def add_eval(self, step: int, returns: List[float], seconds: float) -> None:
        """Record an evaluation (population std over its episodes) and rewrite eval.csv."""
        self.evals.append([step, float(np.mean(returns)), float(np.std(returns)), seconds,
                           " ".join("{:.3f}".format(r) for r in returns)])
        runinfo.atomic_write_text(self.out / "eval.csv", self._csv(self.EVAL_HEADER, self.evals))


# ------------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(out: Path, agent, replay, state: dict) -> Path:
    """Checkpoint the agent's variables, the replay buffer and ``state`` (:func:`va_core.checkpoints.save`)."""
    def write(folder: Path) -> None:
        agent.checkpoint().write(str(folder / "agent"))
        replay.save(folder / "replay.npz")
        runinfo.atomic_write_json(folder / "state.json", state)

    return checkpoints.save(out, int(state["step"]), write)


def load_checkpoint(out: Path, agent, obs_dim: int, act_dim: int):
    """Restore ``agent`` from the newest readable checkpoint of ``out`` (:func:`va_core.checkpoints.load`).

    Returns (folder, state dict, replay buffer, warnings): a checkpoint with an unreadable state.json,
    replay.npz or agent files, or inconsistent contents, is skipped with a warning naming it.
    """
    from rl.replay import ReplayBuffer

    def read(folder: Path):
        with open(folder / "state.json") as f:
            state = json.load(f)
        for key in ("step", "episode", "numpy_rng", "episodes", "evals"):
            if key not in state:
                raise KeyError("state.json has no {!r}".format(key))
        replay = ReplayBuffer.load(folder / "replay.npz")
        if (replay.obs_dim, replay.act_dim) != (obs_dim, act_dim):
            raise ValueError("replay buffer holds ({}, {})-dimensional observations/actions, the environment "
                             "({}, {})".format(replay.obs_dim, replay.act_dim, obs_dim, act_dim))
        if len(replay) != min(int(state["step"]), replay.capacity):
            raise ValueError("replay buffer holds {} transitions after {} steps".format(len(replay), state["step"]))
        agent.checkpoint().read(str(folder / "agent")).assert_existing_objects_matched()
        return state, replay

    folder, (state, replay), warnings = checkpoints.load(out, read)
    return folder, state, replay, warnings


# ----------------------------------------------------------------------------------------------- logs
def log(out: Path, line: str) -> None:
    print(line, flush=True)
    with open(out / LOG, "a") as f:
        f.write(line + "\n")


def cut_log(out: Path, size: int, why: str) -> None:
    """Cut log.txt back to ``size`` bytes; the cut lines go to the end of log_discarded.txt (nothing is lost)."""
    path = out / LOG
    if not path.exists() or path.stat().st_size <= size:
        return
    with open(path, "rb") as f:
        f.seek(size)
        tail = f.read()
    with open(out / LOG_DISCARDED, "ab") as f:
        f.write("--- {}: lines cut from {} ---\n".format(why, LOG).encode())
        f.write(tail if tail.endswith(b"\n") else tail + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.truncate(path, size)
