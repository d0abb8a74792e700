"""Batched IS / FID evaluation of generators and data sets, with cached reference statistics (SPEC section 5).

Protocol (chainer-gan-lib / TTUR; docs/status/metrics.md): seeded z ~ U(-1, 1), samples generated in test
mode and quantised to 8 bits like chainer-gan-lib (truncating); IS over 50,000 samples in 10 splits, resized
with aligned corners as chainer-gan-lib did; FID of 10,000 samples against the 50,000 CIFAR-10 training
images, both resized by the graph's own ResizeBilinear (TTUR). Reference statistics are cached.

An *extractor* maps pixel values in [0, 255] (N, C, H, W) to ``(features, probs)``: the Inception port
(:class:`InceptionExtractor`) or the small MNIST classifier of ``--quick``
(:class:`chainer_va.metrics.classifier.ClassifierExtractor`).
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple, Union

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import numpy as np

from va_core import download
from chainer_va.array_types import Array, DeviceSpec
from chainer_va.latent import LatentSampler
from chainer_va.metrics import scores
from va_core import runinfo
from va_core.runinfo import atomic_write_bytes

#: chainer-gan-lib's sample counts and batch size (common/evaluation.py).
IS_SAMPLES = 50000
FID_SAMPLES = 10000
EVAL_BATCHSIZE = 100
#: Reference set of the FID: the 50,000 CIFAR-10 training images (TTUR's precomputed statistics).
FID_REFERENCE_DATASET = "cifar10"
#: 8-bit quantisation of generator outputs in [-1, 1].
PIXEL_SCALE = 127.5


class Progress:
    """A minimal progress bar on stderr (tqdm when installed); ``enabled=False`` silences it."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total, self.label, self.enabled, self.done = int(total), label, enabled, 0
        self._bar = None
        self._next_report = 0.0
        self._start = time.time()
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=self.total, desc=label, unit="img", file=sys.stderr, leave=False)
            except ImportError:
                pass

    def update(self, n: int) -> None:
        """Count ``n`` more images; print a line every tenth of the total when there is no bar."""
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
        elif self.done >= self._next_report or self.done >= self.total:
            rate = self.done / max(time.time() - self._start, 1e-9)
            print("{}: {}/{} ({:.0f} img/s)".format(self.label, self.done, self.total, rate), file=sys.stderr)
            self._next_report = self.done + self.total / 10.0

    def close(self) -> None:
        """Close the progress bar, if one was shown."""
        if self._bar is not None:
            self._bar.close()


def quantize(images) -> np.ndarray:
    """Generator output in [-1, 1] -> 8-bit pixel values as float32 (chainer-gan-lib truncates; so do we)."""
    images = chainer.backend.CpuDevice().send(chainer.as_array(images))
    return np.clip(images * PIXEL_SCALE + PIXEL_SCALE, 0.0, 255.0).astype(np.uint8).astype(np.float32)


def check_pixels(pixels: Array, who: str = "the extractor") -> None:
    """Refuse a batch that is clearly not 8-bit pixel values in [0, 255] (an extractor's input, SPEC
    section 5): a value outside [0, 255] (e.g. the [-1, 1] of chainer_va.data and of generators), or a
    batch within [0, 1] holding fractions. One min and max per batch; the fractions are looked for only
    when the batch lies within [0, 1], so a quantised batch of 0s and 1s (a collapsed generator) passes."""
    xp = chainer.backend.get_array_module(pixels)
    pixels = xp.asarray(pixels)
    if pixels.size == 0:
        return
    lo, hi = float(pixels.min()), float(pixels.max())
    if 0.0 <= lo and hi <= 255.0 and not (hi <= 1.0 and bool(((pixels > 0) & (pixels < 1)).any())):
        return
    raise ValueError("{} takes 8-bit pixel values in [0, 255], got values in [{:.4g}, {:.4g}]: images in [-1, 1] "
                     "(chainer_va.data, generator output) must first go through "
                     "chainer_va.metrics.evaluation.quantize (as generator_batches does; dataset_batches for a "
                     "data set), images in [0, 1] be multiplied by 255".format(who, lo, hi))


