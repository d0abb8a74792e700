"""U-GAN: a free-form generator trained to sample an unnormalised density u (supplement H, J.2;
SPEC sections 1 and 7), with a MAF density estimate nu of the generator's own density q.

Loop [inferred, SPEC section 7]: at every iteration
  1. nu takes ``flow_steps`` maximum-likelihood steps on a fresh batch of generator samples
     (stop-gradient), so log nu ~ log q;
  2. the generator x = G(z), z ~ N(0, I), takes one step on the annealed reverse KL
        L(G) = E_z[ a_t log nu(G(z)) - b_t log u(G(z)) ],
     back-propagating through nu's density (nu's parameters fixed in this step). Since
     E_q[d/dtheta log q_theta] = 0, the pathwise gradient of E_q[log nu] is that of -H(q).

Annealing (Corollary 2.2; SPEC section 1), with lambda_t from ``va_core.schedules``:
  - ``none``: KL(q||p)                            -> a = 1,            b = 1          (beta = 1)
  - ``lik``:  KL(q||p) - lambda E_q[log p]        -> a = 1,            b = 1 + lambda (beta = 1 + lambda)
  - ``ent``:  KL(q||p) - lambda H(q)              -> a = 1 + lambda,   b = 1          (beta = 1/(1 + lambda))
Up to a positive factor each objective is KL(q || p^beta / Z), so q -> p^beta. Negative lambda is
allowed where the theory allows it: likelihood form needs beta = 1 + lambda > 0, entropy form
lambda > -1; every value the schedule takes is checked before training.

``train_direct_flow`` is the baseline of J.2: a MAF trained on KL(nu || mu) alone, with
reparameterised samples of nu (same annealing options, default none).

Runs write ``config.json`` (``va_core.runinfo``; the original record, kept: each resume adds
``config_resume_<step>.json``), ``log.jsonl`` (one JSON line per logged step, appended as it is
logged), ``snapshots/step_<t>.npy`` (generator samples at chosen steps) and TF checkpoints under
``checkpoints/`` (``tf.train.CheckpointManager``, the two newest kept; TF writes the data and the
index through temporary files, the index last). A killed run resumes from its newest checkpoint with
``resume=True`` (the generator's RNG state is checkpointed too, so the result is the uninterrupted
run's); log rows past that checkpoint are dropped and logged again. Resuming needs the recorded
settings (all but ``RESUME_MAY_CHANGE``), and every file it reads is checked first: a damaged one is
an error that names it and the fix, before anything in the folder is written.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

import tfp_flows  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf

from va_core import cli_checks, runinfo, schedules, tempering
from tfp_flows.maf import DEFAULT_MAX_LOG_SCALE, MAF

__all__ = ["Generator", "SamplerResult", "train_sampler", "train_direct_flow", "config_differences", "format_differences", "RESUME_MAY_CHANGE", "UganError",
           "SettingsError", "RunExistsError", "ResumeMismatchError", "DamagedFileError", "DivergedError", "main"]

#: Offsets added to a run's seed for its sampling streams, kept apart from the training streams (seed,
#: seed + 1, ...): unseeded ``SamplerResult.sample`` calls, the snapshot samples, the final samples.npy.
#: Primes, so no small seed of one stream meets another's; changing them changes recorded samples.
SAMPLE_SEED_OFFSET = 7919
SNAPSHOT_SEED_OFFSET = 104729
FINAL_SAMPLES_SEED_OFFSET = 1299709
DEFAULT_STEPS = 5000
DEFAULT_BATCH = 256
DEFAULT_GENERATOR_HIDDEN = (128, 128)  # [inferred] the toy generator's size is not given; J.3's policy uses 128
DEFAULT_FLOW_HIDDEN = (512, 512)  # supplement J.2.1
DEFAULT_FLOW_BLOCKS = 8  # supplement J.2.1
DEFAULT_LR = 1e-3  # [inferred]; the clamped MAF is stable at 1e-3 (PLATFORM.md: unclamped diverged)
DEFAULT_FLOW_STEPS = 2  # maximum-likelihood steps of nu per generator step [inferred; 2 tracked q better than 1 in the Gaussian check]
DEFAULT_LOG_EVERY = 100
DEFAULT_CHECKPOINT_EVERY = 1000
DEFAULT_GRAD_CLIP = 100.0
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999


class Generator(tf.Module):
    """Free-form MLP sampler x = G(z), z ~ N(0, I_noise_dim) (supplement H: no density needed)."""

    def __init__(self, dim: int, noise_dim: int, hidden_units: Sequence[int] = DEFAULT_GENERATOR_HIDDEN,
                 activation: str = "relu", seed: int = 0, name: Optional[str] = None):
        super().__init__(name=name or "generator")
        self.dim = int(dim)
        self.noise_dim = int(noise_dim)
        hidden = [int(h) for h in hidden_units]
        if min(hidden, default=1) < 1 or self.noise_dim < 1:
            raise ValueError("generator_hidden must be a list of positive sizes and noise_dim positive, got {!r} "
                             "and {}".format(list(hidden_units), noise_dim))
        sizes = [self.noise_dim] + hidden + [self.dim]
        self.activation = {"relu": tf.nn.relu, "tanh": tf.tanh, "elu": tf.nn.elu}.get(activation)
        if self.activation is None:
            raise ValueError("activation must be relu, tanh or elu, got {!r}".format(activation))
        self.weights = []
        self.biases = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            w = tf.random.stateless_uniform([fan_in, fan_out], tf.constant([int(seed), i], tf.int64),
                                            -limit, limit)
            self.weights.append(tf.Variable(w, name="w{}".format(i)))
            self.biases.append(tf.Variable(tf.zeros([fan_out]), name="b{}".format(i)))

    def __call__(self, z):
        h = z
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = tf.matmul(h, w) + b
            if i < len(self.weights) - 1:
                h = self.activation(h)
        return h


class SamplerResult:
    """A trained sampler: ``sample(n)`` (numpy), ``history`` (logged dicts), ``snapshots`` {step: samples}."""

    def __init__(self, kind: str, dim: int, flow: MAF, generator: Optional[Generator], history: List[dict],
                 snapshots: Dict[int, np.ndarray], config: dict, out: Optional[Path]):
        self.kind = kind
        self.dim = dim
        self.flow = flow
        self.generator = generator
        self.history = history
        self.snapshots = snapshots
        self.config = config
        self.out = out
        self._rng = np.random.default_rng(int(config.get("seed", 0)) + SAMPLE_SEED_OFFSET)

    def sample(self, n: int, seed: Optional[int] = None, batch: int = 65536) -> np.ndarray:
        """n samples (numpy float32, shape (n, dim)) from the generator (U-GAN) or the flow (direct)."""
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        out = []
        for start in range(0, n, batch):
            m = min(batch, n - start)
            if self.generator is not None:
                z = rng.standard_normal((m, self.generator.noise_dim)).astype(np.float32)
                out.append(self.generator(tf.constant(z)).numpy())
            else:
                out.append(self.flow.sample(m, seed=int(rng.integers(0, 2**31 - 1))).numpy())
        return np.concatenate(out, 0) if out else np.zeros((0, self.dim), np.float32)

    def log_density_estimate(self, x) -> np.ndarray:
        """log nu(x): the MAF's density estimate of the sampler's density."""
        return self.flow.log_prob(np.asarray(x, np.float32)).numpy()


def _check_log_density(log_density: Callable, dim: int):
    """Probe ``log_density`` eagerly on 4 points (shape (n,), finite), then inside a ``tf.function`` on 2,
    as the training loop calls it: a numpy function passes the first and fails only there."""
    probe = tf.zeros([4, dim], tf.float32) + tf.constant(np.linspace(-0.5, 0.5, 4)[:, None], tf.float32)
    try:
        val = log_density(probe)
    except Exception as e:  # noqa: BLE001  (re-raised with the contract)
        raise ValueError("log_density must map a (n, {}) float32 tensor to (n,); calling it on a (4, {}) "
                         "tensor failed: {}".format(dim, dim, e)) from e
    val = tf.convert_to_tensor(val)
    if val.shape != (4,):
        raise ValueError("log_density must return shape (n,) for input (n, {}); got {} for n=4 "
                         "(sum over the last axis?)".format(dim, val.shape))
    if not np.all(np.isfinite(val.numpy())):
        raise ValueError("log_density returned non-finite values near the origin: {}".format(val.numpy()))
    try:
        tf.function(log_density)(probe[:2])
    except Exception as e:  # noqa: BLE001  (numpy code on a symbolic tensor: NotImplementedError, TypeError, ...)
        raise ValueError("log_density must be TensorFlow-traceable (use targets.X.log_density, not log_density_np): "
                         "calling it inside tf.function failed: {}".format(_one_line(e))) from e


def _lambda_table(anneal: str, schedule: schedules.Schedule, steps: int) -> np.ndarray:
    tempering.check_tempered(anneal, schedule)  # every lambda_t of the run keeps a tempered target
    return np.array([schedule(t) for t in range(steps)], np.float64)


def _progress(total: int, initial: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is installed with the project
        return None
    return tqdm(total=total, initial=initial, desc=desc, mininterval=2.0, file=sys.stderr)


class UganError(Exception):
    """A user error of a U-GAN run (bad settings, an unusable run folder, a diverged run); the message
    names the problem and the fix. The CLI prints it as one line and exits with status 2."""


class SettingsError(UganError, ValueError):
    """A bad argument value or combination of arguments."""


class RunExistsError(UganError, FileExistsError):
    """``out`` already holds a run and ``resume`` was not asked for (nothing was written)."""


class ResumeMismatchError(UganError, ValueError):
    """``resume=True`` with settings that differ from the run recorded in ``out/config.json``."""


class DamagedFileError(UganError, RuntimeError):
    """A file of a run folder (checkpoint, snapshot, log, config record) cannot be read back."""


class DivergedError(UganError, FloatingPointError):
    """A logged loss, nu's negative log-likelihood or the entropy estimate became non-finite."""


