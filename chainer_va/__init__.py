"""Annealed GAN objectives (Tao et al., ICML 2019) in Chainer: updaters, networks, schedules, metrics."""
from chainer_va import compat  # noqa: F401  (first: makes Chainer 7.8.1 import on numpy 2 / Py 3.12)

__version__ = "0.1.0"
