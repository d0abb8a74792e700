"""The package's floors: va_core imports no framework, and the TensorFlow side (tfp_flows, rl) runs without Chainer."""
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str):
    return [package] + ["{}.{}".format(package, m.name) for m in pkgutil.iter_modules([str(ROOT / package)])]


def _run_blocked(blocked, code: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter in which importing any of ``blocked`` fails."""
    prelude = "import sys\nfor name in {!r}:\n    sys.modules[name] = None\n".format(list(blocked))
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=str(ROOT), env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)


def test_va_core_imports_neither_chainer_nor_tensorflow():
    res = _run_blocked(["chainer", "tensorflow", "tensorflow_probability", "cupy"], """
        import importlib
        for name in {!r}:
            importlib.import_module(name)
        print("ok")
    """.format(_modules("va_core")))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


@pytest.mark.slow
def test_tfp_flows_and_rl_import_and_train_a_ugan_without_chainer():
    """Every module of tfp_flows and rl imports with Chainer absent, and a U-GAN trains on a Gaussian."""
    res = _run_blocked(["chainer", "chainer_va"], """
        import importlib
        for name in {!r}:
            importlib.import_module(name)
        import numpy as np
        from tfp_flows import targets, ugan
        res = ugan.train_sampler(targets.gaussian(np.zeros(2), 1.0).log_density, 2, steps=3, seed=0,
                                 hidden_units=(8,), flow_blocks=1, generator_hidden=(8,), batch_size=16)
        x = res.sample(50)
        assert x.shape == (50, 2) and np.isfinite(x).all()
        print("ok", len(res.history))
    """.format(_modules("tfp_flows") + _modules("rl")))
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().startswith("ok")
