"""Random sources of the GAN updaters, each with its own ``numpy.random.RandomState`` saved in snapshots.

A run draws all of its randomness from explicit generators (never numpy's global one), so that
``--resume`` from a snapshot continues with exactly the numbers an uninterrupted run would have drawn:
the latents z, the denoiser noise eps and WGAN-GP's u, and the data iterator's epoch order.

Numbers are drawn on the CPU (float32) and sent to the device by the caller, so a run on a GPU and a
run on the CPU see the same latents and noise.
"""
from __future__ import annotations

import collections
import concurrent.futures

import numpy

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import chainer.iterators
import chainer.serializer

__all__ = ["serialize_random_state", "LatentSampler", "NoiseSource", "ShuffleOrderSampler",
           "SeededSerialIterator", "DEFAULT_LATENT_LOW", "DEFAULT_LATENT_HIGH"]

DEFAULT_LATENT_LOW = -1.0  # z ~ U(-1, 1) (chainer-gan-lib's DCGAN generator)
DEFAULT_LATENT_HIGH = 1.0


def serialize_random_state(serializer, state: numpy.random.RandomState) -> None:
    """Save or restore the Mersenne-Twister state of ``state`` through a Chainer (de)serializer."""
    name, keys, pos, has_gauss, cached = state.get_state()
    keys = serializer("mt19937_keys", numpy.array(keys, dtype=numpy.uint32))
    pos = serializer("mt19937_pos", int(pos))
    has_gauss = serializer("mt19937_has_gauss", int(has_gauss))
    cached = serializer("mt19937_cached_gaussian", float(cached))
    state.set_state((name, numpy.asarray(keys, dtype=numpy.uint32), int(pos), int(has_gauss), float(cached)))


class LatentSampler:
    """z ~ U(low, high)^dim as float32 arrays of shape (batchsize, dim) (SPEC section 4: U(-1, 1), dim 128)."""

    def __init__(self, dim: int, seed: int, low: float = DEFAULT_LATENT_LOW, high: float = DEFAULT_LATENT_HIGH):
        if dim <= 0:
            raise ValueError("latent dimension must be positive, got {}".format(dim))
        self.dim = int(dim)
        self.low = float(low)
        self.high = float(high)
        self.random_state = numpy.random.RandomState(seed)

    def __call__(self, batchsize: int) -> numpy.ndarray:
        return self.random_state.uniform(self.low, self.high, (batchsize, self.dim)).astype(numpy.float32)

    def serialize(self, serializer) -> None:
        serialize_random_state(serializer, self.random_state)


def _draw(random_state: numpy.random.RandomState, kind: str, shape: tuple) -> numpy.ndarray:
    """One float32 draw of ``kind`` ("normal": N(0, 1), "uniform": U(0, 1))."""
    if kind == "normal":
        return random_state.standard_normal(shape).astype(numpy.float32)
    return random_state.uniform(0.0, 1.0, shape).astype(numpy.float32)


class NoiseSource:
    """Gaussian and uniform noise (denoiser corruption, WGAN-GP interpolation) from one RandomState.

    With ``prefetch`` the draws of the next training step are made in a background thread while the
    current one runs (numpy's legacy generator releases the GIL while it fills an array; a DFM denoiser's
    normals cost ~4 ms of host time per step, WGAN's ~17 ms). The numbers are the same, in the same order:
    after :meth:`step_done` the source draws ahead the (kind, shape) sequence the step just asked for; a
    request that does not match discards them and rewinds the generator, and a snapshot holds that same
    logical state, so ``--resume`` is unaffected.
    """

    def __init__(self, seed: int, prefetch: bool = False):
        self.random_state = numpy.random.RandomState(seed)
        self.prefetch = bool(prefetch)
        self._requests: list = []  # (kind, shape) asked for since the last step_done
        self._ahead: collections.deque = collections.deque()  # futures of (kind, shape, state before, array)
        self._executor = None

    def normal(self, shape) -> numpy.ndarray:
        """eps ~ N(0, I) of ``shape`` (float32)."""
        return self._take("normal", tuple(shape))

    def uniform(self, shape) -> numpy.ndarray:
        """u ~ U(0, 1) of ``shape`` (float32)."""
        return self._take("uniform", tuple(shape))

    def _take(self, kind: str, shape: tuple) -> numpy.ndarray:
        self._requests.append((kind, shape))
        if self._ahead:
            ahead_kind, ahead_shape, _, array = self._ahead[0].result()
            if (ahead_kind, ahead_shape) == (kind, shape):
                self._ahead.popleft()
                return array
            self._rewind()
        return _draw(self.random_state, kind, shape)

    def _rewind(self) -> None:
        """Drop the unused prefetched draws; the generator goes back to the state before the first of them."""
        if not self._ahead:
            return
        first = self._ahead[0].result()[2]
        for future in self._ahead:
            future.result()  # the worker must be done with the generator before it is reset
        self._ahead.clear()
        self.random_state.set_state(first)

    def _draw_ahead(self, kind: str, shape: tuple) -> tuple:
        state = self.random_state.get_state()
        return kind, shape, state, _draw(self.random_state, kind, shape)

    def step_done(self) -> None:
        """End of a training step: with ``prefetch``, start drawing the next step's noise in the background."""
        requests, self._requests = self._requests, []
        if not self.prefetch or not requests:
            return
        if self._ahead:  # the step asked for less than was prefetched: start again from the logical state
            self._rewind()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="noise")
        for kind, shape in requests:
            self._ahead.append(self._executor.submit(self._draw_ahead, kind, shape))

    def logical_state(self) -> tuple:
        """The generator state as if nothing had been drawn ahead (what a snapshot must hold)."""
        if self._ahead:
            return self._ahead[0].result()[2]
        return self.random_state.get_state()

    def serialize(self, serializer) -> None:
        if isinstance(serializer, chainer.serializer.Serializer):
            serialize_random_state(serializer, _StateView(self.logical_state()))
        else:
            self._rewind()
            serialize_random_state(serializer, self.random_state)


class _StateView:
    """A read-only stand-in for a RandomState holding ``state``, for saving a state not currently set."""

    def __init__(self, state: tuple):
        self.state = state

    def get_state(self) -> tuple:
        return self.state

    def set_state(self, state: tuple) -> None:  # a serializer writes back what it saved: nothing to do
        pass


class ShuffleOrderSampler(chainer.iterators.ShuffleOrderSampler):
    """Chainer's shuffling order sampler whose RandomState is saved in snapshots."""

    def __init__(self, seed: int):
        super().__init__(numpy.random.RandomState(seed))

    def serialize(self, serializer) -> None:
        serialize_random_state(serializer, self._random)


class SeededSerialIterator(chainer.iterators.SerialIterator):
    """``SerialIterator`` that shuffles with a seeded :class:`ShuffleOrderSampler` and snapshots its state."""

    def __init__(self, dataset, batch_size: int, seed: int, repeat: bool = True):
        if batch_size > len(dataset):
            raise ValueError("batch size {} is larger than the data set ({} examples); use a smaller "
                             "--batchsize".format(batch_size, len(dataset)))
        super().__init__(dataset, batch_size, repeat=repeat, order_sampler=ShuffleOrderSampler(seed))

    def serialize(self, serializer) -> None:
        super().serialize(serializer)
        self.order_sampler.serialize(serializer["order_sampler"])
