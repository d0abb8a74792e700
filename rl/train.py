"""Train soft Q-learning on a gymnasium MuJoCo task: ``python -m rl.train`` (supplement J.3; SPEC section 8).

The paper used rllab's Swimmer, which no longer installs; the default here is gymnasium's
``Swimmer-v5`` (different reward, observation and horizon: compare shapes and orderings, not absolute
returns). ``--env`` takes any gymnasium task with a flat (vector) Box action space and a vector observation.

Writes into ``--out``: config.json (the full configuration, seed, command, versions), episodes.csv
(training episode returns), eval.csv (evaluation returns without exploration noise, fixed seeds; its
std_return is the population std over that evaluation's episodes), log.txt (progress) and
checkpoints/ (the last two checkpoints: networks, optimisers, replay buffer, RNG states, logs, the
interrupted episode's actions; each a folder renamed into place, then a pointer file flipped atomically).

Randomness: training episode k resets the environment with a seed derived from (``--seed``, k)
(:func:`episode_seed`); actions and minibatches come from one numpy Generator, the policy and proposal
noise from the agent's ``tf.random.Generator``; evaluations reset with fixed seeds. All of these are in
every checkpoint, so ``--resume`` continues a killed run exactly as if it had not stopped: it reloads
the newest readable checkpoint (falling back to the previous one, with a warning, if the newest is
damaged), cuts log.txt, episodes.csv and eval.csv back to it (the cut lines of log.txt are kept in
log_discarded.txt), and replays the interrupted episode's recorded actions from its reset seed to
restore the environment's state (verified against the recorded observation and return). Settings
given with ``--resume`` must equal the recorded ones, except ``--progress-every`` and ``--threads``
(a different thread count can change floating-point rounding, and so the continuation's last bits).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

import rl  # noqa: F401  (project package first: compat layer, TF_USE_LEGACY_KERAS)
from va_core import runinfo, schedules, tempering
from va_core.seeding import seed_everything
from va_core import cli_checks

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.json"
LOG = "log.txt"
LOG_DISCARDED = "log_discarded.txt"
KEEP_CHECKPOINTS = 2  # the newest checkpoint and the one before it (the fallback if the newest is damaged)
CHECKPOINT_FORMAT = 2  # state.json layout: 2 adds the interrupted episode, the log size and the wall clock
_STEP_DIR = re.compile(r"^step_(\d{9,})$")
#: Settings that may differ from the recorded ones on --resume (they do not change what is computed,
#: except that another thread count may change floating-point rounding).
RESUME_MAY_DIFFER = ("progress_every", "threads")
DEFAULTS = dict(
    env="Swimmer-v5", steps=500_000, seed=0, agent="maf", anneal=None, schedule=None, lambda0=None, knot_interval=None,
    reward_scale=30.0, discount=0.99, lr=4e-4, batch_size=128, particles=16, value_samples=16,
    hidden=128, maf_hidden=512, maf_blocks=4, replay_capacity=1_000_000, target_update=1000,
    start_steps=1000, train_every=1, updates_per_train=1, eval_every=10_000, eval_episodes=5,
    checkpoint_every=10_000, max_episode_steps=None, threads=1, progress_every=1000,
)
#: The annealing of the MAF agent when its flags are not given (None in :data:`DEFAULTS`).
ANNEALED_DEFAULTS = dict(anneal="ent", schedule="linear", lambda0=1.0)
#: How a run that does not anneal (``--agent svgd``, or ``--anneal none``) records its annealing settings.
NO_ANNEALING = dict(anneal="none", schedule="static", lambda0=0.0, knot_interval=None)


class UsageError(ValueError):
    """A flag value, environment or output folder the run cannot use (``python -m rl.train`` exits with 2)."""


class CheckpointError(RuntimeError):
    """None of a run's checkpoints can be read (``python -m rl.train`` exits with 1)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors raise :class:`UsageError` (one line, exit status 2 from :func:`cli`)."""

    def error(self, message):  # noqa: D102  (argparse API)
        raise UsageError("{} (see python -m rl.train --help)".format(message))


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m rl.train`` (defaults: J.3 and the reference soft Q-learning code)."""
    p = _Parser(prog="python -m rl.train", description=" ".join(__doc__.split("\n\n")[0].split()),
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = DEFAULTS
    p.add_argument("--env", default=d["env"], help="gymnasium environment id (a flat (vector) Box action space)")
    p.add_argument("--steps", type=int, default=d["steps"], help="environment steps (paper: 0.5M)")
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--agent", choices=("maf", "svgd"), default=d["agent"],
                   help="maf: U-GAN policy with a MAF proposal; svgd: original soft Q-learning (baseline)")
    p.add_argument("--anneal", choices=("none", "ent", "lik"), default=d["anneal"],
                   help="how lambda_t enters the MAF policy's reverse KL (none: no annealing); unset: ent for "
                        "--agent maf, none for svgd (which does not anneal)")
    p.add_argument("--schedule", choices=schedules.names(), default=d["schedule"],
                   help="annealing schedule of lambda_t over the environment steps; unset: linear when annealing")
    p.add_argument("--knot-interval", type=int, default=d["knot_interval"],
                   help="lgan schedule: environment steps between knots (unset: {})".format(
                       schedules.DEFAULT_KNOT_INTERVAL))
    p.add_argument("--lambda0", type=float, default=d["lambda0"],
                   help="initial annealing weight; unset: 1.0 when annealing")
    p.add_argument("--reward-scale", type=float, default=d["reward_scale"], help="1 / temperature alpha")
    p.add_argument("--discount", type=float, default=d["discount"])
    p.add_argument("--lr", type=float, default=d["lr"], help="Adam learning rate (Q, policy, MAF)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"])
    p.add_argument("--particles", type=int, default=d["particles"], help="actions per state, policy update")
    p.add_argument("--value-samples", type=int, default=d["value_samples"],
                   help="actions per state, importance-sampled soft value")
    p.add_argument("--hidden", type=int, default=d["hidden"], help="hidden units (2 layers) of Q and policy")
    p.add_argument("--maf-hidden", type=int, default=d["maf_hidden"], help="hidden units (2 layers) of each MAF block")
    p.add_argument("--maf-blocks", type=int, default=d["maf_blocks"])
    p.add_argument("--replay-capacity", type=int, default=d["replay_capacity"])
    p.add_argument("--target-update", type=int, default=d["target_update"],
                   help="gradient steps between target-network copies")
    p.add_argument("--start-steps", type=int, default=d["start_steps"],
                   help="initial environment steps with uniform random actions (no training)")
    p.add_argument("--train-every", type=int, default=d["train_every"],
                   help="environment steps between training phases")
    p.add_argument("--updates-per-train", type=int, default=d["updates_per_train"],
                   help="gradient steps per training phase")
    p.add_argument("--eval-every", type=int, default=d["eval_every"])
    p.add_argument("--eval-episodes", type=int, default=d["eval_episodes"])
    p.add_argument("--checkpoint-every", type=int, default=d["checkpoint_every"])
    p.add_argument("--max-episode-steps", type=int, default=d["max_episode_steps"],
                   help="episode length limit (default: the environment's own, 1000 for Swimmer-v5)")
    p.add_argument("--threads", type=int, default=d["threads"], help="TensorFlow intra-op threads")
    p.add_argument("--progress-every", type=int, default=d["progress_every"])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (starts it if there is none); "
                        "flags given must equal the recorded ones except --progress-every and --threads")
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop after step STOP_AT with a checkpoint there, as if the run were killed just after "
                        "it (continue with --resume); not part of the run's configuration")
    return p


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _check(cfg: dict) -> None:
    """Reject settings that cannot run, naming the flag and the fix (raises :class:`UsageError`)."""
    positive = ("steps", "batch_size", "particles", "value_samples", "hidden", "maf_hidden", "maf_blocks",
                "replay_capacity", "target_update", "train_every", "updates_per_train", "eval_every",
                "eval_episodes", "checkpoint_every", "threads", "progress_every")
    for k in positive:
        if cfg[k] is None or cfg[k] < 1:
            raise UsageError("{} must be >= 1, got {}".format(_flag(k), cfg[k]))
    if not 0 <= cfg["seed"] < 2**31:
        raise UsageError("--seed must be an integer in [0, 2**31), got {}".format(cfg["seed"]))
    if cfg["start_steps"] < 0:
        raise UsageError("--start-steps must be >= 0, got {}".format(cfg["start_steps"]))
    if cfg["start_steps"] >= cfg["steps"]:
        raise UsageError("--start-steps {} is not below --steps {}: the run would end before training starts (no "
                         "gradient step); lower --start-steps or raise --steps".format(
                             cfg["start_steps"], cfg["steps"]))
    if cfg["max_episode_steps"] is not None and cfg["max_episode_steps"] < 1:
        raise UsageError("--max-episode-steps must be >= 1 (or left out for the environment's own limit), "
                         "got {}".format(cfg["max_episode_steps"]))
    if not 0.0 <= cfg["discount"] < 1.0:
        raise UsageError("--discount must be in [0, 1), got {}".format(cfg["discount"]))
    for k in ("lr", "reward_scale"):
        if not cfg[k] > 0:
            raise UsageError("{} must be > 0, got {}".format(_flag(k), cfg[k]))
    if cfg["agent"] == "svgd" and cfg["particles"] < 2:
        raise UsageError("--agent svgd needs --particles >= 2 (a kernel between particles), got {}".format(
            cfg["particles"]))
    _resolve_annealing(cfg)
    # every lambda_t of the run (oscillating schedules swing to about -lambda0), not only lambda0
    try:
        tempering.check_tempered(cfg["anneal"], make_schedule(cfg))
    except ValueError as e:
        raise UsageError(str(e)) from e


def _resolve_annealing(cfg: dict) -> None:
    """Fill in the annealing flags left unset (:data:`ANNEALED_DEFAULTS`, or :data:`NO_ANNEALING` for a run
    that does not anneal); annealing flags given to a run that does not anneal are a :class:`UsageError`."""
    idle = tempering.idle_lambda0(cfg["anneal"], cfg["lambda0"], terms=("ent", "lik"))
    if idle and cfg["agent"] != "svgd":
        raise UsageError(idle)
    if cfg["agent"] == "svgd" or cfg["anneal"] == "none":
        why = "--agent svgd (only the MAF policy anneals)" if cfg["agent"] == "svgd" else "--anneal none"
        idle = ["{} {}".format(_flag(k), cfg[k]) for k, v in NO_ANNEALING.items() if cfg[k] not in (None, v)]
        if idle:
            fix = "use --agent maf" if cfg["agent"] == "svgd" else "pass --anneal ent or lik"
            raise UsageError("{} would have no effect with {}; drop {}, or {}".format(
                ", ".join(idle), why, "them" if len(idle) > 1 else "it", fix))
        cfg.update(NO_ANNEALING)
    for k, v in ANNEALED_DEFAULTS.items():
        if cfg[k] is None:
            cfg[k] = v


def make_schedule(cfg: dict) -> schedules.Schedule:
    """The lambda_t schedule of a resolved configuration (over its environment steps)."""
    return cli_checks.make_schedule(cfg["schedule"], cfg["lambda0"], cfg["steps"],
                                    {"knot_interval": cfg.get("knot_interval")})


def effective_config(cfg: dict) -> dict:
    """``cfg`` as this version records it, for comparing with a recorded configuration: a run that does not
    anneal records :data:`NO_ANNEALING` (older versions recorded the default annealing flags, which it
    ignored), and ``knot_interval`` (added later) is None where it is missing."""
    cfg = {"knot_interval": None, **cfg}
    if cfg.get("agent") == "svgd" or cfg.get("anneal") == "none":
        cfg.update(NO_ANNEALING)
    return cfg


def check_env(cfg: dict) -> None:
    """Make (and close) the environment once, so an unusable ``--env`` fails before anything is written."""
    from rl.evaluation import make_env

    try:
        env = make_env(cfg["env"], cfg["max_episode_steps"])
    except ValueError as e:
        raise UsageError("--env {}: {}".format(cfg["env"], e)) from e
    act_dim = env.action_space.shape[0]
    env.close()
    if cfg["agent"] == "maf" and act_dim < 2:
        raise UsageError(
            "--agent maf needs an action space of 2 or more dimensions; {} has {}, where the MAF policy is only a "
            "Gaussian given the state; use --agent svgd".format(cfg["env"], act_dim))


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of training episode ``episode`` (0-based) of a run with ``seed``.

    Derived with numpy's SeedSequence from (seed, episode), so it does not depend on how the run got to
    that episode (uninterrupted or resumed) and distinct runs/episodes get unrelated seeds.
    """
    return int(np.random.SeedSequence(int(seed), spawn_key=(0x5EED, int(episode))).generate_state(1)[0])


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
        return None, "{} is damaged ({}: {})".format(pointer, type(e).__name__, _one_line(e))


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


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


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
            problem = "checkpoint {} is damaged ({}: {})".format(folder, type(e).__name__, _one_line(e))
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
def _log(out: Path, line: str) -> None:
    print(line, flush=True)
    with open(out / LOG, "a") as f:
        f.write(line + "\n")


