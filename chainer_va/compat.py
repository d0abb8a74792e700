"""Chainer 7.8.1 on today's stack: numpy 1.26/2.x, Python 3.11/3.12, CuPy 13/14, setuptools >= 82.

Chainer's last release (7.8.1, 2020) predates numpy 2, Python 3.12 and CuPy 14; this module is the one
place that makes it work there. It is imported before anything imports :mod:`chainer` (a plain ``import
chainer`` comes here through :mod:`chainer_import_hook`); importing it twice is harmless. Each patch names
the Chainer file and line it serves, is tested in ``tests/test_compat.py``, and leaves numpy itself unmodified.

Patches
-------
1. ``chainer/__init__.py:82`` imports ``chainer/_environment_check.py``, whose lines 6-7 import
   ``numpy.distutils.system_info`` (gone on Python >= 3.12, broken with setuptools >= 74) and
   ``pkg_resources`` (gone from setuptools >= 82). We register a replacement module under the same
   name that performs the same useful check (CuPy present in a single copy) with ``importlib.metadata``.
2. ``chainer/functions/array/as_strided.py:10`` and ``:252`` read ``numpy.sctypes`` (removed in
   numpy 2). Line 10 runs while ``import chainer`` runs, so ``numpy.sctypes`` is provided during that
   import only; ``AsStridedGrad.forward`` (line 252) is rebound to globals in which ``np`` is a view
   of numpy that still has ``sctypes``.
3. ``chainer/functions/array/resize_images.py:179-196`` (``compute_indices_and_weights``) use
   ``numpy.float`` (removed in numpy 1.24). That one function is rebound to globals in which ``numpy``
   is a view of numpy with ``float`` = Python float (what the alias meant: float64). The rest of the
   module keeps the real numpy, so its ``xp is numpy`` CPU/GPU dispatch is unchanged.
4. ``chainer/functions/array/pad_sequence.py:55`` (and the CuPy kernel at :76) assigns the Python
   padding value into an array of the input dtype; under numpy 2's NEP 50 a negative padding for an
   unsigned dtype (e.g. -1 into uint8) raises ``OverflowError`` instead of wrapping. The padding is
   cast to the input dtype with numpy's C casting first, which restores numpy 1's result.
5. ``chainer/distributions/categorical.py:70-76``: ``Categorical.log_prob`` adds a list to the result
   of ``numpy.meshgrid``, which is a tuple in numpy 2 (``TypeError``). Replaced by the same
   computation on a list.
6. ``chainer/backends/cuda.py:125-158``: with CuPy 14 (no ``cupy.cudnn``) Chainer sets
   ``cudnn_enabled = False`` and warns that one should "reinstall CuPy after you install cudnn", which
   is not possible with CuPy 14. The warning is replaced by one accurate message, emitted once, the
   first time a GPU is selected through :func:`chainer_va.device.get_device`.
7. ``chainer/testing/helper.py:6`` and ``chainer/testing/doctest_helper.py:3`` import
   ``pkg_resources`` (imported by ``chainer.gradient_check``). Where setuptools no longer has it, those
   two modules, and only they, execute with a small stand-in (``WorkingSet().require`` and its
   errors, implemented with ``importlib.metadata`` and ``packaging``); nothing else can import it.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import sys
import types
import warnings
from typing import Any

import numpy

_INSTALLED = False
CUDNN_MESSAGE = (
    "CuPy {version} has no cuDNN support: Chainer runs convolutions through im2col + cuBLAS "
    "(correct, about 3x slower per DFM step on an H100). For cuDNN use CuPy 13 "
    "(`pip install -e .[gpu-cudnn]` plus a cuDNN for CUDA 12)."
)


class _NumpyView(types.ModuleType):
    """A stand-in for ``numpy`` inside one Chainer module: look-ups fall through to numpy, except for the
    extra aliases that module needs (numpy itself is not modified)."""

    def __init__(self, extra: dict[str, Any]):
        super().__init__("numpy")
        self.__dict__.update(extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(numpy, name)


def _with_numpy_view(function, name: str, extra: dict[str, Any]):
    """A copy of ``function`` whose global ``name`` (its module's numpy import) is a :class:`_NumpyView`."""
    scope = dict(function.__globals__)
    scope[name] = _NumpyView(extra)
    rebound = types.FunctionType(function.__code__, scope, function.__name__,
                                 function.__defaults__, function.__closure__)
    rebound.__qualname__ = function.__qualname__
    rebound.__doc__ = function.__doc__
    return rebound


def _sctypes() -> dict[str, list[type]]:
    """numpy 1.x's ``numpy.sctypes`` table, rebuilt from the scalar types numpy 2 still has."""
    return {
        "int": [numpy.int8, numpy.int16, numpy.int32, numpy.int64],
        "uint": [numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64],
        "float": [numpy.float16, numpy.float32, numpy.float64, numpy.longdouble],
        "complex": [numpy.complex64, numpy.complex128, numpy.clongdouble],
        "others": [bool, object, bytes, str, numpy.void],
    }


def _environment_check_module() -> types.ModuleType:
    """Patch 1: replacement for ``chainer._environment_check`` without numpy.distutils/pkg_resources."""
    module = types.ModuleType("chainer._environment_check")

    def check() -> None:
        cupy_wheels = []
        for dist in importlib.metadata.distributions():
            name = (dist.metadata["Name"] or "").lower()
            if name == "cupy" or name.startswith("cupy-cuda"):
                cupy_wheels.append(name)
        if len(cupy_wheels) > 1:
            warnings.warn(
                "Several CuPy packages are installed ({}); keep exactly one "
                "(`pip uninstall` the others).".format(", ".join(sorted(cupy_wheels)))
            )

    module.check = check
    return module


def _pad_sequence_patch() -> None:
    """Patch 4: cast the padding value to the input dtype (numpy 1 semantics) before padding."""
    from chainer.functions.array import pad_sequence

    cls = pad_sequence.PadSequence
    if getattr(cls, "_chainer_va_patched", False):
        return
    original_forward = cls.forward

    def forward(self, xs):
        dtype = xs[0].dtype
        padding = self.padding
        if not isinstance(padding, numpy.generic) or padding.dtype != dtype:
            # numpy's unsafe C cast wraps -1 to 255 for uint8, as numpy 1 did on assignment.
            self.padding = numpy.array(padding).astype(dtype, casting="unsafe")[()]
        return original_forward(self, xs)

    cls.forward = forward
    cls._chainer_va_patched = True


def _categorical_patch() -> None:
    """Patch 5: ``Categorical.log_prob`` indexing with numpy 2's tuple-valued meshgrid."""
    from chainer.distributions import categorical

    cls = categorical.Categorical
    if getattr(cls, "_chainer_va_patched", False):
        return

    def log_prob(self, x):
        grid = list(numpy.meshgrid(*(range(n) for n in self.batch_shape), indexing="ij"))
        labels = x.array if isinstance(x, categorical.chainer.Variable) else x
        return self.log_p[tuple(grid + [labels.astype(numpy.int32)])]

    cls.log_prob = log_prob
    cls._chainer_va_patched = True


def _cuda_patch() -> None:
    """Patch 6: silence Chainer's misleading cuDNN warning; :func:`cudnn_message` replaces it."""
    from chainer.backends import cuda

    if cuda.available and not cuda.cudnn_enabled:
        cuda.check_cuda_available._already_warned = True


def _pkg_resources_standin() -> types.ModuleType:
    """Patch 7: the part of ``pkg_resources`` that ``chainer.testing`` uses."""
    from packaging.requirements import Requirement

    module = types.ModuleType("pkg_resources")

    class ResolutionError(Exception):
        pass

    class DistributionNotFound(ResolutionError):
        pass

    class VersionConflict(ResolutionError):
        pass

    class WorkingSet:
        def require(self, *requirements: str) -> None:
            for text in requirements:
                req = Requirement(text)
                try:
                    version = importlib.metadata.version(req.name)
                except importlib.metadata.PackageNotFoundError:
                    raise DistributionNotFound(text) from None
                if req.specifier and not req.specifier.contains(version, prereleases=True):
                    raise VersionConflict("{} is installed, {} required".format(version, text))

    module.ResolutionError = ResolutionError
    module.DistributionNotFound = DistributionNotFound
    module.VersionConflict = VersionConflict
    module.WorkingSet = WorkingSet
    return module


class _ChainerTestingFinder(importlib.abc.MetaPathFinder):
    """Patch 7: run the two ``chainer.testing`` modules that import ``pkg_resources`` with a stand-in."""

    TARGETS = ("chainer.testing.helper", "chainer.testing.doctest_helper")

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.TARGETS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _StandInLoader(spec.loader)
        return spec


class _StandInLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        if "pkg_resources" in sys.modules or importlib.util.find_spec("pkg_resources") is not None:
            return self._loader.exec_module(module)
        sys.modules["pkg_resources"] = _pkg_resources_standin()
        try:
            self._loader.exec_module(module)
        finally:
            del sys.modules["pkg_resources"]


def cudnn_message() -> str | None:
    """The one-time note about cuDNN on this CuPy, or None when cuDNN is in use or CuPy is absent."""
    from chainer.backends import cuda

    if not cuda.available or cuda.cudnn_enabled or cuda._cudnn_disabled_by_user:
        return None
    return CUDNN_MESSAGE.format(version=cuda.cupy.__version__)


def install() -> None:
    """Apply every patch and import Chainer. Idempotent."""
    global _INSTALLED
    if _INSTALLED:
        return
    if "chainer" in sys.modules and "chainer._environment_check" not in sys.modules:
        raise ImportError(
            "chainer was imported before chainer_va.compat; import chainer_va (or "
            "chainer_va.compat) first so that Chainer 7.8.1 works on this numpy/Python, or install the "
            "import hook that does it for you: `python -m chainer_import_hook install` (make install does)"
        )
    sys.modules.setdefault("chainer._environment_check", _environment_check_module())

    had_sctypes = "sctypes" in numpy.__dict__
    if not had_sctypes:
        numpy.sctypes = _sctypes()  # patch 2, only while chainer imports (as_strided.py:10)
    try:
        import chainer  # noqa: F401  (the import the patches serve)
        from chainer.functions.array import as_strided, resize_images
    finally:
        if not had_sctypes:
            del numpy.sctypes
    if not had_sctypes:  # patch 2 (as_strided.py:252)
        grad = as_strided.AsStridedGrad
        grad.forward = _with_numpy_view(grad.forward, "np", {"sctypes": _sctypes()})
    if not hasattr(numpy, "float"):  # patch 3 (resize_images.py:179-196)
        resize_images.compute_indices_and_weights = _with_numpy_view(
            resize_images.compute_indices_and_weights, "numpy", {"float": float})
    _pad_sequence_patch()
    _categorical_patch()
    _cuda_patch()
    if not any(isinstance(f, _ChainerTestingFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _ChainerTestingFinder())
    _INSTALLED = True


install()
