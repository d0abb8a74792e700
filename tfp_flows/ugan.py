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

Scale [departure: the supplement states neither the generator's form nor an initial scale]. Both
samplers work in standardised coordinates y = x / sigma0 on the target u_0(y) = u(sigma0 y), where sigma0
is the reverse-KL fit of an isotropic N(0, sigma0^2 I) to u (:func:`fit_scale`, a grid search before
training). The objective is unchanged (a change of variables adds dim log sigma0 to log q, a constant):
logged entropies, losses and nu's densities are those of x. The U-GAN generator is residual,
y = z + MLP(z), so it starts as N(0, I) in y, i.e. at the target's scale. Without both, the paper-size
MAF over-contracted onto the narrow initial generator and runs diverged on N(0, 4I), and small targets
(std 0.1, dim 10) missed their variance (docs/status/ugan.md, issue 20). ``scale=1.0`` keeps x = y.

``train_direct_flow`` is the baseline of J.2: a MAF trained on KL(nu || mu) alone, with
reparameterised samples of nu (same annealing options, default none).

Runs write ``config.json`` (``va_core.runinfo``; the original record, kept: each resume adds
``config_resume_<step>.json``), ``log.jsonl`` (one JSON line per logged step, appended as it is
logged), ``snapshots/step_<t>.npy`` (generator samples at chosen steps) and TF checkpoints under
``checkpoints/step_<N>/`` (:mod:`va_core.checkpoints`: the two newest kept). A killed run resumes from its
newest readable checkpoint with ``resume=True`` (the generator's RNG state is checkpointed too, so the
result is the uninterrupted run's); log rows past that checkpoint are dropped and logged again. Resuming
needs the recorded settings (all but ``RESUME_MAY_CHANGE``), and every file it reads is checked first: a
damaged checkpoint is skipped, with a warning, for the one before it; any other damaged file is an error
that names it and the fix, before anything in the folder is written.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

import tfp_flows  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf

from va_core import checkpoints, cli_checks, errors, runinfo, schedules, tempering
from va_core.errors import RunFailedError, UsageError
from tfp_flows.maf import DEFAULT_MAX_LOG_SCALE, MAF
from tfp_flows.run_folder import (RESUME_MAY_CHANGE, DamagedFileError, ResumeMismatchError, RunExistsError,
                                  RunState, UganError, check_folder, npy_bytes, one_line, open_folder,
                                  recorded_config)

__all__ = ["Generator", "SamplerResult", "SamplerSettings", "RunOptions", "train_sampler", "train_direct_flow",
           "RESUME_MAY_CHANGE", "UganError",
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
    """Free-form sampler y = G(z) = z + MLP(z), z ~ N(0, I_noise_dim) (supplement H: no density needed).

    Residual [inferred; see the module docstring]: z is cut or zero-padded to ``dim``."""

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
        skip = z[:, :self.dim] if self.noise_dim >= self.dim else tf.pad(z, [[0, 0], [0, self.dim - self.noise_dim]])
        return skip + h


#: fit_scale's grid of sigma (log-spaced) and its Monte Carlo draws (fixed: the fit is part of the settings).
SCALE_GRID = np.exp(np.linspace(np.log(1e-3), np.log(1e3), 121))
SCALE_DRAWS = 1024


def fit_scale(log_density: Callable, dim: int) -> float:
    """sigma0 = argmax_sigma E_z[log u(sigma z)] + dim log sigma, z ~ N(0, I): the isotropic Gaussian
    N(0, sigma^2 I) closest to u in reverse KL, on :data:`SCALE_GRID` (non-finite values skipped; 1.0 if
    none is finite). Fixed draws, so the same target always gives the same sigma0."""
    z = tf.constant(np.random.default_rng(0).standard_normal((SCALE_DRAWS, dim)), tf.float32)
    values = np.array([float(tf.reduce_mean(log_density(float(sigma) * z))) + dim * math.log(sigma)
                       for sigma in SCALE_GRID])
    values[~np.isfinite(values)] = -np.inf
    return float(SCALE_GRID[int(np.argmax(values))]) if np.isfinite(values).any() else 1.0


class SamplerResult:
    """A trained sampler: ``sample(n)`` (numpy), ``history`` (logged dicts), ``snapshots`` {step: samples}."""

    def __init__(self, kind: str, dim: int, flow: MAF, generator: Optional[Generator], history: List[dict],
                 snapshots: Dict[int, np.ndarray], config: dict, out: Optional[Path]):
        self.scale = float(config.get("scale", 1.0))  # x = scale * y: the networks work in y
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
        y = np.concatenate(out, 0) if out else np.zeros((0, self.dim), np.float32)
        return y if self.scale == 1.0 else (self.scale * y).astype(np.float32)

    def log_density_estimate(self, x) -> np.ndarray:
        """log nu(x): the MAF's density estimate of the sampler's density (of x, not of y = x / scale)."""
        y = np.asarray(x, np.float32) / np.float32(self.scale)
        return self.flow.log_prob(y).numpy() - self.dim * math.log(self.scale)


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
                         "calling it inside tf.function failed: {}".format(one_line(e))) from e


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


class SettingsError(UganError, UsageError, ValueError):
    """A bad argument value or combination of arguments."""


class DivergedError(UganError, RunFailedError, FloatingPointError):
    """A logged loss, nu's negative log-likelihood or the entropy estimate became non-finite."""


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """What a run trains: the keyword arguments of :func:`train_sampler` (``kind`` "ugan") and
    :func:`train_direct_flow` (``kind`` "direct"), with their defaults."""

    kind: str
    dim: int
    anneal: str = "none"
    schedule: str = "static"
    lambda0: float = 0.0
    steps: int = DEFAULT_STEPS
    seed: int = 0
    batch_size: int = DEFAULT_BATCH
    hidden_units: Sequence[int] = DEFAULT_FLOW_HIDDEN
    flow_blocks: int = DEFAULT_FLOW_BLOCKS
    lr: float = DEFAULT_LR
    flow_lr: Optional[float] = None
    flow_steps: int = DEFAULT_FLOW_STEPS
    generator_hidden: Sequence[int] = DEFAULT_GENERATOR_HIDDEN
    noise_dim: Optional[int] = None
    generator_activation: str = "relu"
    max_log_scale: float = DEFAULT_MAX_LOG_SCALE
    lr_final_fraction: float = 1.0
    schedule_options: Optional[dict] = None
    log_every: int = DEFAULT_LOG_EVERY
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    snapshot_steps: Sequence[int] = ()
    snapshot_size: int = 5000
    scale: Optional[float] = None  # sigma0 of x = sigma0 y; None: fit_scale


@dataclasses.dataclass
class RunOptions:
    """Where and how a run goes: its folder, resuming, progress output, extra record keys, a per-log-row
    callback, and ``check_only`` (every check, nothing trained or written)."""

    out: Optional[os.PathLike] = None
    resume: bool = False
    progress: bool = False
    extra_config: Optional[dict] = None
    callback: Optional[Callable[[dict], None]] = None
    check_only: bool = False


def _positive_int(name: str, value, least: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise SettingsError("{} must be an integer >= {}, got {!r}".format(name, least, value))


def _checked(s: SamplerSettings, run: RunOptions) -> SamplerSettings:
    """``s`` checked (a :class:`SettingsError` naming the fix) and normalised: int sizes, flow_lr, noise_dim."""
    if isinstance(s.dim, bool) or not isinstance(s.dim, (int, np.integer)) or s.dim < 1:
        raise SettingsError("dim must be a positive integer, got {!r}".format(s.dim))
    if s.anneal not in tempering.WEIGHTED_FORMS:
        raise SettingsError("anneal must be one of {}, got {!r}".format(tempering.WEIGHTED_FORMS, s.anneal))
    for name, least in (("steps", 1), ("batch_size", 2), ("log_every", 1), ("checkpoint_every", 1),
                        ("snapshot_size", 1)) + ((("flow_steps", 1),) if s.kind == "ugan" else ()):
        _positive_int(name, getattr(s, name), least)
    if not s.lr > 0 or (s.flow_lr is not None and not s.flow_lr > 0):
        raise SettingsError("learning rates must be positive, got lr={} flow_lr={}".format(s.lr, s.flow_lr))
    if s.scale is not None and not (math.isfinite(s.scale) and s.scale > 0):
        raise SettingsError("scale must be a positive number (or None to fit it), got {!r}".format(s.scale))
    if not 0.0 < s.lr_final_fraction <= 1.0:
        raise SettingsError("lr_final_fraction must be in (0, 1] (1 = constant learning rate), got {}".format(
            s.lr_final_fraction))
    idle = tempering.idle_lambda0(s.anneal, s.lambda0, style="python")
    if idle:
        raise SettingsError(idle)
    bad_snaps = [int(t) for t in s.snapshot_steps if not 0 <= int(t) <= s.steps]
    if bad_snaps:
        raise SettingsError("snapshot steps {} are outside 0..steps={}; drop them or train longer".format(
            bad_snaps, s.steps))
    if run.resume and run.out is None:
        raise SettingsError("resume=True needs out= (the folder holding the checkpoints)")
    if run.out is not None and (problem := cli_checks.out_folder_problem(run.out)):
        raise SettingsError(problem)
    return dataclasses.replace(s, steps=int(s.steps), dim=int(s.dim), flow_lr=s.lr if s.flow_lr is None else s.flow_lr,
                               noise_dim=int(s.dim) if s.noise_dim is None else int(s.noise_dim))


def _lambdas(s: SamplerSettings, log_density: Callable):
    """The schedule, its lambda_t table (t = 0 .. steps-1) and ``s`` with its scale fitted if not given;
    the log-density is checked on the way."""
    try:
        sched = cli_checks.make_schedule(s.schedule, s.lambda0, s.steps, s.schedule_options)
        lams = _lambda_table(s.anneal, sched, s.steps)
        _check_log_density(log_density, s.dim)
    except (ValueError, TypeError) as e:
        raise SettingsError(str(e)) from None
    if s.scale is None:
        s = dataclasses.replace(s, scale=fit_scale(log_density, s.dim))
    return sched, lams, s


def _run_config(s: SamplerSettings, sched: schedules.Schedule, log_density: Callable,
                extra_config: Optional[dict]) -> dict:
    """The run's record (config.json): every setting that decides its numbers."""
    ugan = s.kind == "ugan"
    config = {
        "kind": s.kind, "dim": s.dim, "anneal": s.anneal, "schedule": s.schedule, "schedule_config": sched.config(),
        "lambda0": float(s.lambda0), "steps": s.steps, "seed": int(s.seed), "batch_size": int(s.batch_size),
        "hidden_units": [int(h) for h in s.hidden_units], "flow_blocks": int(s.flow_blocks), "lr": float(s.lr),
        "flow_lr": float(s.flow_lr), "flow_steps": int(s.flow_steps),
        "generator_hidden": [int(h) for h in s.generator_hidden] if ugan else None,
        "noise_dim": s.noise_dim if ugan else None, "generator_activation": s.generator_activation,
        "max_log_scale": float(s.max_log_scale), "lr_final_fraction": float(s.lr_final_fraction),
        "log_every": int(s.log_every), "checkpoint_every": int(s.checkpoint_every),
        "snapshot_steps": sorted({int(t) for t in s.snapshot_steps}), "snapshot_size": int(s.snapshot_size),
        "adam_betas": [ADAM_BETA1, ADAM_BETA2], "log_density": getattr(log_density, "__name__", repr(log_density)),
        "scale": float(s.scale), "generator": "residual" if ugan else None,
    }
    config.update(extra_config or {})
    return config


def _networks(s: SamplerSettings):
    """nu (the MAF density estimate) and, for a U-GAN, the generator; their weights seeded by ``s.seed``."""
    try:
        flow = MAF(s.dim, hidden_units=s.hidden_units, num_blocks=s.flow_blocks, max_log_scale=s.max_log_scale,
                   seed=s.seed, name="nu")
        generator = None
        if s.kind == "ugan":
            generator = Generator(s.dim, s.noise_dim, s.generator_hidden, s.generator_activation, seed=s.seed + 1)
    except ValueError as e:
        raise SettingsError(str(e)) from None
    return flow, generator


def _optimisers(s: SamplerSettings, flow, generator):
    """Adam for nu and the generator (built, so that a restore fills their slots), constant or decaying
    linearly to ``lr_final_fraction`` of their rate; nu takes ``flow_steps`` updates per U-GAN step."""
    import tf_keras

    def rate(base_lr, updates_per_step=1):
        # the decay reads its optimiser's own update count: over steps * updates_per_step updates
        if s.lr_final_fraction == 1.0:
            return base_lr
        return tf_keras.optimizers.schedules.PolynomialDecay(base_lr, s.steps * updates_per_step,
                                                             base_lr * s.lr_final_fraction, power=1.0)

    flow_updates = max(s.flow_steps, 1) if s.kind == "ugan" else 1
    flow_opt = tf_keras.optimizers.Adam(rate(s.flow_lr, flow_updates), beta_1=ADAM_BETA1, beta_2=ADAM_BETA2)
    gen_opt = tf_keras.optimizers.Adam(rate(s.lr), beta_1=ADAM_BETA1, beta_2=ADAM_BETA2) if generator else None
    return flow_opt, gen_opt


def _train_chunk(s: SamplerSettings, log_density: Callable, flow, generator, flow_opt, gen_opt, rng):
    """The step of J.2 as one graph call over several steps with per-step weights (a_t, b_t) of
    L = E_q[a log q - b log u] (:func:`va_core.tempering.weights`).

    U-GAN: ``flow_steps`` maximum-likelihood steps of nu on the generator's samples, then one generator
    step on L with log q read from nu. Direct: one step of nu on L with its own reparameterised samples."""
    clip, flow_vars = DEFAULT_GRAD_CLIP, flow.trainable_variables
    gen_vars = generator.trainable_variables if generator is not None else None
    log_det = s.dim * math.log(s.scale)  # log q(x) = log q_y(y) - log_det for x = scale * y

    def log_u(y):
        return log_density(s.scale * y)

    def flow_fit(x):
        with tf.GradientTape() as tape:
            nll = -tf.reduce_mean(flow.log_prob(x))
        grads = tape.gradient(nll, flow_vars)
        grads, _ = tf.clip_by_global_norm(grads, clip)
        flow_opt.apply_gradients(zip(grads, flow_vars))
        return nll

    def ugan_step(a, b):
        nll = tf.constant(0.0)
        for _ in range(s.flow_steps):
            y_fit = tf.stop_gradient(generator(rng.normal([s.batch_size, s.noise_dim])))
            nll = flow_fit(y_fit)
        z = rng.normal([s.batch_size, s.noise_dim])
        with tf.GradientTape() as tape:
            y = generator(z)
            log_q = flow.log_prob(y) - log_det
            log_p = log_u(y)
            loss = tf.reduce_mean(a * log_q - b * log_p)
        grads = tape.gradient(loss, gen_vars)
        grads, _ = tf.clip_by_global_norm(grads, clip)
        gen_opt.apply_gradients(zip(grads, gen_vars))
        return loss, nll + log_det, -tf.reduce_mean(log_q), tf.reduce_mean(log_p)

    def direct_step(a, b):
        with tf.GradientTape() as tape:
            z = rng.normal([s.batch_size, s.dim])
            y = flow.bijector.forward(z)
            log_q = flow.base.log_prob(z) - flow.bijector.forward_log_det_jacobian(z, event_ndims=1) - log_det
            log_p = log_u(y)
            loss = tf.reduce_mean(a * log_q - b * log_p)
        grads = tape.gradient(loss, flow_vars)
        grads, _ = tf.clip_by_global_norm(grads, clip)
        flow_opt.apply_gradients(zip(grads, flow_vars))
        return loss, -tf.reduce_mean(log_q), -tf.reduce_mean(log_q), tf.reduce_mean(log_p)

    one_step = ugan_step if s.kind == "ugan" else direct_step

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32)])
    def train_chunk(a_seq, b_seq):
        """Several training steps in one graph call (per-step weights a_t, b_t): saves Python overhead."""
        metrics = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
        for i in tf.range(tf.shape(a_seq)[0]):
            metrics = one_step(a_seq[i], b_seq[i])
        return dict(zip(("loss", "flow_nll", "entropy", "mean_log_u"), metrics))

    return train_chunk


