"""Test-wide settings: headless plotting, quiet TensorFlow, a private data cache, GPU tests skipped without CuPy."""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Never read or fill the user's ~/.cache/chainer_va from tests; the session's own cache goes at exit.
os.environ["CHAINER_VA_DATA"] = tempfile.mkdtemp(prefix="chainer_va_test_cache_")
atexit.register(shutil.rmtree, os.environ["CHAINER_VA_DATA"], ignore_errors=True)

import chainer_va  # noqa: E402,F401  (compat layer before anything imports chainer)
import pytest  # noqa: E402


def _gpu_available() -> bool:
    try:
        from chainer.backends import cuda

        return bool(cuda.available) and cuda.cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU (pip install -e .[gpu])")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_blas_thread():
    """Tiny matrices: BLAS threads only contend on a shared 2-core machine."""
    import threadpoolctl

    with threadpoolctl.threadpool_limits(1):
        yield
