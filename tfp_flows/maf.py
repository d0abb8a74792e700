"""Masked autoregressive flows (MAF, Papamakarios et al. 2017) on TensorFlow Probability.

Supplement J.2.1: "we stacked 8 shift and scale MAF blocks with [512, 512] hidden layers, each
followed by an order flipping permutation layer"; J.3 uses a 4-block MAF as the RL proposal density
q(a | s), hence the optional conditioning input. The MADE networks
(``tfp.bijectors.AutoregressiveNetwork``) are built eagerly and kept as attributes of the
``tf.Module``, so ``MAF.trainable_variables`` lists all of them and ``tf.train.Checkpoint`` tracks them.

Numerical safety: the raw log-scale a MADE outputs is soft-clamped, log_scale = c tanh(raw / c)
with ``c = max_log_scale``. The unclamped flow went NaN within 20 Adam steps at lr 1e-3
(docs: PLATFORM.md); with the clamp, one block can scale by at most exp(+-c), the whole flow by
exp(+-c num_blocks).

Directions: ``forward`` maps base noise z ~ N(0, I) to data x (sampling, ``dim`` sequential MADE
passes per block); ``inverse`` maps x to z (density evaluation, one MADE pass per block).
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["MAF", "fit_maf", "DEFAULT_HIDDEN_UNITS", "DEFAULT_NUM_BLOCKS", "DEFAULT_MAX_LOG_SCALE"]

DEFAULT_HIDDEN_UNITS = (512, 512)  # supplement J.2.1
DEFAULT_NUM_BLOCKS = 8  # supplement J.2.1 (J.3's RL proposal uses 4)
DEFAULT_MAX_LOG_SCALE = 3.0  # soft clamp of each block's log-scale: |log_scale| < 3 (scale in [0.05, 20])
DEFAULT_ACTIVATION = "relu"  # MADE hidden activation [inferred: TFP's MAF examples use relu]
DEFAULT_FIT_LR = 1e-3
DEFAULT_FIT_BATCH = 256
DEFAULT_GRAD_CLIP = 100.0  # global-norm clip on maximum-likelihood gradients (guards early steps)


class _ClampedShiftAndLogScale(tf.Module):
    """Wraps a MADE so that its (shift, log_scale) output has |log_scale| < max_log_scale (smoothly)."""

    def __init__(self, made: tfb.AutoregressiveNetwork, max_log_scale: float, name=None):
        super().__init__(name=name)
        self.made = made
        self.max_log_scale = float(max_log_scale)

    def __call__(self, x, conditional_input=None):
        if conditional_input is None:
            params = self.made(x)
        else:
            params = self.made(x, conditional_input=conditional_input)
        shift, raw_log_scale = tf.unstack(params, num=2, axis=-1)
        log_scale = self.max_log_scale * tf.tanh(raw_log_scale / self.max_log_scale)
        return shift, log_scale


class _GlorotUniformStream:
    """Glorot-uniform initializer drawing a fresh stateless stream per call (per layer), from one seed.

    Keras' seeded initializers return identical values for equal shapes on every call, which would
    give equal-shaped layers of one MADE identical weights.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.calls = 0

    def __call__(self, shape, dtype=None, **unused):
        fan_in, fan_out = (shape[0], shape[-1]) if len(shape) >= 2 else (shape[0], shape[0])
        limit = float(np.sqrt(6.0 / (fan_in + fan_out)))
        stream = tf.constant([self.seed, self.calls], tf.int64)
        self.calls += 1
        return tf.random.stateless_uniform(shape, stream, -limit, limit, dtype=dtype or tf.float32)


def _initializer(seed: Optional[int], index: int) -> _GlorotUniformStream:
    if seed is None:  # fresh OS entropy, not a global RNG
        seed = int(np.random.SeedSequence().generate_state(1)[0]) // 2
    return _GlorotUniformStream(int(seed) * 1000 + index)


