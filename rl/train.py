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
import dataclasses
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

import rl  # noqa: F401  (project package first: TF_USE_LEGACY_KERAS before TensorFlow loads)
from va_core import errors, runinfo, schedules, tempering
from va_core.runinfo import one_line
from va_core.seeding import seed_everything
from va_core import cli_checks

from rl.run_folder import (LOG, CheckpointError, Logs, cut_log, has_checkpoint, latest_step,  # noqa: F401
                           load_checkpoint, log, save_checkpoint)

CHECKPOINT_FORMAT = 2  # state.json layout: 2 adds the interrupted episode, the log size and the wall clock

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


class UsageError(errors.UsageError, ValueError):
    """A flag value, environment or output folder the run cannot use (``python -m rl.train`` exits with 2)."""


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


@dataclasses.dataclass
class _Run:
    """A run in progress: the agent and environments, and the state a checkpoint saves and restores."""

    cfg: dict
    out: Path
    agent: object
    env: object
    eval_env: object
    replay: object = None
    rng: Optional[np.random.Generator] = None
    logs: Optional["Logs"] = None
    step: int = 0
    episode: int = 0
    obs: object = None
    ep_return: float = 0.0
    ep_len: int = 0
    episode_actions: list = dataclasses.field(default_factory=list)
    wall_before: float = 0.0
    started: float = dataclasses.field(default_factory=time.time)

    def checkpoint_state(self) -> dict:
        """What :func:`save_checkpoint` writes beside the networks and the replay buffer."""
        log_bytes = (self.out / LOG).stat().st_size if (self.out / LOG).exists() else 0
        return dict(
            format=CHECKPOINT_FORMAT, step=self.step, episode=self.episode, numpy_rng=self.rng.bit_generator.state,
            episodes=self.logs.episodes, evals=self.logs.evals, config=self.cfg, log_bytes=log_bytes,
            wall_seconds=self.wall_before + time.time() - self.started, obs=np.asarray(self.obs).tolist(),
            ep_return=self.ep_return, ep_len=self.ep_len, episode_actions=[a.tolist() for a in self.episode_actions],
            episode_action_dtypes=[str(a.dtype) for a in self.episode_actions])


def _new_run(cfg: dict, out: Path) -> _Run:
    """Seed everything, make the environments and build the agent (J.3's sizes from ``cfg``)."""
    from rl.agent import SoftQAgent, SoftQConfig
    from rl.evaluation import make_env

    seed = cfg["seed"]
    seed_everything(seed, tensorflow=True)
    env = make_env(cfg["env"], cfg["max_episode_steps"])
    eval_env = make_env(cfg["env"], cfg["max_episode_steps"])
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = SoftQAgent(SoftQConfig(
        obs_dim=obs_dim, act_dim=act_dim, policy_update=cfg["agent"], anneal=cfg["anneal"],
        hidden=(cfg["hidden"],) * 2, maf_blocks=cfg["maf_blocks"], maf_hidden=(cfg["maf_hidden"],) * 2,
        learning_rate=cfg["lr"], batch_size=cfg["batch_size"], particles=cfg["particles"],
        value_samples=cfg["value_samples"], reward_scale=cfg["reward_scale"], discount=cfg["discount"],
        target_update_interval=cfg["target_update"], seed=seed))
    agent.build()
    return _Run(cfg, out, agent, env, eval_env)


def _resume(run: _Run, loaded, stop_at: Optional[int]) -> None:
    """Continue ``run`` from a loaded checkpoint: step, RNG, logs, replay buffer and the episode in progress."""
    ckpt, state, run.replay, warnings = loaded
    run.step, run.episode = int(state["step"]), int(state["episode"])
    if stop_at is not None and stop_at <= run.step:
        raise UsageError("--stop-at {} is not after the step of the checkpoint resumed from ({})".format(
            stop_at, run.step))
    run.rng = np.random.default_rng()
    run.rng.bit_generator.state = state["numpy_rng"]
    run.logs = Logs(run.out, state["episodes"], state["evals"])
    run.logs.write()
    if "log_bytes" in state:
        cut_log(run.out, int(state["log_bytes"]), "resumed from {}".format(ckpt.name))
    run.obs, run.ep_return, run.ep_len, run.episode_actions, note = _restore_episode(
        run.env, run.cfg["seed"], run.episode, state)
    for w in warnings + ([note] if note else []):
        print("warning: " + w, file=sys.stderr, flush=True)
        with open(run.out / LOG, "a") as f:
            f.write("warning: " + w + "\n")
    run.wall_before = float(state.get("wall_seconds", run.logs.evals[-1][3] if run.logs.evals else 0.0))
    log(run.out, "resumed from {} at step {} (episode {}, {} steps into it)".format(
        ckpt, run.step, run.episode, run.ep_len))


