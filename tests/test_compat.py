"""The Chainer compatibility layer: each patch, and the Chainer functions this project relies on, checked numerically."""
import os
import subprocess
import sys
import textwrap

import numpy
import pytest

from chainer_va import compat

import chainer  # noqa: E402  (after the compat layer)
import chainer.functions as F
import chainer.links as L
from chainer import gradient_check, serializers, training


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=120)


# --- the patches ---------------------------------------------------------------------------------

@pytest.mark.skipif(int(numpy.__version__.split(".")[0]) < 2, reason="the failure is numpy-2 specific")
def test_plain_chainer_import_fails_on_numpy2_and_compat_fixes_it():
    """Without the compat module Chainer 7.8.1 does not import here; with it, it does (patches 1-2)."""
    bare = _run_python("import chainer_import_hook; chainer_import_hook.uninstall(); import chainer")  # no hook
    assert bare.returncode != 0
    assert ("sctypes" in bare.stderr) or ("distutils" in bare.stderr) or ("pkg_resources" in bare.stderr)
    fixed = _run_python("import chainer_va.compat, chainer; print(chainer.__version__)")
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == "7.8.1"


def test_importing_chainer_first_is_a_clear_error():
    res = _run_python("""
        import sys, types
        sys.modules['chainer'] = types.ModuleType('chainer')  # stands for an earlier 'import chainer'
        import chainer_va
    """)
    assert res.returncode != 0
    assert "import chainer_va (or chainer_va.compat) first" in res.stderr
    assert "python -m chainer_import_hook install" in res.stderr


# --- the import hook: a plain `import chainer` first -------------------------------------------

_CHAINER_FIRST = """
    import chainer, chainer.functions as F, numpy, sys
    x = chainer.Variable(numpy.arange(6, dtype=numpy.float32))
    F.sum(F.as_strided(x, (2, 2), (1, 1))).backward()      # as_strided.py:252, patch 2
    assert x.grad.tolist() == [1, 2, 1, 0, 0, 0], x.grad
    assert type(chainer.__spec__.loader).__name__ == "SourceFileLoader"  # its own spec, not the hook's
    assert sys.modules["chainer.functions"] is F and not hasattr(numpy, "sctypes")
    import chainer_va.compat
    assert chainer_va.compat._INSTALLED
    print(chainer.__version__)
"""


@pytest.mark.skipif(int(numpy.__version__.split(".")[0]) < 2, reason="the failure is numpy-2 specific")
def test_plain_import_chainer_works_in_a_fresh_interpreter():
    """The environment `make install` builds runs chainer_import_hook at start-up (its .pth file)."""
    import chainer_import_hook
    assert chainer_import_hook.pth_path().is_file(), (
        "{} is missing: run `make install` (or `python -m chainer_import_hook install`)".format(
            chainer_import_hook.pth_path()))
    res = _run_python(_CHAINER_FIRST)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "7.8.1"


@pytest.mark.parametrize("first", ["import chainer", "import chainer.links", "import chainer_va"])
def test_the_pth_line_routes_any_first_import_through_compat(first, tmp_path):
    """The line written to the .pth file, run by hand in a fresh interpreter without it, then Chainer first."""
    import chainer_import_hook
    pth = chainer_import_hook.write_pth(tmp_path / chainer_import_hook.PTH_NAME)
    line = pth.read_text()
    assert line == chainer_import_hook.PTH_LINE and not list(tmp_path.glob("*.tmp"))
    res = _run_python("import chainer_import_hook; chainer_import_hook.uninstall()\n"
                      "exec({!r})\n{}\n".format(line, first) + textwrap.dedent(_CHAINER_FIRST))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "7.8.1"


def test_numpy_is_left_unpatched():
    """The removed aliases are only visible to the Chainer functions that use them."""
    if int(numpy.__version__.split(".")[0]) >= 2:
        assert not hasattr(numpy, "sctypes")
    assert "float" not in numpy.__dict__


def test_environment_check_replacement_is_installed():
    """Patch 1: chainer._environment_check no longer needs numpy.distutils/pkg_resources."""
    module = sys.modules["chainer._environment_check"]
    assert module.check.__module__ == compat.__name__ or module.__name__ == "chainer._environment_check"
    module.check()  # runs without pkg_resources


