"""One integer seeds every random number generator this project uses."""
from __future__ import annotations

import os
import random
import sys

import numpy


def seed_everything(seed: int, tensorflow: bool | None = None) -> None:
    """Seed Python's ``random``, numpy's global RNG, CuPy (when importable) and TensorFlow.

    ``tensorflow``: True imports and seeds TensorFlow; None (default) seeds it only if it is already
    imported (importing TensorFlow costs seconds); False leaves it alone. Code in this project does not
    rely on the global RNGs (it takes explicit ``numpy.random.Generator`` objects), but third-party
    code (Chainer initialisers, iterators) does.
    """
    if not isinstance(seed, (int, numpy.integer)) or seed < 0:
        raise ValueError("seed must be a non-negative integer, got {!r}".format(seed))
    seed = int(seed)
    random.seed(seed)
    numpy.random.seed(seed % 2**32)
    os.environ["PYTHONHASHSEED"] = str(seed)  # for subprocesses started from here
    try:
        import cupy
    except Exception:  # CuPy missing or without a usable CUDA
        cupy = None
    if cupy is not None:
        try:
            cupy.random.seed(seed)
        except Exception:  # CuPy installed but no usable GPU (CUDA runtime, driver or library errors
            pass           # differ by CuPy version): nothing on a GPU to seed; a GPU run then fails loudly
    if tensorflow or (tensorflow is None and "tensorflow" in sys.modules):
        import tensorflow as tf

        tf.random.set_seed(seed)
        try:
            tf.keras.utils.set_random_seed(seed)
        except AttributeError:  # a TensorFlow without keras.utils.set_random_seed: tf.random's seed is set
            pass