def _train(s: SamplerSettings, log_density: Callable, run: RunOptions) -> Optional[SamplerResult]:
    """Check, build, restore and train one run (:func:`train_sampler`, :func:`train_direct_flow`)."""
    s = _checked(s, run)
    sched, lams, s = _lambdas(s, log_density)
    config = _run_config(s, sched, log_density, run.extra_config)
    flow, generator = _networks(s)
    out_path = Path(run.out) if run.out is not None else None
    has_checkpoint = check_folder(out_path, config, run.resume)
    flow_opt, gen_opt = _optimisers(s, flow, generator)
    rng = tf.random.Generator.from_seed(int(s.seed) + 2)
    step_var = tf.Variable(0, dtype=tf.int64, name="step")
    flow_opt.build(flow.trainable_variables)  # the slots exist now: a restore fills them, the trace adds none
    if gen_opt is not None:
        gen_opt.build(generator.trainable_variables)
    state = RunState()
    if out_path is not None:
        ckpt = tf.train.Checkpoint(flow=flow, flow_opt=flow_opt, rng=rng, step=step_var,
                                   **({"generator": generator, "gen_opt": gen_opt} if generator else {}))
        state = open_folder(out_path, ckpt, step_var, config, has_checkpoint, run.check_only)
    if run.check_only:
        return None
    train_chunk = _train_chunk(s, log_density, flow, generator, flow_opt, gen_opt, rng)
    result = SamplerResult(s.kind, s.dim, flow, generator, state.history, state.snapshots, config, out_path)
    _loop(s, lams, train_chunk, result, state, step_var, (flow_opt, gen_opt), run)
    if out_path is not None:
        final = result.sample(s.snapshot_size, seed=int(s.seed) + FINAL_SAMPLES_SEED_OFFSET)
        runinfo.atomic_write_bytes(out_path / "samples.npy", npy_bytes(final))
    return result