def test_as_strided_backward_uses_sctypes():
    """Patch 2 (as_strided.py:252): the backward pass of as_strided on numpy 2."""
    x = chainer.Variable(numpy.arange(6, dtype=numpy.float32))
    y = F.as_strided(x, (2, 2), (2, 1))  # overlapping windows [0,1],[2,3]
    y.grad = numpy.array([[1, 2], [3, 4]], dtype=numpy.float32)
    y.backward()
    numpy.testing.assert_array_equal(x.grad, [1, 2, 3, 4, 0, 0])
    overlap = F.as_strided(chainer.Variable(numpy.arange(4, dtype=numpy.float32)), (2, 2), (1, 1))
    overlap.grad = numpy.ones((2, 2), dtype=numpy.float32)
    overlap.backward()


@pytest.mark.parametrize("align_corners", [True, False])
def test_resize_images_bilinear_matches_hand_computation(align_corners):
    """Patch 3 (resize_images.py:179-196): bilinear resize of a ramp is exact at known points."""
    h, w = 4, 5
    ramp = numpy.add.outer(numpy.arange(h) * 10.0, numpy.arange(w)).astype(numpy.float32)
    x = ramp[None, None]
    y = F.resize_images(x, (7, 9), align_corners=align_corners).array[0, 0]
    if align_corners:  # sample points are linspace(0, H-1, 7) x linspace(0, W-1, 9): a ramp stays a ramp
        expect = numpy.add.outer(numpy.linspace(0, h - 1, 7) * 10.0, numpy.linspace(0, w - 1, 9))
    else:  # half-pixel centres, clamped at 0 (and at the far edge by the interpolation)
        v = numpy.clip((numpy.arange(7) + 0.5) * h / 7 - 0.5, 0, h - 1)
        u = numpy.clip((numpy.arange(9) + 0.5) * w / 9 - 0.5, 0, w - 1)
        expect = numpy.add.outer(v * 10.0, u)
    numpy.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-5)


def test_resize_images_gradient():
    x = numpy.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(numpy.float32)
    gy = numpy.random.default_rng(1).standard_normal((2, 3, 6, 5)).astype(numpy.float32)
    gradient_check.check_backward(lambda a: F.resize_images(a, (6, 5)), x, gy, dtype=numpy.float64,
                                  atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("dtype,padding,expected", [
    (numpy.uint8, -1, 255), (numpy.uint16, -1, 65535), (numpy.int32, -1, -1), (numpy.float32, 0.5, 0.5),
])
def test_pad_sequence_padding_cast_like_numpy1(dtype, padding, expected):
    """Patch 4 (pad_sequence.py:55): -1 padding on unsigned dtypes wraps as in numpy 1 (NEP 50 raised)."""
    xs = [numpy.array([1, 2, 3], dtype=dtype), numpy.array([4], dtype=dtype)]
    y = F.pad_sequence(xs, padding=padding).array
    assert y.dtype == dtype
    numpy.testing.assert_array_equal(y[0], [1, 2, 3])
    assert y[1, 0] == 4
    assert y[1, 1] == numpy.array(expected, dtype=dtype) and y[1, 2] == y[1, 1]


def test_categorical_log_prob():
    """Patch 5 (categorical.py:70-76): log_prob with numpy 2's tuple meshgrid."""
    p = numpy.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]], dtype=numpy.float32)
    dist = chainer.distributions.Categorical(p)
    labels = numpy.array([1, 0, 1])
    numpy.testing.assert_allclose(dist.log_prob(labels).array, numpy.log([0.8, 0.5, 0.1]), rtol=1e-6)
    as_variable = dist.log_prob(chainer.Variable(labels.astype(numpy.int32))).array
    numpy.testing.assert_allclose(as_variable, numpy.log([0.8, 0.5, 0.1]), rtol=1e-6)


def test_cudnn_message_absent_without_cupy():
    """Patch 6: the one-time cuDNN note is only produced when CuPy runs without cuDNN."""
    from chainer.backends import cuda

    if not cuda.available:
        assert compat.cudnn_message() is None
    else:
        assert (compat.cudnn_message() is None) == bool(cuda.cudnn_enabled)


# --- Chainer functions the project uses, checked numerically under the compat layer --------------

def _rng(seed=0):
    return numpy.random.default_rng(seed)