def _start(run: _Run) -> None:
    """Start ``run`` from step 0: an empty replay buffer, fresh logs, the first episode."""
    from rl.replay import ReplayBuffer

    run.replay = ReplayBuffer(run.agent.config.obs_dim, run.agent.config.act_dim, run.cfg["replay_capacity"])
    run.rng = np.random.default_rng(run.cfg["seed"])
    run.logs = Logs(run.out)
    run.logs.write()
    cut_log(run.out, 0, "a new start (no checkpoint)")
    run.obs, _ = run.env.reset(seed=episode_seed(run.cfg["seed"], 0))


def _env_step(run: _Run) -> None:
    """One environment step: a uniform action before ``start_steps``, then the policy's; into the buffer."""
    from rl.evaluation import scale_action

    act_dim = run.agent.config.act_dim
    if run.step < run.cfg["start_steps"]:
        action = run.rng.uniform(-1.0, 1.0, size=act_dim)
    else:
        noise = run.rng.standard_normal((1, act_dim)).astype(np.float32)
        action = run.agent.act(np.asarray(run.obs, np.float32)[None], noise)[0]
    env_action = np.array(scale_action(action, run.env.action_space.low, run.env.action_space.high))
    next_obs, reward, terminated, truncated, _ = run.env.step(env_action)
    run.episode_actions.append(env_action)
    run.replay.add(run.obs, action, reward, next_obs, terminated)
    run.ep_return += float(reward)
    run.ep_len += 1
    run.step += 1
    run.obs = next_obs
    if terminated or truncated:
        run.episode += 1
        run.logs.add_episode(run.step, run.ep_return, run.ep_len)
        run.obs, _ = run.env.reset(seed=episode_seed(run.cfg["seed"], run.episode))
        run.ep_return, run.ep_len, run.episode_actions = 0.0, 0, []


def train(cfg: dict, out: Path, resume: bool = False, stop_at: Optional[int] = None) -> dict:
    """Run (or resume) one training run with the resolved configuration ``cfg`` in ``out`` (soft Q-learning, J.3).

    ``resume``: continue from the newest readable checkpoint (a fresh start if there is none).
    ``stop_at``: stop after that step, with a checkpoint there. Returns the final state: step,
    episodes, evals, stopped (True if ``stop_at`` ended it before ``cfg["steps"]``), checkpoint.
    """
    import tensorflow as tf  # noqa: F401  (imported before the agent: seeds, threads)

    from rl.evaluation import deterministic_policy, run_episodes

    run = _new_run(cfg, out)
    schedule = make_schedule(cfg)
    lam_at = (lambda t: 0.0) if cfg["anneal"] == "none" or cfg["agent"] == "svgd" else schedule
    loaded = load_checkpoint(out, run.agent, run.agent.config.obs_dim, run.agent.config.act_dim) \
        if resume and has_checkpoint(out) else None
    if loaded is not None:
        _resume(run, loaded, stop_at)
    else:
        _start(run)
    policy = deterministic_policy(run.agent)
    stats: dict = {}
    run.started = last_t = time.time()
    last_step, last_ckpt = run.step, None

    def evaluate(t: int) -> None:
        returns = run_episodes(run.eval_env, policy, cfg["eval_episodes"])
        run.logs.add_eval(t, returns, run.wall_before + time.time() - run.started)
        log(out, "eval step {}: return {:.2f} +- {:.2f} over {} episodes".format(
            t, np.mean(returns), np.std(returns), len(returns)))

    if run.step == 0:
        evaluate(0)
    stopped = False
    while run.step < cfg["steps"]:
        _env_step(run)
        step = run.step
        if step >= cfg["start_steps"] and len(run.replay) >= cfg["batch_size"] and step % cfg["train_every"] == 0:
            lam = lam_at(step)
            for _ in range(cfg["updates_per_train"]):
                stats = run.agent.train_step(run.replay.sample(cfg["batch_size"], run.rng), lam)
        if step % cfg["progress_every"] == 0 or step == cfg["steps"]:
            last_t, last_step = _progress_line(run, stats, last_t, last_step)
        if step % cfg["eval_every"] == 0 or step == cfg["steps"]:
            evaluate(step)
        if step == stop_at and step < cfg["steps"]:
            log(out, "stopping at step {} (--stop-at) with a checkpoint; continue with --resume".format(step))
        if step % cfg["checkpoint_every"] == 0 or step == cfg["steps"] or step == stop_at:
            last_ckpt = save_checkpoint(out, run.agent, run.replay, run.checkpoint_state())
        if stop_at is not None and step >= stop_at and step < cfg["steps"]:
            stopped = True
            break
    run.env.close()
    run.eval_env.close()
    return {"step": run.step, "episodes": run.logs.episodes, "evals": run.logs.evals, "stopped": stopped,
            "checkpoint": last_ckpt}


