"""An RL run folder: checkpoints that survive a kill at any instant, the episode and evaluation CSVs, and
log.txt with the lines a resumed run cuts back kept in log_discarded.txt (what rl.train trains stays there).

``out/checkpoints/step_<N>/`` holds the agent's variables, the replay buffer and state.json; a checkpoint is
written under a temporary name, fsynced, renamed into place, and only then named by ``latest.json``. The
newest :data:`KEEP_CHECKPOINTS` are kept; a damaged one is skipped, with a warning, for the one before it.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from va_core import runinfo
from va_core.errors import RunFailedError
from va_core.runinfo import one_line

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.json"
LOG = "log.txt"
LOG_DISCARDED = "log_discarded.txt"
KEEP_CHECKPOINTS = 2  # the newest checkpoint and the one before it (the fallback if the newest is damaged)
_STEP_DIR = re.compile(r"^step_(\d{9,})$")


class CheckpointError(RunFailedError, RuntimeError):
    """None of a run's checkpoints can be read (``python -m rl.train`` exits with 1)."""


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
def _checkpoint_name(step: int) -> str:
    return "step_{:09d}".format(step)


def _step_dirs(out: Path) -> List[Tuple[int, Path]]:
    """(step, folder) of every renamed-into-place checkpoint folder, newest first."""
    root = out / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found, key=lambda sp: sp[0], reverse=True)


def _read_pointer(out: Path) -> Tuple[Optional[str], Optional[str]]:
    """(folder name in latest.json, problem): (None, None) without a pointer, (None, why) if it is damaged."""
    pointer = out / CHECKPOINT_DIR / LATEST
    if not pointer.exists():
        return None, None
    try:
        name = json.loads(pointer.read_text())["dir"]
        if not isinstance(name, str) or not _STEP_DIR.match(name):
            raise ValueError("no checkpoint folder name in it")
        return name, None
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, "{} is damaged ({})".format(pointer, one_line(e))


def has_checkpoint(out: str | os.PathLike) -> bool:
    """Whether ``out`` holds a checkpoint folder (readable or not) or a checkpoint pointer."""
    out = Path(out)
    return bool(_step_dirs(out)) or (out / CHECKPOINT_DIR / LATEST).exists()


def latest_step(out: str | os.PathLike) -> Optional[int]:
    """Step of the checkpoint a resume of the run in ``out`` tries first (None without any); does not load it.

    That is the one latest.json names, or the newest folder if the pointer is missing or damaged.
    """
    out = Path(out)
    name, _ = _read_pointer(out)
    if name is not None and (out / CHECKPOINT_DIR / name).is_dir():
        return int(_STEP_DIR.match(name).group(1))
    dirs = _step_dirs(out)
    return dirs[0][0] if dirs else None


def _candidates(out: Path) -> Tuple[List[Path], List[str]]:
    """Checkpoint folders to try, in order (the pointer's first, then newest first), and problems found."""
    name, problem = _read_pointer(out)
    problems = [problem] if problem else []
    order = [p for _, p in _step_dirs(out)]
    if name is not None:
        target = out / CHECKPOINT_DIR / name
        if target.is_dir():
            order = [target] + [p for p in order if p != target]
        else:
            problems.append("{} names {}, which does not exist".format(out / CHECKPOINT_DIR / LATEST, target))
    return order, problems


def _fsync_tree(folder: Path) -> None:
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def save_checkpoint(out: Path, agent, replay, state: dict) -> Path:
    """Write a complete checkpoint folder under a temporary name, rename it into place, flip the pointer
    atomically, then remove all but this and the previous checkpoint (:data:`KEEP_CHECKPOINTS`)."""
    root = out / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    step = int(state["step"])
    name = _checkpoint_name(step)
    tmp = root / (".tmp_" + name)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    agent.checkpoint().write(str(tmp / "agent"))
    replay.save(tmp / "replay.npz")
    runinfo.atomic_write_json(tmp / "state.json", state)
    _fsync_tree(tmp)
    final = root / name
    stale = None
    if final.exists():  # left by a process that stopped before flipping the pointer, or a damaged one
        stale = root / (".old_" + name)
        if stale.exists():
            shutil.rmtree(stale)
        os.replace(final, stale)
    os.replace(tmp, final)
    _fsync_dir(root)
    runinfo.atomic_write_json(root / LATEST, {"dir": name, "step": step})
    if stale is not None:
        shutil.rmtree(stale)
    older = [p for s, p in _step_dirs(out) if s < step][:KEEP_CHECKPOINTS - 1]
    for s, p in _step_dirs(out):
        if p != final and p not in older:  # older ones, and newer ones from a discarded continuation
            shutil.rmtree(p)
    for p in root.iterdir():  # leftovers of a save that was killed half-way
        if p.is_dir() and (p.name.startswith(".tmp_") or p.name.startswith(".old_")):
            shutil.rmtree(p)
    return final


def load_checkpoint(out: Path, agent, obs_dim: int, act_dim: int):
    """Restore ``agent`` from the newest readable checkpoint of ``out``.

    Returns (folder, state dict, replay buffer, warnings): a damaged checkpoint (unreadable state.json,
    replay.npz or agent files, or inconsistent contents) is skipped with a warning naming it, and the
    previous one is tried. Raises :class:`CheckpointError` naming every folder tried if none loads.
    """
    from rl.replay import ReplayBuffer

    order, notes = _candidates(out)
    tried = []
    for folder in order:
        try:
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
                raise ValueError("replay buffer holds {} transitions after {} steps".format(
                    len(replay), state["step"]))
            agent.checkpoint().read(str(folder / "agent")).assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001 - any failure to read a checkpoint means: try the previous one
            problem = "checkpoint {} is damaged ({})".format(folder, one_line(e))
            notes.append(problem)
            tried.append(str(folder))
            continue
        warnings = ["{}; resuming from {} instead".format(n, folder) for n in notes]
        if notes:  # point at the checkpoint that loaded (a damaged newer one is removed by the next save)
            runinfo.atomic_write_json(out / CHECKPOINT_DIR / LATEST, {"dir": folder.name, "step": int(state["step"])})
        return folder, state, replay, warnings
    raise CheckpointError("no readable checkpoint in {} ({}); the run cannot be resumed: start it again with "
                          "another --out (or move this folder away)".format(
                              out / CHECKPOINT_DIR, "; ".join(notes) if notes else "tried: " + ", ".join(tried)))


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
