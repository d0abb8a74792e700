"""The ``--device`` option shared by every entry point: CPU (``-1``/``@numpy``) or a GPU (``N``/``@cupy:N``)."""
from __future__ import annotations

import argparse
import os
import warnings

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer

GPU_INSTALL_HINT = (
    "install the GPU extra matching your CUDA driver: `pip install -e .[gpu]` (CuPy 14, CUDA 13) or "
    "`pip install -e .[gpu-cudnn]` (CuPy 13 with cuDNN, CUDA 12)"
)
_cudnn_noted = False


def parse_device_spec(spec: str | int) -> str:
    """Normalise a device spec to Chainer's form: ``-1``/``@numpy``/``cpu`` -> ``@numpy``, ``N``/``@cupy:N`` -> ``@cupy:N``."""
    text = str(spec).strip().lower()
    if text in ("-1", "@numpy", "cpu", "numpy"):
        return "@numpy"
    if text.startswith("@cupy:"):
        text = text[len("@cupy:"):]
    elif text.startswith("gpu:") or text.startswith("cuda:"):
        text = text.split(":", 1)[1]
    if text.isdigit():
        return "@cupy:{}".format(int(text))
    raise ValueError(
        "unknown device {!r}: use -1 or @numpy for the CPU, a GPU id such as 0, or @cupy:0".format(spec)
    )


class DeviceError(RuntimeError):
    """The device asked for cannot be used (no CuPy for a GPU); the message names the fix."""


def get_device(spec: str | int = -1) -> chainer.backend.Device:
    """Return the Chainer device for ``spec``, selecting it; a GPU without CuPy is a clear error."""
    name = parse_device_spec(spec)
    if name != "@numpy":
        from chainer.backends import cuda

        if not cuda.available:
            raise DeviceError(
                "device {!r} asks for a GPU but CuPy is not available ({}); {}; or use --device -1 "
                "for the CPU".format(spec, getattr(cuda, "_resolution_error", "not installed"), GPU_INSTALL_HINT)
            )
        global _cudnn_noted
        message = compat.cudnn_message()
        if message and not _cudnn_noted:
            warnings.warn(message, stacklevel=2)
            _cudnn_noted = True
    device = chainer.get_device(name)
    device.use()
    return device


def add_device_argument(parser: argparse.ArgumentParser, default: str = "-1") -> None:
    """Add the shared ``--device`` option to a command-line parser."""
    parser.add_argument(
        "--device", default=default,
        help="-1 or @numpy for the CPU (default), a GPU id (0) or @cupy:0 for a GPU",
    )


#: Environment variables that cap the BLAS/OpenMP threads of a CPU process.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_threads_per_run(concurrent_cpu_runs: int, cores: int | None = None) -> int | None:
    """BLAS threads for each of ``concurrent_cpu_runs`` CPU processes so that together they do not
    oversubscribe the cores: ``cores // runs`` (at least 1), or None (the library default) for one run."""
    if concurrent_cpu_runs <= 1:
        return None
    cores = cores or os.cpu_count() or 1
    return max(1, cores // concurrent_cpu_runs)


def cpu_thread_env(concurrent_cpu_runs: int, base: dict | None = None) -> dict:
    """A copy of ``base`` (default ``os.environ``) with :data:`THREAD_VARIABLES` set for one of
    ``concurrent_cpu_runs`` concurrent CPU processes (unchanged for a single run)."""
    env = dict(os.environ if base is None else base)
    threads = cpu_threads_per_run(concurrent_cpu_runs)
    if threads is not None:
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    return env