def _progress_line(run: _Run, stats: dict, last_t: float, last_step: int):
    """Log the step, its rate, the ETA, the last episode's return and the agent's statistics; the new marks."""
    now, cfg = time.time(), run.cfg
    rate = (run.step - last_step) / max(now - last_t, 1e-9)
    eta = (cfg["steps"] - run.step) / max(rate, 1e-9)
    last_ep = "{:.2f}".format(run.logs.episodes[-1][1]) if run.logs.episodes else "-"
    log(run.out, "step {}/{} ({:.0f} steps/s, eta {:.0f} s) episodes {} last return {} {}".format(
        run.step, cfg["steps"], rate, eta, run.episode, last_ep,
        " ".join("{}={:.3g}".format(k, v) for k, v in sorted(stats.items()))))
    return now, run.step


# ---------------------------------------------------------------------------------------- command line
def resolve_config(args: argparse.Namespace) -> dict:
    """The run's full configuration from parsed flags (checked; raises :class:`UsageError`)."""
    cfg = {k: getattr(args, k) for k in DEFAULTS}
    _check(cfg)
    return cfg


def config_differences(recorded: dict, wanted: dict, ignore=RESUME_MAY_DIFFER) -> Dict[str, Tuple[object, object]]:
    """{key: (recorded value, wanted value)} for every key of ``wanted`` (but ``ignore``) whose values differ
    (:func:`va_core.runinfo.settings_differences`; a key the record lacks reads None)."""
    return runinfo.settings_differences(recorded, wanted, ignore, keys=wanted.keys(), absent=None)


def read_recorded_config(out: Path) -> dict:
    """The configuration in ``out/config.json`` (raises :class:`UsageError` if it is missing or unreadable)."""
    path = out / runinfo.CONFIG_FILENAME
    try:
        recorded = runinfo.read_run_config(out)["config"]
        if not isinstance(recorded, dict):
            raise ValueError("no configuration mapping")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError("{} is missing or damaged ({}), so the run in {} cannot be resumed; move the folder "
                         "away or choose another --out".format(path, one_line(e), out)) from e
    return recorded


def main(argv: Optional[List[str]] = None) -> int:
    """Train from command-line ``argv`` (None: ``sys.argv[1:]``): check the flags and the output folder
    (record config.json, or compare with it on --resume), train, log the final evaluation.

    Raises :class:`UsageError`, :class:`CheckpointError`; :func:`cli` turns them into one-line errors.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out)
    cli_checks.check_out_folder(out)
    holds_run = has_checkpoint(out) or (out / runinfo.CONFIG_FILENAME).exists()
    resuming = args.resume and holds_run
    if not resuming:
        cfg = resolve_config(args)
    if holds_run and not args.resume:
        raise UsageError("{} already holds a run; pass --resume to continue it, or choose another --out "
                         "(nothing was changed)".format(out))
    if resuming:
        recorded = {"knot_interval": None, **read_recorded_config(out)}  # as recorded (older: no knot_interval)
        given = {k: getattr(args, k) for k in cli_checks.given_options(parser, argv) if k in DEFAULTS}
        wanted = effective_config({**recorded, **given})
        problem = runinfo.resume_problem(effective_config(recorded), wanted, RESUME_MAY_DIFFER, out, keys=given)
        if problem:
            raise UsageError(problem)
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
        log(out, "done: {} steps, final evaluation return {:.2f} +- {:.2f}".format(
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
    or output folder (a locked one too), 1 for unreadable checkpoints or a diverged run (:mod:`va_core.errors`)."""
    try:
        return main(argv)
    except errors.RunError as e:
        return errors.report(e)
    except FloatingPointError as e:
        return errors.report(errors.RunFailedError(str(e)))


if __name__ == "__main__":
    sys.exit(cli())