#: Keys of the recorded configuration that a resumed run may change: they decide only when rows are
#: logged and checkpoints written, not the training itself (steps run in the same order whatever the
#: chunking). Everything else, ``extra_config`` (the CLI's ``target``) included, must be equal.
RESUME_MAY_CHANGE = ("log_every", "checkpoint_every")
CHECKPOINT_DIR = "checkpoints"
LOG_FILE = "log.jsonl"
_CKPT_RE = re.compile(r"^ckpt-(\d+)\.index$")


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join("{}: {}".format(type(error).__name__, error).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _json_normalised(obj):
    """``obj`` as it reads back from config.json (tuples become lists, numpy scalars plain numbers)."""
    return json.loads(json.dumps(obj, default=str))


def config_differences(recorded: dict, config: dict) -> Dict[str, tuple]:
    """``{key: (recorded value, new value)}`` for every key whose value differs between a run's recorded
    configuration and a new one, a key only one side has included (its missing value shown as the
    string ``"(absent)"``); the keys in :data:`RESUME_MAY_CHANGE` are not compared."""
    recorded = _json_normalised(recorded)
    config = _json_normalised(config)
    diff = {}
    for key in sorted(set(recorded) | set(config)):
        if key in RESUME_MAY_CHANGE:
            continue
        old, new = recorded.get(key, "(absent)"), config.get(key, "(absent)")
        if old != new:
            diff[key] = (old, new)
    return diff


def format_differences(diff: Dict[str, tuple]) -> str:
    """``"key: old -> new, ..."`` for :func:`config_differences`' result."""
    return ", ".join("{}: {!r} -> {!r}".format(k, old, new) for k, (old, new) in diff.items())


def _checkpoint_numbers(ckdir: Path) -> List[int]:
    """Steps of the checkpoints in ``ckdir`` (sorted). A checkpoint counts when its ``.index`` file
    exists: TensorFlow writes the data file first and the index last, each through a temporary file."""
    if not ckdir.is_dir():
        return []
    return sorted(int(m.group(1)) for m in (_CKPT_RE.match(p.name) for p in ckdir.iterdir()) if m)


def _checkpoint_files(ckdir: Path, number: int) -> List[Path]:
    return sorted(ckdir.glob("ckpt-{}.*".format(number)))


def _write_checkpoint_state(ckdir: Path, numbers: Sequence[int]) -> None:
    """Rewrite TF's ``checkpoint`` index from the checkpoint files present (newest last), so that
    ``tf.train.CheckpointManager`` neither keeps checkpoints deleted by hand on its list (and sweeps a
    good one too early) nor misses an index that was damaged. No checkpoint: the index is removed."""
    state = ckdir / "checkpoint"
    if not numbers:
        if state.exists():
            state.unlink()
        return
    stamps = [(ckdir / "ckpt-{}.index".format(n)).stat().st_mtime for n in numbers]
    lines = ['model_checkpoint_path: "ckpt-{}"'.format(numbers[-1])]
    lines += ['all_model_checkpoint_paths: "ckpt-{}"'.format(n) for n in numbers]
    lines += ["all_model_checkpoint_timestamps: {!r}".format(float(t)) for t in stamps]
    lines.append("last_preserved_timestamp: {!r}".format(float(min(stamps)) - 1.0))
    runinfo.atomic_write_text(state, "\n".join(lines) + "\n")


def _read_log(path: Path, upto_step: int) -> List[dict]:
    """The rows of ``log.jsonl`` with ``step <= upto_step``. Rows are appended as they are logged, so a
    killed run may leave rows past its last checkpoint (dropped here: the resumed run logs them again)
    and a torn last line (ignored: it was being written when the run was killed, past the checkpoint)."""
    if not path.exists():
        return []
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            step = int(row["step"])
        except (ValueError, KeyError, TypeError) as e:
            if i == len(lines) - 1:
                continue
            raise DamagedFileError("{} line {} is damaged ({}); delete that line, or the whole file (it is the "
                                   "run's record only: the checkpoints hold the training state), and resume "
                                   "again".format(path, i + 1, _one_line(e))) from None
        if step <= upto_step:
            rows.append(row)
    return rows


def _load_snapshot(path: Path, shape: tuple) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
        if array.shape != shape:
            raise ValueError("shape {} instead of {}".format(array.shape, shape))
        return array
    except (OSError, ValueError, EOFError) as e:
        raise DamagedFileError("snapshot {} is damaged ({}); a checkpoint cannot rebuild it: delete it to "
                               "resume without that snapshot, or start again in another out folder".format(
                                   path, _one_line(e))) from None


def _recorded_config(out_path: Path) -> dict:
    try:
        return runinfo.read_run_config(out_path)["config"]
    except FileNotFoundError:
        raise DamagedFileError("{} holds checkpoints but no {}, so the run's settings cannot be checked; put "
                               "the run's {} back, or start again in another out folder".format(
                                   out_path, runinfo.CONFIG_FILENAME, runinfo.CONFIG_FILENAME)) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DamagedFileError("{} is damaged ({}), so the run's settings cannot be checked; put the run's "
                               "record back, or start again in another out folder".format(
                                   out_path / runinfo.CONFIG_FILENAME, _one_line(e))) from None


def _restore(ckpt, step_var, ckdir: Path, numbers: List[int]) -> int:
    """Restore the newest checkpoint; a damaged one is a :class:`DamagedFileError` naming its files and
    the previous checkpoint kept (``max_to_keep=2``), which deleting the damaged files falls back to."""
    number = numbers[-1]
    try:
        ckpt.restore(str(ckdir / "ckpt-{}".format(number))).assert_existing_objects_matched()
        if int(step_var.numpy()) != number:
            raise ValueError("it holds step {}, not {}".format(int(step_var.numpy()), number))
    except (IndexError, ValueError, AssertionError, tf.errors.OpError) as e:
        names = ", ".join(p.name for p in _checkpoint_files(ckdir, number))
        if len(numbers) > 1:
            fix = "delete its files to resume from the previous checkpoint ckpt-{} (step {})".format(
                numbers[-2], numbers[-2])
        else:
            fix = "no earlier checkpoint is kept: delete its files to restart the run from step 0, or start " \
                  "again in another out folder"
        raise DamagedFileError("checkpoint {} ({}) cannot be restored ({}); {}".format(
            ckdir / "ckpt-{}".format(number), names, _one_line(e), fix)) from None
    return number


def _train(kind: str, log_density: Callable, dim: int, anneal: str, schedule: str, lambda0: float,
           steps: int, seed: int, batch_size: int, hidden_units: Sequence[int], flow_blocks: int, lr: float,
           flow_lr: Optional[float], flow_steps: int, generator_hidden: Sequence[int], noise_dim: Optional[int],
           generator_activation: str, max_log_scale: float, lr_final_fraction: float,
           schedule_options: Optional[dict],
           out, resume: bool, log_every: int, checkpoint_every: int, snapshot_steps: Sequence[int],
           snapshot_size: int, progress: bool, extra_config: Optional[dict],
           callback: Optional[Callable[[dict], None]] = None,
           check_only: bool = False) -> Optional[SamplerResult]:
    def positive_int(name, value, least=1):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise SettingsError("{} must be an integer >= {}, got {!r}".format(name, least, value))

    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise SettingsError("dim must be a positive integer, got {!r}".format(dim))
    if anneal not in tempering.WEIGHTED_FORMS:
        raise SettingsError("anneal must be one of {}, got {!r}".format(tempering.WEIGHTED_FORMS, anneal))
    positive_int("steps", steps)
    positive_int("batch_size", batch_size, 2)
    positive_int("log_every", log_every)
    positive_int("checkpoint_every", checkpoint_every)
    positive_int("snapshot_size", snapshot_size)
    if kind == "ugan":
        positive_int("flow_steps", flow_steps)
    if not lr > 0 or (flow_lr is not None and not flow_lr > 0):
        raise SettingsError("learning rates must be positive, got lr={} flow_lr={}".format(lr, flow_lr))
    if not 0.0 < lr_final_fraction <= 1.0:
        raise SettingsError("lr_final_fraction must be in (0, 1] (1 = constant learning rate), got {}".format(
            lr_final_fraction))
    idle = tempering.idle_lambda0(anneal, lambda0, style="python")
    if idle:
        raise SettingsError(idle)
    bad_snaps = [int(s) for s in snapshot_steps if not 0 <= int(s) <= steps]
    if bad_snaps:
        raise SettingsError("snapshot steps {} are outside 0..steps={}; drop them or train longer".format(
            bad_snaps, steps))
    if resume and out is None:
        raise SettingsError("resume=True needs out= (the folder holding the checkpoints)")
    if out is not None and (problem := cli_checks.out_folder_problem(out)):
        raise SettingsError(problem)
    steps = int(steps)
    dim = int(dim)
    flow_lr = lr if flow_lr is None else flow_lr
    noise_dim = dim if noise_dim is None else int(noise_dim)
    try:
        sched = cli_checks.make_schedule(schedule, lambda0, steps, schedule_options)
        lams = _lambda_table(anneal, sched, steps)
        _check_log_density(log_density, dim)
    except (ValueError, TypeError) as e:
        raise SettingsError(str(e)) from None

    config = {
        "kind": kind, "dim": dim, "anneal": anneal, "schedule": schedule, "schedule_config": sched.config(),
        "lambda0": float(lambda0), "steps": steps, "seed": int(seed), "batch_size": int(batch_size),
        "hidden_units": [int(h) for h in hidden_units], "flow_blocks": int(flow_blocks), "lr": float(lr),
        "flow_lr": float(flow_lr), "flow_steps": int(flow_steps),
        "generator_hidden": [int(h) for h in generator_hidden] if kind == "ugan" else None,
        "noise_dim": noise_dim if kind == "ugan" else None, "generator_activation": generator_activation,
        "max_log_scale": float(max_log_scale), "lr_final_fraction": float(lr_final_fraction), "log_every": int(log_every),
        "checkpoint_every": int(checkpoint_every), "snapshot_steps": sorted({int(s) for s in snapshot_steps}),
        "snapshot_size": int(snapshot_size), "adam_betas": [ADAM_BETA1, ADAM_BETA2],
        "log_density": getattr(log_density, "__name__", repr(log_density)),
    }
    config.update(extra_config or {})

    import tf_keras

    try:
        flow = MAF(dim, hidden_units=hidden_units, num_blocks=flow_blocks, max_log_scale=max_log_scale,
                   seed=seed, name="nu")
        generator = None
        if kind == "ugan":
            generator = Generator(dim, noise_dim, generator_hidden, generator_activation, seed=seed + 1)
    except ValueError as e:
        raise SettingsError(str(e)) from None

    out_path = Path(out) if out is not None else None
    ckdir = out_path / CHECKPOINT_DIR if out_path is not None else None
    numbers: List[int] = []
    has_record = False
    if out_path is not None:
        # check the folder before anything is written to it
        numbers = _checkpoint_numbers(ckdir)
        has_record = (out_path / runinfo.CONFIG_FILENAME).exists()
        if (numbers or has_record) and not resume:
            held = ([runinfo.CONFIG_FILENAME] if has_record else []) + (
                ["{}/ckpt-{}".format(CHECKPOINT_DIR, numbers[-1])] if numbers else [])
            raise RunExistsError("{} already holds a run ({}); pass resume=True (--resume) to continue it with the "
                                 "same settings, or choose a new out folder (nothing was written)".format(
                                     out_path, ", ".join(held)))
        if resume and (numbers or has_record):
            diff = config_differences(_recorded_config(out_path), config)
            if diff:
                raise ResumeMismatchError(
                    "cannot resume {}: these settings differ from its record {} (recorded -> now): {}; resume with "
                    "the recorded settings, or choose another out folder (--out) for the new ones "
                    "(only {} may change on resume)".format(out_path, out_path / runinfo.CONFIG_FILENAME,
                                                             format_differences(diff), ", ".join(RESUME_MAY_CHANGE)))

    gen_vars = generator.trainable_variables if generator is not None else None
    flow_vars = flow.trainable_variables
    def rate(base_lr, updates_per_step=1):
        """Constant, or linear decay to lr_final_fraction * base_lr over the run. The schedule reads its
        optimiser's own update count, so an optimiser updated ``updates_per_step`` times per training step
        decays over ``steps * updates_per_step`` updates."""
        if lr_final_fraction == 1.0:
            return base_lr
        return tf_keras.optimizers.schedules.PolynomialDecay(base_lr, steps * updates_per_step,
                                                             base_lr * lr_final_fraction, power=1.0)

    # nu takes flow_steps maximum-likelihood updates per U-GAN step, one per direct-VI step
    flow_updates = max(flow_steps, 1) if kind == "ugan" else 1
    flow_opt = tf_keras.optimizers.Adam(rate(flow_lr, flow_updates), beta_1=ADAM_BETA1, beta_2=ADAM_BETA2)
    gen_opt = tf_keras.optimizers.Adam(rate(lr), beta_1=ADAM_BETA1, beta_2=ADAM_BETA2) if generator else None
    rng = tf.random.Generator.from_seed(int(seed) + 2)
    step_var = tf.Variable(0, dtype=tf.int64, name="step")
    # build optimiser slots now so that a restore fills them (and the trace does not create variables)
    flow_opt.build(flow_vars)
    if gen_opt is not None:
        gen_opt.build(gen_vars)

    manager = None
    history: List[dict] = []
    snapshots: Dict[int, np.ndarray] = {}
    start = 0
    log_handle = None
    if out_path is not None:
        ckpt = tf.train.Checkpoint(flow=flow, flow_opt=flow_opt, rng=rng, step=step_var,
                                   **({"generator": generator, "gen_opt": gen_opt} if generator else {}))
        if numbers:
            start = _restore(ckpt, step_var, ckdir, numbers)
            for s in config["snapshot_steps"]:
                f = out_path / "snapshots" / "step_{}.npy".format(s)
                if s <= start:
                    if f.exists():
                        snapshots[s] = _load_snapshot(f, (int(snapshot_size), dim))
                    elif not check_only:
                        print("note: {} is missing; the resumed run has no snapshot at step {}".format(f, s),
                              file=sys.stderr)
            history = _read_log(out_path / LOG_FILE, start)
        if check_only:
            return None
        # every check passed: from here on the folder is written
        if numbers or ckdir.exists():
            _write_checkpoint_state(ckdir, numbers)
        manager = tf.train.CheckpointManager(ckpt, str(ckdir), max_to_keep=2)
        if has_record:  # the original record stays; each resume adds its own
            name = "config_resume_{:08d}.json".format(start)
            k = 2
            while (out_path / name).exists():
                name = "config_resume_{:08d}_{}.json".format(start, k)
                k += 1
            runinfo.write_run_config(out_path, config, seed=seed, filename=name)
        else:
            runinfo.write_run_config(out_path, config, seed=seed)
        runinfo.atomic_write_text(out_path / LOG_FILE, "".join(json.dumps(r) + "\n" for r in history))
        log_handle = open(out_path / LOG_FILE, "a")
    elif check_only:
        return None

    clip = DEFAULT_GRAD_CLIP

    def flow_fit(x):
        with tf.GradientTape() as tape:
            nll = -tf.reduce_mean(flow.log_prob(x))
        grads = tape.gradient(nll, flow_vars)
        grads, _ = tf.clip_by_global_norm(grads, clip)
        flow_opt.apply_gradients(zip(grads, flow_vars))
        return nll

    def ugan_step(a, b):
        nll = tf.constant(0.0)
        for _ in range(flow_steps):
            x_fit = tf.stop_gradient(generator(rng.normal([batch_size, noise_dim])))
            nll = flow_fit(x_fit)
        z = rng.normal([batch_size, noise_dim])
        with tf.GradientTape() as tape:
            x = generator(z)
            log_q = flow.log_prob(x)
            log_u = log_density(x)
            loss = tf.reduce_mean(a * log_q - b * log_u)
        grads = tape.gradient(loss, gen_vars)
        grads, _ = tf.clip_by_global_norm(grads, clip)
        gen_opt.apply_gradients(zip(grads, gen_vars))
        return loss, nll, -tf.reduce_mean(log_q), tf.reduce_mean(log_u)

    def direct_step(a, b):
        with tf.GradientTape() as tape:
            z = rng.normal([batch_size, dim])
            x = flow.bijector.forward(z)
            log_q = flow.base.log_prob(z) - flow.bijector.forward_log_det_jacobian(z, event_ndims=1)
            log_u = log_density(x)
            loss = tf.reduce_mean(a * log_q - b * log_u)
        grads = tape.gradient(loss, flow_vars)
        grads, _ = tf.clip_by_global_norm(grads, clip)
        flow_opt.apply_gradients(zip(grads, flow_vars))
        return loss, -tf.reduce_mean(log_q), -tf.reduce_mean(log_q), tf.reduce_mean(log_u)

    one_step = ugan_step if kind == "ugan" else direct_step

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32)])
    def train_chunk(a_seq, b_seq):
        """Several training steps in one graph call (per-step weights a_t, b_t): saves Python overhead."""
        metrics = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
        for i in tf.range(tf.shape(a_seq)[0]):
            metrics = one_step(a_seq[i], b_seq[i])
        return dict(zip(("loss", "flow_nll", "entropy", "mean_log_u"), metrics))

    result = SamplerResult(kind, dim, flow, generator, history, snapshots, config, out_path)
    snap_set = set(config["snapshot_steps"])

    def take_snapshot(t):
        samples = result.sample(snapshot_size, seed=int(seed) + SNAPSHOT_SEED_OFFSET)
        snapshots[t] = samples
        if out_path is not None:
            buf = _npy_bytes(samples)
            runinfo.atomic_write_bytes(out_path / "snapshots" / "step_{}.npy".format(t), buf)

    bar = None
    try:
        if start == 0 and 0 in snap_set and 0 not in snapshots:
            take_snapshot(0)
        bar = _progress(steps, start, progress, "{} {}".format(kind, anneal))
        # time_s counts the training time of every process of the run: a resumed run goes on from the log
        t0 = time.time() - (history[-1].get("time_s", 0.0) if history else 0.0)
        last_print = time.time()
        weights = np.array([tempering.weights(anneal, float(l)) for l in lams], np.float32)
        events = sorted({s for s in snap_set if start < s <= steps}
                        | set(range(log_every, steps + 1, log_every))
                        | (set(range(checkpoint_every, steps + 1, checkpoint_every)) if manager is not None
                           else set())
                        | {steps})
        t = start
        for done in events:
            if done <= t:
                continue
            metrics = train_chunk(tf.constant(weights[t:done, 0]), tf.constant(weights[t:done, 1]))
            if bar is not None:
                bar.update(done - t)
            t = done
            step_var.assign(done)
            lam = float(lams[done - 1])
            if done % log_every == 0 or done == steps:
                row = {"step": done, "lambda": lam,
                       "beta": tempering.implied_beta(anneal, lam),
                       "time_s": round(time.time() - t0, 3)}
                row.update({k: float(v) for k, v in metrics.items()})
                # the learning rates of the step's last updates (they decay when lr_final_fraction < 1)
                row["flow_lr"] = float(flow_opt.learning_rate)
                row["lr"] = float(gen_opt.learning_rate) if gen_opt is not None else row["flow_lr"]
                if not all(math.isfinite(row[k]) for k in ("loss", "flow_nll", "entropy")):
                    raise DivergedError(
                        "training diverged by step {}: {}; resuming would repeat it (the run is deterministic): "
                        "start a new run (another out folder) with a smaller lr (--lr, now {}), a smaller bound "
                        "on nu's log-scales (max_log_scale, --max-log-scale, now {}) or another seed".format(
                            done, json.dumps(row), lr, max_log_scale))
                history.append(row)
                if log_handle is not None:  # appended at once: a killed run keeps its log up to the kill
                    log_handle.write(json.dumps(row) + "\n")
                    log_handle.flush()
                if bar is None and progress and time.time() - last_print > 5.0:
                    print("[{} {}] step {}/{} loss {:.4f} entropy {:.3f}".format(
                        kind, anneal, done, steps, row["loss"], row["entropy"]), flush=True)
                    last_print = time.time()
            if done in snap_set:
                take_snapshot(done)
            if manager is not None and (done % checkpoint_every == 0 or done == steps):
                os.fsync(log_handle.fileno())  # the log is ahead of, never behind, the checkpoint
                manager.save(checkpoint_number=done)
            if callback is not None and history and history[-1]["step"] == done:
                callback(history[-1])
    finally:
        if bar is not None:  # closed on errors too: an error message then starts on its own line
            bar.close()
        if log_handle is not None:
            log_handle.close()
    if out_path is not None:
        runinfo.atomic_write_bytes(out_path / "samples.npy", _npy_bytes(result.sample(snapshot_size,
                                                                                     seed=int(seed) + FINAL_SAMPLES_SEED_OFFSET)))
    return result


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def train_sampler(log_density: Callable, dim: int, anneal: str = "none", schedule: str = "static",
                  lambda0: float = 0.0, steps: int = DEFAULT_STEPS, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                  hidden_units: Sequence[int] = DEFAULT_FLOW_HIDDEN, flow_blocks: int = DEFAULT_FLOW_BLOCKS,
                  lr: float = DEFAULT_LR, out=None, resume: bool = False, *, flow_lr: Optional[float] = None,
                  flow_steps: int = DEFAULT_FLOW_STEPS, generator_hidden: Sequence[int] = DEFAULT_GENERATOR_HIDDEN,
                  noise_dim: Optional[int] = None, generator_activation: str = "relu",
                  max_log_scale: float = DEFAULT_MAX_LOG_SCALE, lr_final_fraction: float = 1.0,
                  schedule_options: Optional[dict] = None,
                  log_every: int = DEFAULT_LOG_EVERY, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
                  snapshot_steps: Sequence[int] = (), snapshot_size: int = 5000, progress: bool = False,
                  extra_config: Optional[dict] = None,
                  callback: Optional[Callable[[dict], None]] = None,
                  check_only: bool = False) -> Optional[SamplerResult]:
    """Train a U-GAN generator to sample u ∝ exp(log_density) under the annealed objective (SPEC §1, §7).

    ``anneal``: none | lik (KL - lambda E_q[log p], beta = 1 + lambda) | ent (KL - lambda H(q),
    beta = 1/(1 + lambda)); ``schedule``/``lambda0``/``schedule_options`` as in
    ``va_core.schedules.make`` over ``steps`` iterations. ``hidden_units``/``flow_blocks``
    size the MAF density estimate nu (J.2.1 defaults: 8 blocks of [512, 512]). ``out``: folder for
    config.json, log.jsonl, snapshots and checkpoints. A folder that holds a run is refused
    (:class:`RunExistsError`) unless ``resume=True``, which continues it from its newest checkpoint
    with the recorded settings (any other difference than :data:`RESUME_MAY_CHANGE`, ``extra_config``
    included, is a :class:`ResumeMismatchError`; damaged files a :class:`DamagedFileError`); config.json
    keeps the original record and each resume writes ``config_resume_<step>.json``.
    ``lr_final_fraction`` < 1 decays both learning rates linearly to that fraction (less SGD noise at
    the end); ``flow_steps`` maximum-likelihood steps of nu per generator step; ``callback(row)`` is
    called with each logged row (after that step's checkpoint, if any). ``check_only=True`` runs every
    check above (settings, the out folder, restoring its checkpoint and reading its files) and returns
    None without training or writing anything. A non-finite loss raises :class:`DivergedError`.
    Returns a :class:`SamplerResult` with ``.sample(n)`` and ``.history``.
    """
    return _train("ugan", log_density, dim, anneal, schedule, lambda0, steps, seed, batch_size, hidden_units,
                  flow_blocks, lr, flow_lr, flow_steps, generator_hidden, noise_dim, generator_activation,
                  max_log_scale, lr_final_fraction, schedule_options, out, resume, log_every, checkpoint_every, snapshot_steps,
                  snapshot_size, progress, extra_config, callback, check_only)