def _cut_log(out: Path, size: int, why: str) -> None:
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


# -------------------------------------------------------------------------------------------- training
def _restore_episode(env, seed: int, episode: int, state: dict):
    """The environment at the checkpoint: reset with the episode's seed, then the recorded actions replayed.

    Returns (obs, episode return, episode length, actions, warning or None). If the replay does not end
    at the recorded observation and return (an environment that is not deterministic given its seed and
    actions), the interrupted episode restarts from its reset and a warning says so.
    """
    obs, _ = env.reset(seed=episode_seed(seed, episode))
    if "episode_actions" not in state:  # a checkpoint written before the episode was recorded
        return obs, 0.0, 0, [], "checkpoint from an older version: the interrupted episode restarts"
    ret, actions, done = 0.0, [], False
    for values, dtype in zip(state["episode_actions"], state["episode_action_dtypes"]):
        action = np.asarray(values, dtype=dtype)
        obs, reward, terminated, truncated, _ = env.step(action)
        ret += float(reward)
        actions.append(action)
        done = bool(terminated or truncated)
        if done:
            break
    obs_arr = np.asarray(obs)
    if (done or len(actions) != state["ep_len"] or ret != state["ep_return"]
            or not np.array_equal(obs_arr, np.asarray(state["obs"], obs_arr.dtype))):
        obs, _ = env.reset(seed=episode_seed(seed, episode))
        return obs, 0.0, 0, [], ("replaying the interrupted episode's {} actions did not reproduce its recorded "
                                 "state (the environment is not deterministic given its seed and actions); the "
                                 "episode restarts, so the continuation differs from an uninterrupted run".format(
                                     state["ep_len"]))
    return obs, ret, len(actions), actions, None


