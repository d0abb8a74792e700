"""Trainer extension: Inception Score and FID of the generator every N iterations, reported to chainer.reporter.

The values are reported as ``IS``, ``IS_std`` and ``FID`` (or with ``prefix``) inside the trainer's
observation, so a :class:`chainer.training.extensions.LogReport` whose trigger fires on the same
iteration records them (this extension runs with writer priority, before the log is written).
"""
from __future__ import annotations

from typing import Optional, Tuple

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import numpy as np
from chainer import training

from chainer_va.metrics import evaluation, scores


class GANEvaluation(training.Extension):
    """Evaluate ``generator`` with IS (``is_extractor``) and FID (``fid_extractor`` vs ``reference``).

    Defaults are chainer-gan-lib's (50,000 IS samples, 10 splits, 10,000 FID samples); reduce them for
    frequent evaluation during training. ``seed`` fixes the latents so successive evaluations compare
    the generator, not the noise.
    """

    priority = training.PRIORITY_WRITER

    def __init__(self, generator: chainer.Link, is_extractor, fid_extractor, reference: Tuple[np.ndarray, np.ndarray],
                 every: int = 10000, n_is: int = evaluation.IS_SAMPLES, n_fid: int = evaluation.FID_SAMPLES,
                 splits: int = scores.IS_SPLITS, batchsize: int = evaluation.EVAL_BATCHSIZE, seed: int = 0,
                 prefix: str = "", progress: bool = False):
        if every <= 0:
            raise ValueError("`every` must be a positive number of iterations, got {}".format(every))
        self.trigger = (int(every), "iteration")
        self.generator = generator
        self.is_extractor, self.fid_extractor, self.reference = is_extractor, fid_extractor, reference
        self.n_is, self.n_fid, self.splits, self.batchsize = n_is, n_fid, splits, batchsize
        self.seed, self.prefix, self.progress = seed, prefix, progress
        self.last: Optional[dict] = None

    def __call__(self, trainer=None) -> dict:
        result = evaluation.evaluate_generator(
            self.generator, self.is_extractor, self.fid_extractor, self.reference, n_is=self.n_is,
            n_fid=self.n_fid, splits=self.splits, batchsize=self.batchsize, seed=self.seed, progress=self.progress)
        self.last = result
        chainer.reporter.report({self.prefix + "IS": result["IS"], self.prefix + "IS_std": result["IS_std"],
                                 self.prefix + "FID": result["FID"]})
        return result
