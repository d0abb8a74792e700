"""Inception Score and FID (SPEC section 5): a Chainer port of TF's inception-2015-12-05 graph and the scores."""
from chainer_va import compat  # noqa: F401  (first: makes Chainer 7.8.1 import on numpy 2)