def test_linear_and_leaky_relu_softplus_gradients():
    lin = L.Linear(4, 3, initialW=chainer.initializers.Normal(0.5))
    x = _rng().standard_normal((5, 4)).astype(numpy.float32)
    y = lin(x).array
    numpy.testing.assert_allclose(y, x @ lin.W.array.T + lin.b.array, rtol=1e-5, atol=1e-6)
    gy = _rng(1).standard_normal((5, 3)).astype(numpy.float32)
    gradient_check.check_backward(lambda a: F.leaky_relu(lin(a), 0.2), x, gy, dtype=numpy.float64,
                                  atol=1e-3, rtol=1e-3)
    numpy.testing.assert_allclose(F.softplus(numpy.array([-30.0, 0.0, 30.0])).array,
                                  [numpy.exp(-30.0), numpy.log(2.0), 30.0], rtol=1e-6)
    gradient_check.check_backward(F.softplus, x, _rng(2).standard_normal((5, 4)).astype(numpy.float32),
                                  dtype=numpy.float64)


def test_convolution_matches_direct_sum_and_gradients():
    conv = L.Convolution2D(2, 3, ksize=3, stride=1, pad=1, initialW=chainer.initializers.Normal(0.3))
    x = _rng().standard_normal((1, 2, 4, 4)).astype(numpy.float32)
    y = conv(x).array
    padded = numpy.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    W, b = conv.W.array, conv.b.array
    expect = numpy.zeros((1, 3, 4, 4), numpy.float32)
    for o in range(3):
        for i in range(4):
            for j in range(4):
                expect[0, o, i, j] = numpy.sum(padded[0, :, i:i + 3, j:j + 3] * W[o]) + b[o]
    numpy.testing.assert_allclose(y, expect, rtol=1e-4, atol=1e-5)
    gradient_check.check_backward(conv, x, _rng(1).standard_normal(y.shape).astype(numpy.float32),
                                  dtype=numpy.float64, atol=1e-3, rtol=1e-3)


def test_deconvolution_is_adjoint_of_convolution():
    """<conv(x), y> == <x, deconv(y)> with shared weights: the deconvolution is the transpose."""
    W = _rng().standard_normal((3, 2, 4, 4)).astype(numpy.float32)
    conv = L.Convolution2D(2, 3, ksize=4, stride=2, pad=1, initialW=W, nobias=True)
    deconv = L.Deconvolution2D(3, 2, ksize=4, stride=2, pad=1, initialW=W, nobias=True)
    x = _rng(1).standard_normal((1, 2, 8, 8)).astype(numpy.float32)
    y = _rng(2).standard_normal((1, 3, 4, 4)).astype(numpy.float32)
    lhs = float(numpy.sum(conv(x).array * y))
    rhs = float(numpy.sum(x * deconv(y).array))
    assert lhs == pytest.approx(rhs, rel=1e-4)
    gradient_check.check_backward(deconv, y, _rng(3).standard_normal((1, 2, 8, 8)).astype(numpy.float32),
                                  dtype=numpy.float64, atol=1e-3, rtol=1e-3)


def test_batch_normalization_train_and_test_modes():
    bn = L.BatchNormalization(3)
    x = (_rng().standard_normal((16, 3)) * 3 + 5).astype(numpy.float32)
    y = bn(x).array
    numpy.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-5)
    numpy.testing.assert_allclose(y.std(axis=0), 1, atol=1e-3)
    with chainer.using_config("train", False):
        y_test = bn(x).array  # running statistics after one update with decay 0.9
    mean = 0.1 * x.mean(axis=0)
    var = 0.9 + 0.1 * x.var(axis=0, ddof=1)
    numpy.testing.assert_allclose(y_test, (x - mean) / numpy.sqrt(var + bn.eps), rtol=1e-4, atol=1e-4)


