"""Train soft Q-learning on a gymnasium MuJoCo task: ``python -m rl.train`` (supplement J.3; SPEC section 8).

The paper used rllab's Swimmer, which no longer installs; the default here is gymnasium's
``Swimmer-v5`` (different reward, observation and horizon: compare shapes and orderings, not absolute
returns). ``--env`` takes any gymnasium task with a 1-D box action space.

Writes into ``--out``: config.json (the full configuration, seed, command, versions), episodes.csv
(training episode returns), eval.csv (evaluation returns without exploration noise, fixed seeds),
log.txt (progress) and checkpoints/ (networks, optimisers, replay buffer, RNG states, logs; a pointer
file flipped atomically). ``--resume`` continues a killed run from its last checkpoint, with the
configuration recorded at the start (a partial episode at the time of the checkpoint restarts).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

import rl  # noqa: F401  (project package first: compat layer, TF_USE_LEGACY_KERAS)
from chainer_va import runinfo, schedules
from chainer_va.seeding import seed_everything

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.json"
DEFAULTS = dict(
    env="Swimmer-v5", steps=500_000, seed=0, agent="maf", anneal="ent", schedule="linear", lambda0=1.0,
    reward_scale=30.0, discount=0.99, lr=4e-4, batch_size=128, particles=16, value_samples=16,
    hidden=128, maf_hidden=512, maf_blocks=4, replay_capacity=1_000_000, target_update=1000,
    start_steps=1000, train_every=1, updates_per_train=1, eval_every=10_000, eval_episodes=5,
    checkpoint_every=10_000, max_episode_steps=None, threads=1, progress_every=1000,
)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m rl.train`` (defaults: J.3 and the reference soft Q-learning code)."""
    p = argparse.ArgumentParser(prog="python -m rl.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = DEFAULTS
    p.add_argument("--env", default=d["env"], help="gymnasium environment id (1-D Box actions)")
    p.add_argument("--steps", type=int, default=d["steps"], help="environment steps (paper: 0.5M)")
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--agent", choices=("maf", "svgd"), default=d["agent"],
                   help="maf: U-GAN policy with a MAF proposal; svgd: original soft Q-learning (baseline)")
    p.add_argument("--anneal", choices=("none", "ent", "lik"), default=d["anneal"],
                   help="how lambda_t enters the MAF policy's reverse KL (none: no annealing)")
    p.add_argument("--schedule", choices=schedules.names(), default=d["schedule"],
                   help="annealing schedule of lambda_t over the environment steps")
    p.add_argument("--lambda0", type=float, default=d["lambda0"], help="initial annealing weight")
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
                   help="continue the run in --out from its last checkpoint (its recorded configuration)")
    return p


def _check(cfg: dict) -> None:
    """Reject settings that cannot run, naming the flag and the fix."""
    positive = ("steps", "batch_size", "particles", "value_samples", "hidden", "maf_hidden", "maf_blocks",
                "replay_capacity", "target_update", "train_every", "updates_per_train", "eval_every",
                "eval_episodes", "checkpoint_every", "threads", "progress_every")
    for k in positive:
        if cfg[k] is None or cfg[k] < 1:
            raise ValueError("--{} must be >= 1, got {}".format(k.replace("_", "-"), cfg[k]))
    if cfg["start_steps"] < 0:
        raise ValueError("--start-steps must be >= 0, got {}".format(cfg["start_steps"]))
    if not 0.0 <= cfg["discount"] < 1.0:
        raise ValueError("--discount must be in [0, 1), got {}".format(cfg["discount"]))
    # every lambda_t of the run (oscillating schedules swing to about -lambda0), not only lambda0
    schedules.check_tempered(cfg["anneal"], schedules.make(cfg["schedule"], cfg["lambda0"], cfg["steps"]))