def train(cfg: dict, out: Path, resume: bool = False, stop_at: Optional[int] = None) -> dict:
    """Run (or resume) one training run with the resolved configuration ``cfg`` in ``out``.

    ``resume``: continue from the newest readable checkpoint (a fresh start if there is none).
    ``stop_at``: stop after that step, with a checkpoint there. Returns the final state: step,
    episodes, evals, stopped (True if ``stop_at`` ended it before ``cfg["steps"]``), checkpoint.
    """
    import tensorflow as tf  # noqa: F401  (imported before the agent: seeds, threads)

    from rl.agent import SoftQAgent, SoftQConfig
    from rl.evaluation import deterministic_policy, make_env, run_episodes, scale_action
    from rl.replay import ReplayBuffer

    seed = cfg["seed"]
    seed_everything(seed, tensorflow=True)
    env = make_env(cfg["env"], cfg["max_episode_steps"])
    eval_env = make_env(cfg["env"], cfg["max_episode_steps"])
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high
    agent = SoftQAgent(SoftQConfig(
        obs_dim=obs_dim, act_dim=act_dim, policy_update=cfg["agent"], anneal=cfg["anneal"],
        hidden=(cfg["hidden"],) * 2, maf_blocks=cfg["maf_blocks"], maf_hidden=(cfg["maf_hidden"],) * 2,
        learning_rate=cfg["lr"], batch_size=cfg["batch_size"], particles=cfg["particles"],
        value_samples=cfg["value_samples"], reward_scale=cfg["reward_scale"], discount=cfg["discount"],
        target_update_interval=cfg["target_update"], seed=seed))
    agent.build()
    schedule = make_schedule(cfg)
    lam_at = (lambda t: 0.0) if cfg["anneal"] == "none" or cfg["agent"] == "svgd" else schedule

    loaded = load_checkpoint(out, agent, obs_dim, act_dim) if resume and has_checkpoint(out) else None
    if loaded is not None:
        ckpt, state, replay, warnings = loaded
        step, episode = int(state["step"]), int(state["episode"])
        if stop_at is not None and stop_at <= step:
            raise UsageError("--stop-at {} is not after the step of the checkpoint resumed from ({})".format(
                stop_at, step))
        rng = np.random.default_rng()
        rng.bit_generator.state = state["numpy_rng"]
        logs = Logs(out, state["episodes"], state["evals"])
        logs.write()
        if "log_bytes" in state:
            _cut_log(out, int(state["log_bytes"]), "resumed from {}".format(ckpt.name))
        obs, ep_return, ep_len, episode_actions, note = _restore_episode(env, seed, episode, state)
        for w in warnings + ([note] if note else []):
            print("warning: " + w, file=sys.stderr, flush=True)
            with open(out / LOG, "a") as f:
                f.write("warning: " + w + "\n")
        wall_before = float(state.get("wall_seconds", logs.evals[-1][3] if logs.evals else 0.0))
        _log(out, "resumed from {} at step {} (episode {}, {} steps into it)".format(ckpt, step, episode, ep_len))
    else:
        step, episode = 0, 0
        replay = ReplayBuffer(obs_dim, act_dim, cfg["replay_capacity"])
        rng = np.random.default_rng(seed)
        logs = Logs(out)
        logs.write()
        _cut_log(out, 0, "a new start (no checkpoint)")
        obs, _ = env.reset(seed=episode_seed(seed, 0))
        ep_return, ep_len, episode_actions = 0.0, 0, []
        wall_before = 0.0
    policy = deterministic_policy(agent)
    stats: dict = {}
    started, last_t, last_step = time.time(), time.time(), step
    last_ckpt = None

    def evaluate(t: int) -> None:
        returns = run_episodes(eval_env, policy, cfg["eval_episodes"])
        logs.add_eval(t, returns, wall_before + time.time() - started)
        _log(out, "eval step {}: return {:.2f} +- {:.2f} over {} episodes".format(
            t, np.mean(returns), np.std(returns), len(returns)))

    def checkpoint(t: int) -> Path:
        log_bytes = (out / LOG).stat().st_size if (out / LOG).exists() else 0
        return save_checkpoint(out, agent, replay, dict(
            format=CHECKPOINT_FORMAT, step=t, episode=episode, numpy_rng=rng.bit_generator.state,
            episodes=logs.episodes, evals=logs.evals, config=cfg, log_bytes=log_bytes,
            wall_seconds=wall_before + time.time() - started, obs=np.asarray(obs).tolist(),
            ep_return=ep_return, ep_len=ep_len, episode_actions=[a.tolist() for a in episode_actions],
            episode_action_dtypes=[str(a.dtype) for a in episode_actions]))

    if step == 0:
        evaluate(0)
    stopped = False
    while step < cfg["steps"]:
        if step < cfg["start_steps"]:
            action = rng.uniform(-1.0, 1.0, size=act_dim)
        else:
            noise = rng.standard_normal((1, act_dim)).astype(np.float32)
            action = agent.act(np.asarray(obs, np.float32)[None], noise)[0]
        env_action = np.array(scale_action(action, low, high))
        next_obs, reward, terminated, truncated, _ = env.step(env_action)
        episode_actions.append(env_action)
        replay.add(obs, action, reward, next_obs, terminated)
        ep_return += float(reward)
        ep_len += 1
        step += 1
        obs = next_obs
        if terminated or truncated:
            episode += 1
            logs.add_episode(step, ep_return, ep_len)
            obs, _ = env.reset(seed=episode_seed(seed, episode))
            ep_return, ep_len, episode_actions = 0.0, 0, []
        if step >= cfg["start_steps"] and len(replay) >= cfg["batch_size"] and step % cfg["train_every"] == 0:
            lam = lam_at(step)
            for _ in range(cfg["updates_per_train"]):
                stats = agent.train_step(replay.sample(cfg["batch_size"], rng), lam)
        if step % cfg["progress_every"] == 0 or step == cfg["steps"]:
            now = time.time()
            rate = (step - last_step) / max(now - last_t, 1e-9)
            last_t, last_step = now, step
            eta = (cfg["steps"] - step) / max(rate, 1e-9)
            last_ep = "{:.2f}".format(logs.episodes[-1][1]) if logs.episodes else "-"
            _log(out, "step {}/{} ({:.0f} steps/s, eta {:.0f} s) episodes {} last return {} {}".format(
                step, cfg["steps"], rate, eta, episode, last_ep,
                " ".join("{}={:.3g}".format(k, v) for k, v in sorted(stats.items()))))
        if step % cfg["eval_every"] == 0 or step == cfg["steps"]:
            evaluate(step)
        if step == stop_at and step < cfg["steps"]:
            _log(out, "stopping at step {} (--stop-at) with a checkpoint; continue with --resume".format(step))
        if step % cfg["checkpoint_every"] == 0 or step == cfg["steps"] or step == stop_at:
            last_ckpt = checkpoint(step)
        if stop_at is not None and step >= stop_at and step < cfg["steps"]:
            stopped = True
            break
    env.close()
    eval_env.close()
    return {"step": step, "episodes": logs.episodes, "evals": logs.evals, "stopped": stopped,
            "checkpoint": last_ckpt}