def _stateless_seed(seed):
    """None -> None (stateful sampling); int -> the stateless seed [0, seed]; tensors pass through."""
    if seed is None:
        return None
    if isinstance(seed, (int, np.integer)):
        if seed < 0 or seed >= 2**31:
            raise ValueError("seed must be an integer in [0, 2**31), got {}".format(seed))
        return tf.constant([0, int(seed)], tf.int32)
    return seed


class MAF(tf.Module):
    """A stack of ``num_blocks`` shift-and-scale MAF blocks, each followed by an order-flipping permutation.

    Density on R^dim (optionally conditional on a ``conditional_dim`` vector, fed to every MADE layer):
    base N(0, I_dim) pushed through the flow. ``log_prob``, ``sample`` and ``sample_and_log_prob``
    take a ``conditional`` tensor of shape (n, conditional_dim) when the flow is conditional
    (supplement J.2.1, J.3).
    """

    def __init__(self, dim: int, hidden_units: Sequence[int] = DEFAULT_HIDDEN_UNITS,
                 num_blocks: int = DEFAULT_NUM_BLOCKS, conditional_dim: Optional[int] = None,
                 name: Optional[str] = None, activation: str = DEFAULT_ACTIVATION,
                 max_log_scale: float = DEFAULT_MAX_LOG_SCALE, seed: Optional[int] = None,
                 dtype=tf.float32):
        super().__init__(name=name or "maf")
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError("dim must be a positive integer, got {!r}".format(dim))
        if not isinstance(num_blocks, (int, np.integer)) or num_blocks < 1:
            raise ValueError("num_blocks must be a positive integer, got {!r}".format(num_blocks))
        hidden_units = [int(h) for h in hidden_units]
        if not hidden_units or min(hidden_units) < 1:
            raise ValueError("hidden_units must be a non-empty list of positive sizes, got {!r}".format(hidden_units))
        if conditional_dim is not None and (not isinstance(conditional_dim, (int, np.integer))
                                            or conditional_dim < 1):
            raise ValueError("conditional_dim must be None or a positive integer, got {!r}".format(conditional_dim))
        if not max_log_scale > 0:
            raise ValueError("max_log_scale must be positive, got {!r}".format(max_log_scale))
        self.dim = int(dim)
        self.conditional_dim = None if conditional_dim is None else int(conditional_dim)
        self.hidden_units = tuple(hidden_units)
        self.num_blocks = int(num_blocks)
        self.max_log_scale = float(max_log_scale)
        self.dtype = tf.as_dtype(dtype)

        conditional = self.conditional_dim is not None
        self.mades: List[_ClampedShiftAndLogScale] = []
        bijectors = []  # in the order applied to base noise z (forward direction)
        for i in range(self.num_blocks):
            made = tfb.AutoregressiveNetwork(
                params=2, event_shape=[self.dim], hidden_units=list(self.hidden_units),
                conditional=conditional,
                conditional_event_shape=[self.conditional_dim] if conditional else None,
                activation=activation, kernel_initializer=_initializer(seed, i), dtype=self.dtype,
                name="made_{}".format(i))
            wrapped = _ClampedShiftAndLogScale(made, self.max_log_scale, name="clamped_made_{}".format(i))
            self.mades.append(wrapped)
            bijectors.append(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=wrapped,
                                                          name=self._block_name(i)))
            if self.dim > 1:
                bijectors.append(tfb.Permute(permutation=list(range(self.dim - 1, -1, -1)),
                                             name="flip_{}".format(i)))
        # tfb.Chain applies its list right to left.
        self.bijector = tfb.Chain(list(reversed(bijectors)), name="maf_chain")
        self.base = tfd.MultivariateNormalDiag(loc=tf.zeros([self.dim], self.dtype))
        self._build()

    @staticmethod
    def _block_name(i: int) -> str:
        return "maf_block_{}".format(i)

    def _build(self):
        """Create every MADE's variables now (Keras builds lazily), so trainable_variables is complete."""
        x = tf.zeros([1, self.dim], self.dtype)
        c = None if self.conditional_dim is None else tf.zeros([1, self.conditional_dim], self.dtype)
        for made in self.mades:
            made(x, conditional_input=c)

    # ----------------------------------------------------------------------------------- inputs
    def _check_conditional(self, conditional, n=None):
        if self.conditional_dim is None:
            if conditional is not None:
                raise ValueError("this MAF was built without conditional_dim; pass conditional=None "
                                 "or build MAF(..., conditional_dim=k)")
            return None
        if conditional is None:
            raise ValueError("this MAF is conditional (conditional_dim={}); pass conditional of shape "
                             "(n, {})".format(self.conditional_dim, self.conditional_dim))
        conditional = tf.convert_to_tensor(conditional, self.dtype)
        if conditional.shape.rank != 2 or (conditional.shape[1] is not None
                                           and conditional.shape[1] != self.conditional_dim):
            raise ValueError("conditional must have shape (n, {}), got {}".format(
                self.conditional_dim, conditional.shape))
        if n is not None and conditional.shape[0] is not None and not isinstance(n, tf.Tensor) \
                and conditional.shape[0] != n:
            raise ValueError("conditional has {} rows but n={} samples were asked for: give one "
                             "conditioning row per sample".format(conditional.shape[0], n))
        return conditional

    def _bijector_kwargs(self, conditional):
        if conditional is None:
            return {}
        return {self._block_name(i): {"conditional_input": conditional} for i in range(self.num_blocks)}

    # --------------------------------------------------------------------------------- density
    def distribution(self, conditional=None) -> tfd.TransformedDistribution:
        """TFP's own TransformedDistribution of the same base and bijector (for cross-checks)."""
        conditional = self._check_conditional(conditional)
        kwargs = self._bijector_kwargs(conditional)
        bij = self.bijector if not kwargs else _BoundChain(self.bijector, kwargs)
        return tfd.TransformedDistribution(self.base, bij)

    def log_prob(self, x, conditional=None) -> tf.Tensor:
        """log nu(x) = log N(f^{-1}(x); 0, I) + log |det d f^{-1}(x) / dx|, shape (n,) for x of shape (n, dim)."""
        x = tf.convert_to_tensor(x, self.dtype)
        if x.shape.rank != 2 or (x.shape[1] is not None and x.shape[1] != self.dim):
            raise ValueError("x must have shape (n, {}), got {}".format(self.dim, x.shape))
        conditional = self._check_conditional(conditional)
        kwargs = self._bijector_kwargs(conditional)
        z = self.bijector.inverse(x, **kwargs)
        ildj = self.bijector.inverse_log_det_jacobian(x, event_ndims=1, **kwargs)
        return self.base.log_prob(z) + ildj

    def sample_and_log_prob(self, n: int, conditional=None, seed=None) -> Tuple[tf.Tensor, tf.Tensor]:
        """n samples x = f(z), z ~ N(0, I), and their log-density through the forward pass.

        ``seed``: None (TF's stateful RNG) or an int / shape-[2] tensor (stateless, reproducible).
        """
        conditional = self._check_conditional(conditional, n)
        kwargs = self._bijector_kwargs(conditional)
        z = self.base.sample(n, seed=_stateless_seed(seed))
        x = self.bijector.forward(z, **kwargs)
        log_q = self.base.log_prob(z) - self.bijector.forward_log_det_jacobian(z, event_ndims=1, **kwargs)
        return x, log_q

    def sample(self, n: int, conditional=None, seed=None) -> tf.Tensor:
        """n samples of shape (n, dim) (one per conditioning row when conditional)."""
        conditional = self._check_conditional(conditional, n)
        kwargs = self._bijector_kwargs(conditional)
        z = self.base.sample(n, seed=_stateless_seed(seed))
        return self.bijector.forward(z, **kwargs)

    def entropy_estimate(self, n: int, conditional=None, seed=None) -> tf.Tensor:
        """Monte-Carlo entropy -E[log nu(x)] from n forward samples."""
        _, log_q = self.sample_and_log_prob(n, conditional=conditional, seed=seed)
        return -tf.reduce_mean(log_q)