def train_direct_flow(log_density: Callable, dim: int, steps: int = DEFAULT_STEPS, seed: int = 0,
                      batch_size: int = DEFAULT_BATCH, hidden_units: Sequence[int] = DEFAULT_FLOW_HIDDEN,
                      flow_blocks: int = DEFAULT_FLOW_BLOCKS, lr: float = DEFAULT_LR, out=None,
                      resume: bool = False, *, anneal: str = "none", schedule: str = "static",
                      lambda0: float = 0.0, max_log_scale: float = DEFAULT_MAX_LOG_SCALE,
                      lr_final_fraction: float = 1.0, schedule_options: Optional[dict] = None, log_every: int = DEFAULT_LOG_EVERY,
                      checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, snapshot_steps: Sequence[int] = (),
                      snapshot_size: int = 5000, progress: bool = False,
                      extra_config: Optional[dict] = None,
                      callback: Optional[Callable[[dict], None]] = None,
                      check_only: bool = False) -> Optional[SamplerResult]:
    """The direct baseline of J.2: a MAF nu trained on KL(nu || mu) = E_nu[log nu - log u] alone
    (reparameterised forward samples); same return type, run records, resume rules, errors and
    ``check_only`` as :func:`train_sampler`."""
    return _train("direct", log_density, dim, anneal, schedule, lambda0, steps, seed, batch_size, hidden_units,
                  flow_blocks, lr, None, 0, (), None, "relu", max_log_scale, lr_final_fraction, schedule_options,
                  out, resume,
                  log_every, checkpoint_every, snapshot_steps, snapshot_size, progress, extra_config, callback,
                  check_only)