# ---------------------------------------------------------------------------------------- command line
def resolve_config(args: argparse.Namespace) -> dict:
    """The run's full configuration from parsed flags (checked; raises :class:`UsageError`)."""
    cfg = {k: getattr(args, k) for k in DEFAULTS}
    _check(cfg)
    return cfg


def explicit_flags(argv: List[str]) -> Dict[str, object]:
    """The configuration keys given on the command line ``argv`` (not left at their defaults), with values."""
    unset = object()  # argparse leaves attributes that are already set on the namespace alone unless given
    given = vars(build_parser().parse_args(argv, namespace=argparse.Namespace(**{k: unset for k in DEFAULTS})))
    return {k: v for k, v in given.items() if k in DEFAULTS and v is not unset}


def config_differences(recorded: dict, wanted: dict, ignore=RESUME_MAY_DIFFER) -> Dict[str, Tuple[object, object]]:
    """{key: (recorded value, wanted value)} for every key of ``wanted`` (but ``ignore``) whose values differ."""
    return {k: (recorded.get(k), v) for k, v in wanted.items() if k not in ignore and recorded.get(k) != v}


def describe_differences(diffs: Dict[str, Tuple[object, object]], theirs: str = "recorded",
                         ours: str = "given") -> str:
    """``--steps: 600 recorded, 700 given; ...`` for :func:`config_differences`' result."""
    return "; ".join("{}: {} {}, {} {}".format(_flag(k), a, theirs, b, ours) for k, (a, b) in sorted(diffs.items()))