def to_rgb(images: Array) -> Array:
    """Repeat a single channel to 3 (N, 1, H, W) -> (N, 3, H, W); 3-channel input is returned as is."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError("images must be (N, 1 or 3, H, W), got {}".format(images.shape))
    xp = chainer.backend.get_array_module(images)
    return xp.repeat(images, 3, axis=1) if images.shape[1] == 1 else images


def generator_batches(generator: chainer.Link, n: int, batchsize: int = EVAL_BATCHSIZE,
                      seed: int = 0) -> Iterator[np.ndarray]:
    """Yield 8-bit pixel batches (float32, (B, C, H, W), CPU) of ``n`` samples of ``generator`` (test mode)."""
    latent_dim = getattr(generator, "latent_dim", None)
    if latent_dim is None:
        raise TypeError("generator must have a `latent_dim` attribute (chainer_va.nets.Generator does)")
    sampler = LatentSampler(latent_dim, seed)
    device = generator.device
    for start in range(0, n, batchsize):
        z = device.send(sampler(min(batchsize, n - start)))
        with chainer.using_config("train", False), chainer.no_backprop_mode():
            x = generator(z)
        yield quantize(x)


def dataset_batches(images: np.ndarray, batchsize: int = EVAL_BATCHSIZE) -> Iterator[np.ndarray]:
    """Yield pixel batches of a data set given in [-1, 1] (chainer_va.data's range), rounded to 8 bits."""
    for start in range(0, len(images), batchsize):
        batch = np.asarray(images[start:start + batchsize], dtype=np.float32)
        yield np.clip(np.rint(batch * PIXEL_SCALE + PIXEL_SCALE), 0.0, 255.0).astype(np.float32)


def extract(extractor: Callable, batches: Iterator[np.ndarray], total: int, label: str = "features",
            progress: bool = True) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Run ``extractor`` over pixel batches; return (features (N, D), probs (N, K) or None) on the CPU."""
    feats, probs = [], []
    bar = Progress(total, label, progress)
    try:
        for batch in batches:
            f, p = extractor(batch)
            feats.append(np.asarray(chainer.backend.CpuDevice().send(f), dtype=np.float32))
            if p is not None:
                probs.append(np.asarray(chainer.backend.CpuDevice().send(p), dtype=np.float64))
            bar.update(len(batch))
    finally:
        bar.close()
    return np.concatenate(feats), (np.concatenate(probs) if probs else None)


class InceptionExtractor:
    """pool3 features and softmax of the Chainer Inception port, in batches on a Chainer device.

    ``resize``: "align_corners" (chainer-gan-lib's IS) or "tf" (the graph's ResizeBilinear, TTUR's FID).
    ``weights``: converted ``.npz`` (default: :func:`chainer_va.metrics.convert.inception_weights`).
    """

    comparable_with_paper = True

    def __init__(self, device=-1, resize: str = "tf", weights=None, pool_padding: str = "tf",
                 batchsize: int = EVAL_BATCHSIZE, model=None):
        from chainer_va.device import get_device
        from chainer_va.metrics import convert, inception

        self.resize = resize
        self.batchsize = batchsize
        if model is None:
            path = Path(weights) if weights is not None else convert.inception_weights()
            arrays = convert.load_arrays(path)
            model = inception.Inception2015(pool_padding=pool_padding, with_logits="softmax/W" in arrays)
            model.load_arrays(arrays)
            self.weights_id = _file_id(path)
        else:
            self.weights_id = "model-" + weights_digest(model)
            pool_padding = getattr(model, "pool_padding", pool_padding)
        self.pool_padding = pool_padding
        self.device = get_device(device) if not isinstance(device, chainer.backend.Device) else device
        self.model = model
        self.model.to_device(self.device)
        self.name = "inception-2015-12-05(resize={},pool={})".format(resize, pool_padding)

    @property
    def key(self) -> str:
        """Names what the features depend on (FID reference statistics are cached under it)."""
        return "inception_{}_pool-{}_{}".format(self.resize, self.pool_padding, self.weights_id)

    def __call__(self, pixels):
        """(pool3 features, softmax) of 8-bit pixel values in [0, 255] (:func:`check_pixels`)."""
        check_pixels(pixels, "InceptionExtractor")
        feats, probs = [], []
        for start in range(0, len(pixels), self.batchsize):
            batch = self.device.send(np.asarray(to_rgb(pixels[start:start + self.batchsize]), dtype=np.float32))
            f, p = self.model.features_and_probs(batch, resize=self.resize)
            feats.append(f)
            probs.append(p)
        xp = self.model.xp
        return xp.concatenate(feats), (xp.concatenate(probs) if probs[0] is not None else None)


def weights_digest(link: chainer.Link) -> str:
    """A short sha1 of a link's parameters and persistent values (BN statistics), by name: the identity
    of a feature extractor's weights, for cache keys."""
    digest = hashlib.sha1()
    arrays = dict(link.namedparams())
    arrays.update({name: value for name, value in _persistents(link)})
    for name in sorted(arrays):
        value = arrays[name]
        value = value.array if isinstance(value, chainer.Variable) else value
        digest.update(name.encode())
        if value is not None:
            array = chainer.backend.CpuDevice().send(value)
            digest.update(str((array.dtype, array.shape)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:10]


def _persistents(link: chainer.Link, prefix: str = ""):
    for name in sorted(link._persistent):
        yield prefix + "/" + name, getattr(link, name)
    if isinstance(link, chainer.Chain):
        for child in link.children():
            yield from _persistents(child, prefix + "/" + child.name)


def _file_id(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha1("{}:{}:{}".format(path.resolve(), stat.st_size, int(stat.st_mtime)).encode()).hexdigest()[:10]


def inception_score_of_generator(generator: chainer.Link, extractor: Optional[Callable] = None, n_samples: int = IS_SAMPLES, splits: int = scores.IS_SPLITS,
                                 batchsize: int = EVAL_BATCHSIZE, seed: int = 0, progress: bool = True,
                                 device: DeviceSpec = -1) -> Tuple[float, float]:
    """(mean, std) Inception Score of ``generator`` over ``n_samples`` samples (chainer-gan-lib's protocol)."""
    extractor = extractor or InceptionExtractor(device=device, resize="align_corners", batchsize=batchsize)
    _, probs = extract(extractor, generator_batches(generator, n_samples, batchsize, seed), n_samples,
                       "IS samples", progress)
    if probs is None:
        raise ValueError("extractor {} has no class probabilities: it cannot give an Inception Score".format(
            getattr(extractor, "name", extractor)))
    return scores.inception_score(probs, splits)


def _source_digest(data_dir, depth: int = 2) -> str:
    """A short digest of ``data_dir``'s resolved path and of the names, sizes and modification times of
    the files in it, ``depth`` levels down (an archive, ``cifar-10-batches-py/``, ``img_align_celeba/``)."""
    root = Path(data_dir).expanduser().resolve()
    digest = hashlib.sha256(str(root).encode())

    def add(path: Path, level: int) -> None:
        try:
            stat = path.stat()
        except OSError:
            return
        digest.update("{}|{}|{}\n".format(path.relative_to(root).as_posix(), stat.st_size,
                                          stat.st_mtime_ns).encode())
        if level and path.is_dir():
            for child in sorted(path.iterdir()):
                add(child, level - 1)

    add(root, depth)
    return digest.hexdigest()[:12]


def reference_statistics(dataset: str = FID_REFERENCE_DATASET, extractor: Optional[Callable] = None,
                         data_dir: Optional[Union[str, Path]] = None,
                         channels: int = 3, size: int = 32, limit: Optional[int] = None,
                         batchsize: int = EVAL_BATCHSIZE, progress: bool = True,
                         cache: bool = True, device: DeviceSpec = -1) -> Tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of the extractor's features on the training images of ``dataset``, computed once and cached.

    The cache file (``<data cache>/fid_stats/<dataset>_train_<size>_<channels>_<limit>[_<source>]_<extractor
    key>.npz``) records the data set, image count and extractor next to the statistics. With ``data_dir``
    the key includes a digest of that folder's path, names, sizes and modification times
    (:func:`_source_digest`), so statistics of one folder never stand in for another's.
    """
    from chainer_va import data

    extractor = extractor or InceptionExtractor(device=device, resize="tf", batchsize=batchsize)
    source = "" if data_dir is None else "_" + _source_digest(data_dir)  # the download cache: checksummed
    # "train": the split the statistics come from (mnist5k's train split is 4500 of its 5000 digits)
    key = "{}_train_{}_{}_{}{}_{}".format(dataset, size, channels, limit or "all", source, extractor.key)
    path = download.cache_dir() / "fid_stats" / (key + ".npz")
    cached = runinfo.read_cache_npz(path, lambda stored: (stored["mu"], stored["sigma"])) if cache else None
    if cached is not None:  # a damaged cache is recomputed
        return cached
    images = data.load_images(dataset, data_dir=data_dir, size=size, channels=channels, limit=limit)
    feats, _ = extract(extractor, dataset_batches(images, batchsize), len(images),
                       "{} reference features".format(dataset), progress)
    mu, sigma = scores.feature_statistics(feats)
    if cache:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, mu=mu, sigma=sigma, n=len(images), dataset=dataset,
                 extractor=getattr(extractor, "name", str(extractor)))
        atomic_write_bytes(path, buffer.getvalue())
    return mu, sigma


def fid_of_generator(generator: chainer.Link, reference: Tuple[np.ndarray, np.ndarray],
                     extractor: Optional[Callable] = None,
                     n_samples: int = FID_SAMPLES, batchsize: int = EVAL_BATCHSIZE, seed: int = 0,
                     progress: bool = True, device: DeviceSpec = -1, chunk: Optional[int] = None) -> float:
    """FID of ``n_samples`` generator samples against reference statistics ``(mu, sigma)`` (TTUR's definition).

    ``chunk``: the mean of the FIDs of consecutive chunks of that many samples (:func:`chunked_fid`), so
    that the score matches a set of real images of that size scored the same way.
    """
    extractor = extractor or InceptionExtractor(device=device, resize="tf", batchsize=batchsize)
    feats, _ = extract(extractor, generator_batches(generator, n_samples, batchsize, seed), n_samples,
                       "FID samples", progress)
    return chunked_fid(feats, reference, chunk)


def chunked_fid(features: np.ndarray, reference: Tuple[np.ndarray, np.ndarray], chunk: Optional[int] = None) -> float:
    """FID of ``features`` against ``reference``; with ``chunk``, the mean over consecutive chunks of that size
    (FID's small-sample bias depends on the count, so a 500-image real set is matched by 500-sample chunks)."""
    if chunk is None:
        return scores.fid_from_stats(*scores.feature_statistics(features), *reference)
    if chunk < 2 or len(features) % chunk:
        raise ValueError("the FID chunk must be >= 2 and divide the {} samples, got {}".format(len(features), chunk))
    return float(np.mean([scores.fid_from_stats(*scores.feature_statistics(features[i:i + chunk]), *reference)
                          for i in range(0, len(features), chunk)]))


def evaluate_generator(generator: chainer.Link, is_extractor: Optional[Callable], fid_extractor: Optional[Callable],
                       reference: Tuple[np.ndarray, np.ndarray], n_is: int = IS_SAMPLES,
                       n_fid: int = FID_SAMPLES, splits: int = scores.IS_SPLITS, batchsize: int = EVAL_BATCHSIZE,
                       seed: int = 0, progress: bool = True, fid_chunk: Optional[int] = None) -> dict:
    """IS (mean, std) and FID of a generator in one call; the FID samples use seed + 1 (disjoint from the IS ones).
    ``fid_chunk``: FID as the mean over chunks of that many samples (:func:`chunked_fid`)."""
    is_mean, is_std = inception_score_of_generator(generator, is_extractor, n_is, splits, batchsize, seed, progress)
    fid = fid_of_generator(generator, reference, fid_extractor, n_fid, batchsize, seed + 1, progress, chunk=fid_chunk)
    return {"IS": is_mean, "IS_std": is_std, "FID": fid, "n_is": n_is, "n_fid": n_fid, "splits": splits,
            "fid_chunk": fid_chunk,
            "is_extractor": getattr(is_extractor, "name", str(is_extractor)),
            "fid_extractor": getattr(fid_extractor, "name", str(fid_extractor))}


def write_metrics(path, metrics: dict) -> Path:
    """Write a metrics record atomically as JSON."""
    return atomic_write_bytes(path, (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