def _parse_ints(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


#: CLI option -> (key of the recorded configuration): what ``--resume`` fills in from config.json
_RECORDED = {"target": "target", "method": "kind", "anneal": "anneal", "schedule": "schedule", "lambda0": "lambda0",
             "steps": "steps", "seed": "seed", "batch_size": "batch_size", "hidden_units": "hidden_units",
             "flow_blocks": "flow_blocks", "generator_hidden": "generator_hidden", "lr": "lr",
             "max_log_scale": "max_log_scale", "snapshot_steps": "snapshot_steps"}


def _resume_settings(args, given: set) -> None:
    """``--resume``: fill every option not given on the command line with the run's recorded setting (as
    ``rl.train`` does), so that only flags given explicitly can differ. Refuses a folder holding no run."""
    out = Path(args.out)
    if not (out / runinfo.CONFIG_FILENAME).exists():
        if _checkpoint_numbers(out / CHECKPOINT_DIR):
            _recorded_config(out)  # checkpoints without a record: its DamagedFileError names the fix
        raise SettingsError("--resume: {} holds no run (no {}); drop --resume to start one there, or pass the folder "
                            "of the run to continue".format(out, runinfo.CONFIG_FILENAME))
    recorded = _recorded_config(out)
    for option, key in _RECORDED.items():
        if option not in given and recorded.get(key) is not None:
            setattr(args, option, recorded[key])
    if "knot_interval" not in given:
        args.knot_interval = (recorded.get("schedule_config") or {}).get("knot_interval")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI: ``python -m tfp_flows.ugan --target banana --anneal lik --lambda0 -0.5 --schedule linear --out DIR``.

    Writes the run folder (see :func:`train_sampler`) and ``quality.json`` (energy distance and MMD^2
    of the sampler to exact samples). ``--resume`` continues the run in ``--out`` with its recorded
    settings (flags given must equal them). User errors (:class:`UganError`: bad settings, an ``--out``
    that is a file, a folder holding a run without ``--resume``, ``--resume`` with other settings or on a
    folder without a run, damaged files, divergence) print one line and return 2; argparse errors exit
    with 2 as well.
    """
    from va_core import sample_distance
    from tfp_flows import targets

    p = argparse.ArgumentParser(prog="python -m tfp_flows.ugan",
                                description=" ".join(__doc__.split("\n\n")[0].split()))  # first paragraph
    p.add_argument("--target", default="banana", choices=targets.NAMES)
    p.add_argument("--method", default="ugan", choices=("ugan", "direct"))
    p.add_argument("--anneal", default="none", choices=tempering.WEIGHTED_FORMS)
    p.add_argument("--schedule", default="static", choices=schedules.names())
    p.add_argument("--knot-interval", type=int, default=None,
                   help="lgan schedule: steps between knots (default {})".format(schedules.DEFAULT_KNOT_INTERVAL))
    p.add_argument("--lambda0", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    p.add_argument("--hidden-units", type=cli_checks.positive_sizes, default=list(DEFAULT_FLOW_HIDDEN),
                   help="MAF hidden sizes, comma-separated (J.2.1: 512,512)")
    p.add_argument("--flow-blocks", type=int, default=DEFAULT_FLOW_BLOCKS)
    p.add_argument("--generator-hidden", type=cli_checks.positive_sizes, default=list(DEFAULT_GENERATOR_HIDDEN))
    p.add_argument("--lr", type=float, default=DEFAULT_LR)
    p.add_argument("--max-log-scale", type=float, default=DEFAULT_MAX_LOG_SCALE,
                   help="bound c on nu's log-scales, c tanh(raw/c) (smaller: steadier, less expressive)")
    p.add_argument("--snapshot-steps", type=_parse_ints, default=[])
    p.add_argument("--eval-samples", type=int, default=2000, help="samples for the energy distance / MMD")
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest checkpoint with its recorded settings "
                        "(flags given must equal them)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    if args.eval_samples < 2:
        p.error("--eval-samples must be >= 2, got {}".format(args.eval_samples))
    try:
        if (problem := cli_checks.out_folder_problem(args.out)):
            raise SettingsError(problem)
        if args.resume:
            _resume_settings(args, cli_checks.given_options(p, argv))
    except UganError as e:
        print("error: {}".format(e), file=sys.stderr)
        return 2
    from va_core.seeding import seed_everything

    seed_everything(args.seed, tensorflow=True)
    target = targets.get(args.target)
    common = dict(steps=args.steps, seed=args.seed, batch_size=args.batch_size, hidden_units=args.hidden_units,
                  flow_blocks=args.flow_blocks, lr=args.lr, out=args.out, resume=args.resume,
                  anneal=args.anneal, schedule=args.schedule, lambda0=args.lambda0,
                  schedule_options={"knot_interval": args.knot_interval},
                  max_log_scale=args.max_log_scale, snapshot_steps=args.snapshot_steps, progress=True,
                  extra_config={"target": args.target})
    try:
        with runinfo.exclusive_run_lock(args.out):  # one job per folder
            if args.method == "ugan":
                res = train_sampler(target.log_density, target.dim, generator_hidden=args.generator_hidden,
                                    **common)
            else:
                res = train_direct_flow(target.log_density, target.dim, **common)
            rng = np.random.default_rng(args.seed + 1)
            exact = target.sample(args.eval_samples, rng)
            model = res.sample(args.eval_samples, seed=args.seed + 2)
            quality = {"energy_distance": sample_distance.energy_distance(model, exact),
                       "mmd2": sample_distance.mmd2(model, exact), "n": args.eval_samples}
            runinfo.atomic_write_json(Path(args.out) / "quality.json", quality)
    except (UganError, runinfo.RunLockedError) as e:
        print("error: {}".format(e), file=sys.stderr)
        return 2
    print(json.dumps(quality))
    return 0


if __name__ == "__main__":
    sys.exit(main())