def read_recorded_config(out: Path) -> dict:
    """The configuration in ``out/config.json`` (raises :class:`UsageError` if it is missing or unreadable)."""
    path = out / runinfo.CONFIG_FILENAME
    try:
        recorded = runinfo.read_run_config(out)["config"]
        if not isinstance(recorded, dict):
            raise ValueError("no configuration mapping")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError("{} is missing or damaged ({}: {}), so the run in {} cannot be resumed; move the folder "
                         "away or choose another --out".format(path, type(e).__name__, _one_line(e), out)) from e
    return recorded


def main(argv: Optional[List[str]] = None) -> int:
    """Train from command-line ``argv`` (None: ``sys.argv[1:]``): check the flags and the output folder
    (record config.json, or compare with it on --resume), train, log the final evaluation.

    Raises :class:`UsageError`, :class:`CheckpointError`; :func:`cli` turns them into one-line errors.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if (problem := cli_checks.out_folder_problem(out)):
        raise UsageError(problem)
    holds_run = has_checkpoint(out) or (out / runinfo.CONFIG_FILENAME).exists()
    resuming = args.resume and holds_run
    if not resuming:
        cfg = resolve_config(args)
    if holds_run and not args.resume:
        raise UsageError("{} already holds a run; pass --resume to continue it, or choose another --out "
                         "(nothing was changed)".format(out))
    if resuming:
        recorded = {"knot_interval": None, **read_recorded_config(out)}  # as recorded (older: no knot_interval)
        given = explicit_flags(argv)
        wanted = effective_config({**recorded, **given})
        diffs = config_differences(effective_config(recorded), {k: wanted[k] for k in given})
        if diffs:
            raise UsageError(
                "--resume: the run in {} was started with other settings ({}); drop or fix those flags to continue "
                "it as recorded (only {} may change on resume), or choose another --out for a run with the new "
                "settings".format(out, describe_differences(diffs), ", ".join(_flag(k) for k in RESUME_MAY_DIFFER)))
        # then the recorded settings, with the flags that may change, must make a valid run
        resolve_config(argparse.Namespace(**{**vars(args), **effective_config(recorded), **given}))
        cfg = {**recorded, **{k: v for k, v in given.items() if k in RESUME_MAY_DIFFER}}
        for k in RESUME_MAY_DIFFER:
            if k in given and given[k] != recorded.get(k):
                print("note: --resume with {} {} (recorded: {})".format(_flag(k), given[k], recorded.get(k)),
                      file=sys.stderr)
        missing = [k for k in DEFAULTS if k not in cfg]
        if missing:
            raise UsageError("{} lacks the settings {} (written by another version?); move the folder away or "
                             "choose another --out".format(out / runinfo.CONFIG_FILENAME, ", ".join(missing)))
    if args.stop_at is not None and not 1 <= args.stop_at <= cfg["steps"]:
        raise UsageError("--stop-at must be in [1, --steps={}], got {}".format(cfg["steps"], args.stop_at))
    check_env(cfg)  # before anything is written: an unknown --env leaves no folder behind
    import tensorflow as tf

    _set_threads(tf, cfg["threads"])
    out.mkdir(parents=True, exist_ok=True)
    with runinfo.exclusive_run_lock(out):
        continuing = resuming and has_checkpoint(out)
        if not continuing:
            runinfo.write_run_config(out, cfg, seed=cfg["seed"])
        result = train(cfg, out, resume=continuing, stop_at=args.stop_at)
    final = result["evals"][-1]
    if not result["stopped"]:
        _log(out, "done: {} steps, final evaluation return {:.2f} +- {:.2f}".format(
            result["step"], final[1], final[2]))
    return 0


def _set_threads(tf, threads: int) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialised in this process (several runs in one process)
        current = tf.config.threading.get_intra_op_parallelism_threads()
        if current != threads:
            print("warning: TensorFlow is already running with {} intra-op threads in this process; --threads {} "
                  "is not applied".format(current, threads), file=sys.stderr)


def cli(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m rl.train``: errors print one line; exit status 2 for bad flags, environment
    or output folder, 1 for unreadable checkpoints, a locked folder or a diverged run."""
    try:
        return main(argv)
    except UsageError as e:
        print("error: {}".format(e), file=sys.stderr)
        return 2
    except (CheckpointError, runinfo.RunLockedError, FloatingPointError) as e:
        print("error: {}".format(e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(cli())
