"""Inception Score and FID (SPEC section 5): a Chainer port of TF's inception-2015-12-05 graph and the scores.

The public API is :data:`__all__` below, imported from the submodules (docs/status/metrics.md).
"""
from chainer_va import compat  # noqa: F401  (first: makes Chainer 7.8.1 import on numpy 2)

from chainer_va.metrics.scores import (fid_from_features, fid_from_stats, feature_statistics,  # noqa: E402
                                       inception_score)
from chainer_va.metrics.inception import Inception2015  # noqa: E402
from chainer_va.metrics.evaluation import (InceptionExtractor, evaluate_generator, fid_of_generator,  # noqa: E402
                                           inception_score_of_generator, reference_statistics)
from chainer_va.metrics.extension import GANEvaluation  # noqa: E402
from chainer_va.metrics.classifier import ClassifierExtractor  # noqa: E402

__all__ = ["inception_score", "fid_from_stats", "fid_from_features", "feature_statistics", "Inception2015",
           "inception_weights", "InceptionExtractor", "evaluate_generator", "fid_of_generator",
           "inception_score_of_generator", "reference_statistics", "GANEvaluation", "ClassifierExtractor"]


def __getattr__(name: str):
    """``inception_weights`` is imported on first use, so that ``python -m chainer_va.metrics.convert``
    runs a module the package has not imported yet (no runpy double-import warning)."""
    if name == "inception_weights":
        from chainer_va.metrics.convert import inception_weights

        return inception_weights
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