class _BoundChain(tfb.Chain):
    """A Chain whose per-block conditional kwargs are fixed (so tfd.TransformedDistribution can use it)."""

    def __init__(self, chain: tfb.Chain, kwargs: dict):
        self._bound = kwargs
        super().__init__(chain.bijectors, name="bound_" + chain.name)

    def forward(self, x, name="forward", **kwargs):
        return super().forward(x, name=name, **{**self._bound, **kwargs})

    def inverse(self, y, name="inverse", **kwargs):
        return super().inverse(y, name=name, **{**self._bound, **kwargs})

    def inverse_log_det_jacobian(self, y, event_ndims=None, name="inverse_log_det_jacobian", **kwargs):
        return super().inverse_log_det_jacobian(y, event_ndims=event_ndims, name=name,
                                                **{**self._bound, **kwargs})

    def forward_log_det_jacobian(self, x, event_ndims=None, name="forward_log_det_jacobian", **kwargs):
        return super().forward_log_det_jacobian(x, event_ndims=event_ndims, name=name,
                                                **{**self._bound, **kwargs})


def fit_maf(maf: MAF, samples, steps: int, lr: float = DEFAULT_FIT_LR, batch_size: int = DEFAULT_FIT_BATCH,
            seed: int = 0, conditional=None, grad_clip: float = DEFAULT_GRAD_CLIP,
            callback: Optional[Callable[[int, float], None]] = None) -> List[float]:
    """Maximum-likelihood fit of ``maf`` to ``samples`` (n, dim) by Adam on minibatches: max E[log nu(x)].

    ``conditional``: (n, conditional_dim) conditioning rows paired with ``samples`` for a
    conditional MAF. Minibatches are drawn with ``numpy.random.default_rng(seed)``. Returns the
    per-step mean negative log-likelihood.
    """
    samples = np.asarray(samples, dtype=maf.dtype.as_numpy_dtype)
    if samples.ndim != 2 or samples.shape[1] != maf.dim:
        raise ValueError("samples must have shape (n, {}), got {}".format(maf.dim, samples.shape))
    if not np.all(np.isfinite(samples)):
        raise ValueError("samples contain NaN or inf; a flow cannot be fitted to them")
    if conditional is not None:
        conditional = np.asarray(conditional, dtype=samples.dtype)
        if conditional.shape[0] != samples.shape[0]:
            raise ValueError("conditional has {} rows for {} samples: pair one row with each sample".format(
                conditional.shape[0], samples.shape[0]))
    maf._check_conditional(None if conditional is None else conditional[:1])
    if not (isinstance(steps, (int, np.integer)) and steps >= 0):
        raise ValueError("steps must be a non-negative integer, got {!r}".format(steps))
    if not lr > 0:
        raise ValueError("lr must be positive, got {!r}".format(lr))
    batch_size = int(min(batch_size, samples.shape[0]))
    import tf_keras

    optimizer = tf_keras.optimizers.Adam(learning_rate=lr)
    variables = maf.trainable_variables

    @tf.function
    def step(x, c):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(maf.log_prob(x, conditional=c))
        grads = tape.gradient(loss, variables)
        grads, _ = tf.clip_by_global_norm(grads, grad_clip)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    rng = np.random.default_rng(seed)
    losses = []
    for i in range(int(steps)):
        idx = rng.integers(0, samples.shape[0], batch_size)
        c = None if conditional is None else tf.constant(conditional[idx])
        loss = float(step(tf.constant(samples[idx]), c))
        if not np.isfinite(loss):
            raise FloatingPointError("MAF maximum-likelihood loss became {} at step {}: lower lr "
                                     "(now {}) or max_log_scale (now {})".format(loss, i, lr, maf.max_log_scale))
        losses.append(loss)
        if callback is not None:
            callback(i, loss)
    return losses