class Logs:
    """Episode and evaluation records, rewritten atomically as CSV files and stored in checkpoints."""

    def __init__(self, out: Path, episodes: Optional[list] = None, evals: Optional[list] = None):
        self.out, self.episodes, self.evals = out, episodes or [], evals or []

    @staticmethod
    def _csv(header: List[str], rows: List[list]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows(rows)
        return buf.getvalue()

    def add_episode(self, step: int, ret: float, length: int) -> None:
        self.episodes.append([step, ret, length])
        runinfo.atomic_write_text(self.out / "episodes.csv", self._csv(["step", "return", "length"], self.episodes))

    def add_eval(self, step: int, returns: List[float], seconds: float) -> None:
        self.evals.append([step, float(np.mean(returns)), float(np.std(returns)), seconds,
                           " ".join("{:.3f}".format(r) for r in returns)])
        runinfo.atomic_write_text(self.out / "eval.csv", self._csv(
            ["step", "mean_return", "std_return", "wall_seconds", "returns"], self.evals))


def _latest_checkpoint(out: Path) -> Optional[Path]:
    pointer = out / CHECKPOINT_DIR / LATEST
    if not pointer.exists():
        return None
    with open(pointer) as f:
        return out / CHECKPOINT_DIR / json.load(f)["dir"]


def save_checkpoint(out: Path, agent, replay, state: dict) -> Path:
    """Write a complete checkpoint folder under a temporary name, rename it, then flip the pointer atomically."""
    root = out / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = "step_{:09d}".format(state["step"])
    tmp = root / (".tmp_" + name)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    agent.checkpoint().write(str(tmp / "agent"))
    replay.save(tmp / "replay.npz")
    runinfo.atomic_write_json(tmp / "state.json", state)
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    previous = _latest_checkpoint(out)
    runinfo.atomic_write_json(root / LATEST, {"dir": name, "step": state["step"]})
    if previous is not None and previous.name != name and previous.exists():
        shutil.rmtree(previous)
    return final


def _log(out: Path, line: str) -> None:
    print(line, flush=True)
    with open(out / "log.txt", "a") as f:
        f.write(line + "\n")


def train(cfg: dict, out: Path, resume: bool = False) -> dict:
    """Run (or resume) one training run with the resolved configuration ``cfg``; returns the final state."""
    import tensorflow as tf

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
    schedule = schedules.make(cfg["schedule"], cfg["lambda0"], cfg["steps"])
    lam_at = (lambda t: 0.0) if cfg["anneal"] == "none" or cfg["agent"] == "svgd" else schedule

    ckpt = _latest_checkpoint(out) if resume else None
    if ckpt is not None:
        with open(ckpt / "state.json") as f:
            state = json.load(f)
        agent.checkpoint().read(str(ckpt / "agent")).assert_existing_objects_matched()
        replay = ReplayBuffer.load(ckpt / "replay.npz")
        rng = np.random.default_rng()
        rng.bit_generator.state = state["numpy_rng"]
        logs = Logs(out, state["episodes"], state["evals"])
        step, episode = state["step"], state["episode"]
        _log(out, "resumed from {} at step {}".format(ckpt, step))
    else:
        replay = ReplayBuffer(obs_dim, act_dim, cfg["replay_capacity"])
        rng = np.random.default_rng(seed)
        logs = Logs(out)
        step, episode = 0, 0
    env_seed = seed * 1_000_003 + step  # a fresh, reproducible episode after a start or a resume
    obs, _ = env.reset(seed=env_seed)
    ep_return, ep_len = 0.0, 0
    policy = deterministic_policy(agent)
    stats: dict = {}
    started, last_t, last_step = time.time(), time.time(), step
    wall_before = logs.evals[-1][3] if logs.evals else 0.0

    def evaluate(t: int) -> None:
        returns = run_episodes(eval_env, policy, cfg["eval_episodes"])
        logs.add_eval(t, returns, wall_before + time.time() - started)
        _log(out, "eval step {}: return {:.2f} +- {:.2f} over {} episodes".format(
            t, np.mean(returns), np.std(returns), len(returns)))

    def checkpoint(t: int) -> None:
        save_checkpoint(out, agent, replay, dict(
            step=t, episode=episode, numpy_rng=rng.bit_generator.state, episodes=logs.episodes,
            evals=logs.evals, config=cfg))

    if step == 0:
        evaluate(0)
    while step < cfg["steps"]:
        if step < cfg["start_steps"]:
            action = rng.uniform(-1.0, 1.0, size=act_dim)
        else:
            noise = rng.standard_normal((1, act_dim)).astype(np.float32)
            action = agent.act(np.asarray(obs, np.float32)[None], noise)[0]
        next_obs, reward, terminated, truncated, _ = env.step(scale_action(action, low, high))
        replay.add(obs, action, reward, next_obs, terminated)
        ep_return += float(reward)
        ep_len += 1
        step += 1
        obs = next_obs
        if terminated or truncated:
            episode += 1
            logs.add_episode(step, ep_return, ep_len)
            obs, _ = env.reset()
            ep_return, ep_len = 0.0, 0
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
        if step % cfg["checkpoint_every"] == 0 or step == cfg["steps"]:
            checkpoint(step)
    env.close()
    eval_env.close()
    return {"step": step, "episodes": logs.episodes, "evals": logs.evals}


def resolve_config(args: argparse.Namespace) -> dict:
    """The run's full configuration from parsed flags (checked)."""
    cfg = {k: getattr(args, k) for k in DEFAULTS}
    _check(cfg)
    return cfg


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: parse, record config.json (or reload it on --resume), train, print the final evaluation."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    cfg = resolve_config(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(cfg["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(1)
    has_ckpt = _latest_checkpoint(out) is not None
    if args.resume and has_ckpt:
        recorded = runinfo.read_run_config(out)["config"]
        changed = {k: (recorded.get(k), v) for k, v in cfg.items() if recorded.get(k) != v}
        if changed:
            print("--resume: using the recorded configuration; ignoring changed flags {}".format(changed),
                  file=sys.stderr)
        cfg = recorded
    elif has_ckpt:
        raise SystemExit("{} already holds a run with checkpoints; pass --resume to continue it, or choose "
                         "another --out".format(out))
    else:
        out.mkdir(parents=True, exist_ok=True)
        runinfo.write_run_config(out, cfg, seed=cfg["seed"])
    result = train(cfg, out, resume=args.resume and has_ckpt)
    final = result["evals"][-1]
    _log(out, "done: {} steps, final evaluation return {:.2f} +- {:.2f}".format(result["step"], final[1], final[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
