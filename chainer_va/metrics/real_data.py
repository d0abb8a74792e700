"""Real images scored exactly as the generators are: the ceiling row of every Table 1 output.

A score means little without the score of real data beside it. The quick and study tables (MNIST-5k,
classifier scorer) score the 500 digits of MNIST-5k's held-out test split, which neither the GANs nor
the scorer saw: IS in one split of 500 (the generators': 5000 samples in 10 splits of 500) and FID
against the train split's statistics (the generators': the mean over 10 chunks of 500 samples), so the
same small-sample biases apply to both. The full table scores CIFAR-10's 10,000 test images with the
Inception port (IS in 10 splits, FID against the training set's statistics).
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np

from chainer_va.metrics import scores
from chainer_va.metrics.evaluation import EVAL_BATCHSIZE, chunked_fid, dataset_batches, extract, reference_statistics

__all__ = ["real_data_scores", "classifier_real_row", "inception_real_row"]

#: Real images per split of the held-out sets (mnist5k: its 500 test digits are one chunk).
MNIST5K_CHUNK = 500


def real_data_scores(images: np.ndarray, extractor: Callable, reference: Tuple[np.ndarray, np.ndarray],
                     splits: int = 1, fid_chunk: Optional[int] = None, batchsize: int = EVAL_BATCHSIZE,
                     progress: bool = False) -> dict:
    """IS (``splits`` splits) and FID (against ``reference``; per ``fid_chunk`` as :func:`chunked_fid`) of real
    ``images`` in [-1, 1], through the same 8-bit rounding and extractor as generator samples."""
    feats, probs = extract(extractor, dataset_batches(images, batchsize), len(images), "real images", progress)
    is_mean, is_std = scores.inception_score(probs, splits)
    return {"IS": is_mean, "IS_std": is_std, "FID": chunked_fid(feats, reference, fid_chunk), "n": int(len(images)),
            "splits": splits, "chunk": fid_chunk}


def classifier_real_row(chunk: int = MNIST5K_CHUNK, progress: bool = False, **overrides) -> dict:
    """The quick tables' real-data row: mnist5k's test digits with the cached quick scorer (trained on first
    use); also the scorer's held-out accuracy (``accuracy``). ``overrides`` as :func:`classifier.load_or_train`."""
    from chainer_va import data
    from chainer_va.metrics.classifier import ClassifierExtractor, load_or_train

    model, info = load_or_train(progress=progress, **overrides)
    extractor = ClassifierExtractor(model, info, progress=progress)
    shape = dict(channels=model.in_channels, size=model.size)
    reference = reference_statistics("mnist5k", extractor, progress=progress, **shape)
    images = data.load_images("mnist5k", split="test", **shape)
    row = real_data_scores(images, extractor, reference, splits=max(1, len(images) // chunk), fid_chunk=chunk)
    row.update(dataset="mnist5k", split="test", accuracy=info.get("holdout_accuracy"))
    return row


def inception_real_row(dataset: str, data_dir=None, n_is: int = 10000, n_fid: int = 10000,
                       splits: int = scores.IS_SPLITS, progress: bool = False) -> dict:
    """The full table's real-data row: ``dataset``'s test images (CIFAR-10: 10,000) with the Inception port,
    at most ``n_is`` for IS and ``n_fid`` for FID against the training set's statistics."""
    from chainer_va import data
    from chainer_va.metrics.evaluation import InceptionExtractor

    if dataset != "cifar10":
        raise ValueError("no held-out test split of {} to score (only cifar10 has one here)".format(dataset))
    fid_extractor = InceptionExtractor(resize="tf")
    is_extractor = InceptionExtractor(resize="align_corners", model=fid_extractor.model)
    reference = reference_statistics(dataset, fid_extractor, data_dir=data_dir, progress=progress)
    images = data.load_images(dataset, data_dir=data_dir, split="test")
    is_feats, probs = extract(is_extractor, dataset_batches(images[:n_is]), min(n_is, len(images)), "real IS", progress)
    is_mean, is_std = scores.inception_score(probs, splits)
    fid_feats, _ = extract(fid_extractor, dataset_batches(images[:n_fid]), min(n_fid, len(images)), "real FID",
                           progress)
    return {"IS": is_mean, "IS_std": is_std, "FID": chunked_fid(fid_feats, reference), "n": int(min(n_fid, len(images))),
            "dataset": dataset, "split": "test", "splits": splits}
