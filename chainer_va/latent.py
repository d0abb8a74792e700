"""Random sources of the GAN updaters, each with its own ``numpy.random.RandomState`` saved in snapshots.

A run draws all of its randomness from explicit generators (never numpy's global one), so that
``--resume`` from a snapshot continues with exactly the numbers an uninterrupted run would have drawn:

* :class:`LatentSampler`: z ~ U(-1, 1)^128 of the DCGAN generator (SPEC section 4);
* :class:`NoiseSource`: the denoiser's Gaussian corruption eps ~ N(0, I) (section 2) and the WGAN-GP
  interpolation weights u ~ U(0, 1) (section 2);
* :class:`ShuffleOrderSampler`: the data iterator's epoch order.

Numbers are drawn on the CPU (float32) and sent to the device by the caller, so a run on a GPU and a
run on the CPU see the same latents and noise.
"""
from __future__ import annotations

import numpy

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer.iterators

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


class NoiseSource:
    """Gaussian and uniform noise (denoiser corruption, WGAN-GP interpolation) from one RandomState."""

    def __init__(self, seed: int):
        self.random_state = numpy.random.RandomState(seed)

    def normal(self, shape) -> numpy.ndarray:
        """eps ~ N(0, I) of ``shape`` (float32)."""
        return self.random_state.standard_normal(shape).astype(numpy.float32)

    def uniform(self, shape) -> numpy.ndarray:
        """u ~ U(0, 1) of ``shape`` (float32)."""
        return self.random_state.uniform(0.0, 1.0, shape).astype(numpy.float32)

    def serialize(self, serializer) -> None:
        serialize_random_state(serializer, self.random_state)


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