def _training_events(s: SamplerSettings, start: int, checkpoints: bool) -> List[int]:
    """The steps at which the loop stops to log, snapshot or checkpoint (and the last step)."""
    return sorted({int(t) for t in s.snapshot_steps if start < int(t) <= s.steps}
                  | set(range(s.log_every, s.steps + 1, s.log_every))
                  | (set(range(s.checkpoint_every, s.steps + 1, s.checkpoint_every)) if checkpoints else set())
                  | {s.steps})


def _log_row(s: SamplerSettings, done: int, lam: float, metrics: dict, t0: float, optimisers) -> dict:
    """The log line of step ``done``; a non-finite loss is a :class:`DivergedError`."""
    flow_opt, gen_opt = optimisers
    row = {"step": done, "lambda": lam, "beta": tempering.implied_beta(s.anneal, lam),
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
                done, json.dumps(row), s.lr, s.max_log_scale))
    return row


def _loop(s: SamplerSettings, lams: np.ndarray, train_chunk, result: SamplerResult, state: RunState, step_var,
          optimisers, run: RunOptions) -> None:
    """Train from ``state.start`` to ``s.steps`` in chunks between events; log, snapshot and checkpoint there."""
    history, snapshots, out_path = state.history, state.snapshots, result.out
    snap_set = {int(t) for t in s.snapshot_steps}

    def take_snapshot(t):
        samples = result.sample(s.snapshot_size, seed=int(s.seed) + SNAPSHOT_SEED_OFFSET)
        snapshots[t] = samples
        if out_path is not None:
            runinfo.atomic_write_bytes(out_path / "snapshots" / "step_{}.npy".format(t), npy_bytes(samples))

    bar = None
    try:
        if state.start == 0 and 0 in snap_set and 0 not in snapshots:
            take_snapshot(0)
        bar = _progress(s.steps, state.start, run.progress, "{} {}".format(s.kind, s.anneal))
        # time_s counts the training time of every process of the run: a resumed run goes on from the log
        t0 = time.time() - (history[-1].get("time_s", 0.0) if history else 0.0)
        last_print = time.time()
        weights = np.array([tempering.weights(s.anneal, float(l)) for l in lams], np.float32)
        t = state.start
        for done in _training_events(s, state.start, state.save is not None):
            if done <= t:
                continue
            metrics = train_chunk(tf.constant(weights[t:done, 0]), tf.constant(weights[t:done, 1]))
            if bar is not None:
                bar.update(done - t)
            t = done
            step_var.assign(done)
            if done % s.log_every == 0 or done == s.steps:
                row = _log_row(s, done, float(lams[done - 1]), metrics, t0, optimisers)
                history.append(row)
                if state.log_handle is not None:  # appended at once: a killed run keeps its log up to the kill
                    state.log_handle.write(json.dumps(row) + "\n")
                    state.log_handle.flush()
                if bar is None and run.progress and time.time() - last_print > 5.0:
                    print("[{} {}] step {}/{} loss {:.4f} entropy {:.3f}".format(
                        s.kind, s.anneal, done, s.steps, row["loss"], row["entropy"]), flush=True)
                    last_print = time.time()
            if done in snap_set:
                take_snapshot(done)
            if state.save is not None and (done % s.checkpoint_every == 0 or done == s.steps):
                os.fsync(state.log_handle.fileno())  # the log is ahead of, never behind, the checkpoint
                state.save(done)
            if run.callback is not None and history and history[-1]["step"] == done:
                run.callback(history[-1])
    finally:
        if bar is not None:  # closed on errors too: an error message then starts on its own line
            bar.close()
        if state.log_handle is not None:
            state.log_handle.close()


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
                  check_only: bool = False, scale: Optional[float] = None) -> Optional[SamplerResult]:
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
    ``scale``: sigma0 of the standardised coordinates x = sigma0 y (module docstring); None fits it
    (:func:`fit_scale`), 1.0 trains on x itself.
    Returns a :class:`SamplerResult` with ``.sample(n)`` and ``.history``.
    """
    settings = SamplerSettings(
        kind="ugan", dim=dim, anneal=anneal, schedule=schedule, lambda0=lambda0, steps=steps, seed=seed,
        batch_size=batch_size, hidden_units=hidden_units, flow_blocks=flow_blocks, lr=lr, flow_lr=flow_lr,
        flow_steps=flow_steps, generator_hidden=generator_hidden, noise_dim=noise_dim,
        generator_activation=generator_activation, max_log_scale=max_log_scale, lr_final_fraction=lr_final_fraction,
        schedule_options=schedule_options, log_every=log_every, checkpoint_every=checkpoint_every,
        snapshot_steps=snapshot_steps, snapshot_size=snapshot_size,
        scale=scale)
    return _train(settings, log_density, RunOptions(out=out, resume=resume, progress=progress, extra_config=extra_config,
                                                    callback=callback, check_only=check_only))


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
                      check_only: bool = False, scale: Optional[float] = None) -> Optional[SamplerResult]:
    """The direct baseline of J.2: a MAF nu trained on KL(nu || mu) = E_nu[log nu - log u] alone
    (reparameterised forward samples); same return type, run records, resume rules, errors and
    ``check_only`` as :func:`train_sampler`."""
    settings = SamplerSettings(
        kind="direct", dim=dim, anneal=anneal, schedule=schedule, lambda0=lambda0, steps=steps, seed=seed,
        batch_size=batch_size, hidden_units=hidden_units, flow_blocks=flow_blocks, lr=lr, flow_lr=None, flow_steps=0,
        generator_hidden=(), noise_dim=None, generator_activation="relu", max_log_scale=max_log_scale,
        lr_final_fraction=lr_final_fraction, schedule_options=schedule_options, log_every=log_every,
        checkpoint_every=checkpoint_every, snapshot_steps=snapshot_steps, snapshot_size=snapshot_size,
        scale=scale)
    return _train(settings, log_density, RunOptions(out=out, resume=resume, progress=progress, extra_config=extra_config,
                                                    callback=callback, check_only=check_only))


def _parse_ints(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


#: CLI option -> (key of the recorded configuration): what ``--resume`` fills in from config.json
_RECORDED = {"target": "target", "method": "kind", "anneal": "anneal", "schedule": "schedule", "lambda0": "lambda0",
             "steps": "steps", "seed": "seed", "batch_size": "batch_size", "hidden_units": "hidden_units",
             "flow_blocks": "flow_blocks", "generator_hidden": "generator_hidden", "lr": "lr",
             "max_log_scale": "max_log_scale", "snapshot_steps": "snapshot_steps", "scale": "scale"}


def _resume_settings(args, given: set) -> None:
    """``--resume``: fill every option not given on the command line with the run's recorded setting (as
    ``rl.train`` does), so that only flags given explicitly can differ. Refuses a folder holding no run."""
    out = Path(args.out)
    if not (out / runinfo.CONFIG_FILENAME).exists():
        if checkpoints.has_checkpoint(out):
            recorded_config(out)  # checkpoints without a record: its DamagedFileError names the fix
        raise SettingsError("--resume: {} holds no run (no {}); drop --resume to start one there, or pass the folder "
                            "of the run to continue".format(out, runinfo.CONFIG_FILENAME))
    recorded = recorded_config(out)
    for option, key in _RECORDED.items():
        if option not in given and recorded.get(key) is not None:
            setattr(args, option, recorded[key])
    if "knot_interval" not in given:
        args.knot_interval = (recorded.get("schedule_config") or {}).get("knot_interval")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI: ``python -m tfp_flows.ugan --target banana --anneal lik --lambda0 -0.5 --schedule linear --out DIR``.

    Writes the run folder (see :func:`train_sampler`) and ``quality.json`` (energy distance and MMD^2
    of the sampler to exact samples). ``--resume`` continues the run in ``--out`` with its recorded
    settings (flags given must equal them). Errors print one line and return 2 (bad settings, an ``--out``
    that is a file, a folder holding a run without ``--resume``, ``--resume`` with other settings or on a
    folder without a run) or 1 (damaged files, divergence), as every command does (:mod:`va_core.errors`).
    """
    from va_core import sample_distance
    from tfp_flows import targets

    p = cli_checks.OneLineParser(prog="python -m tfp_flows.ugan",
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
    p.add_argument("--scale", type=float, default=None,
                   help="sigma0 of x = sigma0 y, the coordinates the networks work in (default: fitted, fit_scale)")
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
        cli_checks.check_out_folder(args.out)
        if args.resume:
            _resume_settings(args, cli_checks.given_options(p, argv))
    except errors.RunError as e:
        return errors.report(e)
    from va_core.seeding import seed_everything

    seed_everything(args.seed, tensorflow=True)
    target = targets.get(args.target)
    common = dict(steps=args.steps, seed=args.seed, batch_size=args.batch_size, hidden_units=args.hidden_units,
                  flow_blocks=args.flow_blocks, lr=args.lr, out=args.out, resume=args.resume,
                  anneal=args.anneal, schedule=args.schedule, lambda0=args.lambda0,
                  schedule_options={"knot_interval": args.knot_interval},
                  max_log_scale=args.max_log_scale, snapshot_steps=args.snapshot_steps, progress=True, scale=args.scale,
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
    except errors.RunError as e:
        return errors.report(e)
    print(json.dumps(quality))
    return 0


if __name__ == "__main__":
    sys.exit(main())
