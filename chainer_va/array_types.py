"""Type aliases for the public API's annotations: arrays on a run's device and device specifications."""
from __future__ import annotations

from typing import Union

import numpy

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import chainer.backends.cuda

__all__ = ["Array", "ArrayOrVariable", "DeviceSpec"]

#: An array on the run's device: numpy on the CPU, CuPy on a GPU (Chainer's ``cuda.ndarray`` is
#: ``cupy.ndarray`` where CuPy imports and a placeholder class where it does not).
Array = Union[numpy.ndarray, chainer.backends.cuda.ndarray]
#: An array or a Chainer variable wrapping one.
ArrayOrVariable = Union[Array, chainer.Variable]
#: What ``chainer.get_device`` accepts: "@numpy", "@cupy:0", a GPU id (-1: the CPU), a Device, or None.
DeviceSpec = Union[str, int, chainer.backend.Device, None]