def test_double_backprop_through_grad_matches_analytic():
    """chainer.grad with enable_double_backprop: d/dw of ||d(w.x^2)/dx||^2 is analytic."""
    w = chainer.Variable(numpy.array([0.5, -1.5, 2.0], dtype=numpy.float32))
    x = chainer.Variable(numpy.array([1.0, 2.0, -3.0], dtype=numpy.float32))
    y = F.sum(w * x * x)
    gx, = chainer.grad([y], [x], enable_double_backprop=True)
    numpy.testing.assert_allclose(gx.array, 2 * w.array * x.array)
    penalty = F.sum(gx * gx)  # sum (2 w x)^2, d/dw = 8 w x^2
    penalty.backward()
    numpy.testing.assert_allclose(w.grad, 8 * w.array * x.array ** 2, rtol=1e-6)
    gradient_check.check_double_backward(
        lambda a: F.leaky_relu(a, 0.2) ** 2, _rng().standard_normal((3, 4)).astype(numpy.float32),
        _rng(1).standard_normal((3, 4)).astype(numpy.float32),
        _rng(2).standard_normal((3, 4)).astype(numpy.float32), dtype=numpy.float64, atol=1e-3, rtol=1e-3)


def test_adam_step_matches_formula():
    param = chainer.Parameter(numpy.array([1.0, -2.0], dtype=numpy.float32))
    link = chainer.Link()
    with link.init_scope():
        link.p = param
    opt = chainer.optimizers.Adam(alpha=1e-3, beta1=0.5, beta2=0.9)
    opt.setup(link)
    grad = numpy.array([0.3, -0.7], dtype=numpy.float32)
    param.grad = grad.copy()
    opt.update()
    m = 0.5 * grad
    v = 0.1 * grad ** 2
    step = 1e-3 * (m / 0.5) / (numpy.sqrt(v / 0.1) + 1e-8)
    numpy.testing.assert_allclose(param.array, numpy.array([1.0, -2.0]) - step, rtol=1e-5)


def test_save_and_load_npz_roundtrip(tmp_path):
    a = L.Linear(3, 2)
    b = L.Linear(3, 2)
    path = tmp_path / "m.npz"
    serializers.save_npz(str(path), a)
    serializers.load_npz(str(path), b)
    numpy.testing.assert_array_equal(a.W.array, b.W.array)
    numpy.testing.assert_array_equal(a.b.array, b.b.array)


def test_trainer_with_standard_updater_fits_linear_regression(tmp_path):
    rng = _rng()
    x = rng.standard_normal((64, 2)).astype(numpy.float32)
    t = (x @ numpy.array([[2.0], [-1.0]]) + 0.5).astype(numpy.float32)
    model = L.Linear(2, 1)

    class Loss(chainer.Chain):
        def __init__(self):
            super().__init__()
            with self.init_scope():
                self.model = model

        def forward(self, x, t):
            loss = F.mean_squared_error(self.model(x), t)
            chainer.reporter.report({"loss": loss}, self)
            return loss

    loss = Loss()
    opt = chainer.optimizers.Adam(alpha=0.05)
    opt.setup(loss)
    it = chainer.iterators.SerialIterator(chainer.datasets.TupleDataset(x, t), 16,
                                          order_sampler=chainer.iterators.ShuffleOrderSampler(
                                              numpy.random.RandomState(0)))
    updater = training.updaters.StandardUpdater(it, opt)
    trainer = training.Trainer(updater, (400, "iteration"), out=str(tmp_path))
    trainer.run()
    numpy.testing.assert_allclose(model.W.array.ravel(), [2.0, -1.0], atol=0.05)
    numpy.testing.assert_allclose(model.b.array, [0.5], atol=0.05)


def test_chainer_testing_requirements_without_pkg_resources():
    """Patch 7 (testing/helper.py:6): with_requires works; the stand-in does not leak to other imports."""
    import unittest

    from chainer import testing

    numpy_major = int(numpy.__version__.split(".")[0])

    @testing.with_requires("numpy>={}".format(numpy_major))
    class Present(unittest.TestCase):
        pass

    @testing.with_requires("numpy<1")
    class Missing(unittest.TestCase):
        pass

    @testing.with_requires("no-such-distribution-xyz")
    class Absent(unittest.TestCase):
        pass

    assert not getattr(Present, "__unittest_skip__", False)
    assert Missing.__unittest_skip__ and Absent.__unittest_skip__
    import importlib.util

    real = importlib.util.find_spec("pkg_resources") is not None
    assert ("pkg_resources" in sys.modules) == (real and "pkg_resources" in sys.modules)
    if not real:
        with pytest.raises(ImportError):
            import pkg_resources  # noqa: F401
