"""A small CNN classifier for the ``--quick`` pipeline: classifier-based IS and FID on MNIST-like data.

The Inception weights cannot be assumed offline, so ``reproduce/table1.sh --quick`` and ``--study`` score
samples with this network instead, trained once on MNIST-5k's 4500-digit train split and cached. Its
"IS" is exp(E KL(p(y|x)||p(y))) with its own 10-way softmax (at most 10), its "FID" the Fréchet distance
of its 128-d hidden features. Its accuracy on the 500 held-out digits of the test split (kept from it
and from the GANs) is recorded with it and printed with every table: 0.98 or more is required
(measured at the defaults: 0.980, i.e. 490 of 500, for seed 0; 0.980 and 0.988 for seeds 1 and 2;
docs/table1_study/README.md). Trained on MNIST digits, it gives
samples of other images (Fashion-MNIST, CIFAR-10) an IS near 1: :func:`domain_warning` says so.
These numbers are NOT comparable with the paper's or any published Inception-based score.

Network (LeNet-like, with BN): conv 5x5 1 -> 20, BN, ReLU, 2x2 max-pool; conv 5x5 20 -> 50, BN, ReLU,
2x2 max-pool; Linear 1250 -> 128 (the FID feature, taken before its ReLU); ReLU; Linear 10. Adam
(lr 1e-3, cosine decay to 0 over the epochs), batch 32, 20 epochs, each image randomly rotated
(±10°), scaled (±10%) and shifted (±2 px) each time it is seen (:func:`augment`); all of it seeded.
The pooling is :func:`max_pool_2x2` (the same numbers as ``F.max_pooling_2d(x, 2)``, faster on the CPU).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import threading
import time
from pathlib import Path
from typing import Optional, Tuple

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

from va_core import download, runinfo
from chainer_va.metrics.evaluation import check_pixels, weights_digest
from chainer_va.nets import init_rng
from va_core.runinfo import atomic_write_bytes

#: Training settings of the cached classifier (all part of its cache key). ``width``: the first conv's
#: channels (the second has 2.5 times as many); ``hidden``: the FID feature's size.
CLASSIFIER_DEFAULTS = dict(net="cnn", dataset="mnist5k", size=32, channels=1, epochs=20, batchsize=32, lr=1e-3,
                           seed=0, hidden=128, width=20, rotate=10.0, scale=0.1, shift=2.0)
#: Data sets of the same images (MNIST-5k is a subset of MNIST's digits).
DIGIT_DATASETS = ("mnist", "mnist5k")
KERNEL = 5  # both convolutions are 5x5, unpadded
#: BLAS threads while the classifier trains (small matrices: more threads only contend).
TRAIN_BLAS_THREADS = 1


def domain_warning(dataset: str, overrides: Optional[dict] = None) -> Optional[str]:
    """Why the classifier of ``overrides`` cannot judge samples of ``dataset`` (other images than it was
    trained on), or None when it was trained on that kind of image."""
    trained_on = dict(CLASSIFIER_DEFAULTS, **(overrides or {}))["dataset"]
    if dataset == trained_on or (dataset in DIGIT_DATASETS and trained_on in DIGIT_DATASETS):
        return None
    return ("the classifier scorer is trained on {}{}, not on the run's data set {}: its IS and FID say how much "
            "the samples look like those images (IS near 1 for others), not how good they are; score this run with "
            "--scorer inception".format(trained_on, " (MNIST digits)" if trained_on in DIGIT_DATASETS else "",
                                        dataset))


class SmallClassifier(chainer.Chain):
    """The --quick classifier. ``forward`` returns (features (N, hidden), logits (N, classes))."""

    def __init__(self, in_channels: int = 1, size: int = 32, hidden: int = 128, classes: int = 10,
                 width: int = 20, rng: Optional[np.random.RandomState] = None):
        super().__init__()
        self.in_channels, self.size = in_channels, size
        c1, c2 = int(width), int(round(2.5 * width))
        side = ((size - KERNEL + 1) // 2 - KERNEL + 1) // 2  # 32 -> 28 -> 14 -> 10 -> 5
        w = chainer.initializers.LeCunNormal(rng=init_rng(rng))
        with self.init_scope():
            self.c1 = L.Convolution2D(in_channels, c1, KERNEL, initialW=w, nobias=True)
            self.b1 = L.BatchNormalization(c1)
            self.c2 = L.Convolution2D(c1, c2, KERNEL, initialW=w, nobias=True)
            self.b2 = L.BatchNormalization(c2)
            self.fc = L.Linear(c2 * side * side, hidden, initialW=w)
            self.out = L.Linear(hidden, classes, initialW=w)

    def forward(self, x):
        if x.ndim == 2:  # flattened images
            x = F.reshape(x, (len(x), self.in_channels, self.size, self.size))
        h = max_pool_2x2(F.relu(self.b1(self.c1(x))))
        h = max_pool_2x2(F.relu(self.b2(self.c2(h))))
        feature = self.fc(h)
        return feature, self.out(F.relu(feature))


class _MaxPool2x2(chainer.FunctionNode):
    """2x2 max pooling with stride 2 (see :func:`max_pool_2x2`)."""

    def forward(self, inputs):
        x, = inputs
        xp = chainer.backend.get_array_module(x)
        self.retain_inputs((0,))
        h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
        self._y = xp.maximum(xp.maximum(x[:, :, 0:h:2, 0:w:2], x[:, :, 0:h:2, 1:w:2]),
                             xp.maximum(x[:, :, 1:h:2, 0:w:2], x[:, :, 1:h:2, 1:w:2]))
        return self._y,

    def backward(self, indexes, grad_outputs):
        x = self.get_retained_inputs()[0].array
        xp = chainer.backend.get_array_module(x)
        gy = grad_outputs[0].array
        h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
        gx = xp.zeros(x.shape, dtype=x.dtype)  # C order, as F.max_pooling_2d's gradient (same sums downstream)
        taken = xp.zeros(gy.shape, dtype=bool)
        for i in (0, 1):  # the first maximum of each window in row-major order, as F.max_pooling_2d's argmax
            for j in (0, 1):
                hit = (x[:, :, i:h:2, j:w:2] == self._y) & ~taken
                taken |= hit
                gx[:, :, i:h:2, j:w:2] = gy * hit
        return chainer.Variable(gx),


def max_pool_2x2(x):
    """2x2 max pooling with stride 2 of (N, C, H, W): the elementwise max of the four strided sub-images.
    For even H and W its output and gradient (to the first maximum of each window) are the same numbers as
    ``F.max_pooling_2d(x, 2)``'s, about 1.2 times faster per training step on the CPU (Chainer pools through
    im2col + argmax); an odd last row or column is dropped (floor, as :class:`SmallClassifier` sizes its
    Linear layer), where ``F.max_pooling_2d``'s ``cover_all`` would add a partial window. NumPy or CuPy."""
    return _MaxPool2x2().apply((x,))[0]


def _cache_path(settings: dict) -> Path:
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return download.cache_dir() / "classifiers" / "{}_{}.npz".format(settings["dataset"], digest)


def augment(images: np.ndarray, rng: np.random.RandomState, rotate: float = 10.0, scale: float = 0.1,
            shift: float = 2.0) -> np.ndarray:
    """Each image rotated by U(-rotate, rotate) degrees, scaled by U(1 - scale, 1 + scale) and shifted by
    U(-shift, shift) pixels about its centre (bilinear; the background -1 outside); every channel of an
    image is moved the same way."""
    n, channels, size, _ = images.shape
    centre = (size - 1) / 2.0
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij")).reshape(2, -1) - centre
    angle = np.deg2rad(rng.uniform(-rotate, rotate, n))
    zoom = rng.uniform(1.0 - scale, 1.0 + scale, n)
    offset = rng.uniform(-shift, shift, (n, 2))
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    inverse = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)  # output -> input position
    source = inverse @ grid[None] - offset[:, :, None] + centre + 1.0  # +1: the padding below
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-1.0)
    row, col = source[:, 0], source[:, 1]
    r0, c0 = np.floor(row).astype(np.int64), np.floor(col).astype(np.int64)
    fr, fc = row - r0, col - c0
    out = np.zeros((n, channels, size * size))
    index = np.arange(n)[:, None]
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            rows, cols = np.clip(r0 + dr, 0, size + 1), np.clip(c0 + dc, 0, size + 1)
            for channel in range(channels):
                out[:, channel] += wr * wc * padded[index, channel, rows, cols]
    return out.reshape(n, channels, size, size).astype(np.float32)


def accuracy_of(model: SmallClassifier, images: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of ``images`` the model (in inference mode) labels correctly."""
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        _, logits = model(images)
    return float((logits.array.argmax(axis=1) == labels).mean())


def train_classifier(images: np.ndarray, labels: np.ndarray, epochs: int, batchsize: int, lr: float, seed: int,
                     hidden: int = 128, width: int = 20, held_out: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                     rotate: float = 10.0, scale: float = 0.1, shift: float = 2.0,
                     progress: bool = True) -> Tuple[SmallClassifier, float]:
    """Train :class:`SmallClassifier` on images in [-1, 1]; return it and its accuracy on ``held_out``
    (nan without). Weights, batch order and augmentation all draw from ``RandomState(seed)``.

    BLAS runs on one thread here (:data:`TRAIN_BLAS_THREADS`): the matrices are small, so more threads only
    contend (on a loaded 2-core machine the default two OpenBLAS threads made the 20 epochs take 18 min
    instead of 3), and the weights then do not depend on the machine's core count."""
    import threadpoolctl

    rng = np.random.RandomState(seed)
    model = SmallClassifier(images.shape[1], images.shape[2], hidden, int(labels.max()) + 1, width, rng=rng)
    optimizer = chainer.optimizers.Adam(alpha=lr)
    optimizer.setup(model)
    with threadpoolctl.threadpool_limits(TRAIN_BLAS_THREADS):
        for epoch in range(epochs):
            optimizer.alpha = lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))  # cosine decay
            order = rng.permutation(len(images))
            for start in range(0, len(order), batchsize):
                idx = order[start:start + batchsize]
                _, logits = model(augment(images[idx], rng, rotate, scale, shift))
                loss = F.softmax_cross_entropy(logits, labels[idx])
                model.cleargrads()
                loss.backward()
                optimizer.update()
            if progress:
                print("classifier epoch {}/{}: loss {:.3f}".format(epoch + 1, epochs, float(loss.array)), flush=True)
        accuracy = accuracy_of(model, *held_out) if held_out is not None else float("nan")
    return model, accuracy


_TRAINING = threading.Lock()  # threads of one process (the Table 1 driver's runs) train the scorer once


def load_or_train(progress: bool = True, **overrides) -> Tuple[SmallClassifier, dict]:
    """The cached classifier for ``CLASSIFIER_DEFAULTS`` (+ overrides); trained on the data set's train split
    and cached on first use, its ``holdout_accuracy`` measured on the test split. A second thread asking
    while the first trains waits for it and reads the cache."""
    with _TRAINING:
        return _load_or_train(progress, **overrides)


def _load_or_train(progress: bool = True, **overrides) -> Tuple[SmallClassifier, dict]:
    from chainer_va import data

    settings = dict(CLASSIFIER_DEFAULTS, **overrides)
    path = _cache_path(settings)
    model = SmallClassifier(settings["channels"], settings["size"], settings["hidden"], width=settings["width"])

    def read(stored):
        chainer.serializers.NpzDeserializer(stored, path="model/").load(model)
        return json.loads(str(stored["info"]))

    info = runinfo.read_cache_npz(path, read)  # a damaged cache is retrained
    if info is not None:
        return model, info
    load = dict(size=settings["size"], channels=settings["channels"])
    images, labels = data.load_labeled(settings["dataset"], **load)
    held_out = data.load_labeled(settings["dataset"], split="test", **load)
    if progress:
        print("training the quick scorer (a small CNN, cached afterwards) on {} {} images".format(
            len(images), settings["dataset"]), flush=True)
    start = time.time()
    training = {k: settings[k] for k in ("epochs", "batchsize", "lr", "seed", "hidden", "width", "rotate", "scale",
                                         "shift")}
    model, accuracy = train_classifier(images, labels, held_out=held_out, progress=progress, **training)
    info = dict(settings, holdout_accuracy=accuracy, n_train=int(len(images)), n_holdout=int(len(held_out[1])),
                train_seconds=time.time() - start)
    buffer = io.BytesIO()
    arrays = {"model/" + k.lstrip("/"): v for k, v in _state(model).items()}
    np.savez(buffer, info=np.array(json.dumps(info)), **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return model, info


def _state(model: chainer.Link) -> dict:
    serializer = chainer.serializers.DictionarySerializer()
    serializer.save(model)
    return serializer.target


class ClassifierExtractor:
    """Extractor (pixel values [0, 255] -> (features, probs)) built on the cached :class:`SmallClassifier`."""

    comparable_with_paper = False

    def __init__(self, model: Optional[SmallClassifier] = None, info: Optional[dict] = None, device=-1,
                 batchsize: int = 500, progress: bool = True):
        from chainer_va.device import get_device

        if model is None:
            model, info = load_or_train(progress=progress)
        self.model, self.info = model, dict(info or {})
        self.batchsize = batchsize
        self.device = get_device(device) if not isinstance(device, chainer.backend.Device) else device
        self.model.to_device(self.device)
        # the cached FID statistics are keyed by the weights themselves: two classifiers share them only
        # when their parameters and BN statistics are equal
        self.key = "classifier_{}".format(weights_digest(self.model))
        self.name = "small MNIST classifier (quick mode; NOT comparable with Inception scores)"

    def __call__(self, pixels):
        """(features, softmax) of 8-bit pixel values in [0, 255] (:func:`check_pixels`)."""
        from chainer_va.metrics.inception import resize_bilinear

        check_pixels(pixels, "ClassifierExtractor")
        xp = self.model.xp
        x = self.device.send(np.asarray(pixels, dtype=np.float32))
        if x.shape[1] != self.model.in_channels:
            if self.model.in_channels == 1:
                x = x.mean(axis=1, keepdims=True)
            else:
                x = xp.repeat(x, self.model.in_channels, axis=1)
        if x.shape[2:] != (self.model.size, self.model.size):
            x = resize_bilinear(x, self.model.size, "align_corners")
        x = x / np.float32(127.5) - np.float32(1.0)
        feats, probs = [], []
        with chainer.using_config("train", False), chainer.no_backprop_mode():
            for start in range(0, len(x), self.batchsize):
                f, logits = self.model(x[start:start + self.batchsize])
                feats.append(f.array)
                probs.append(F.softmax(logits).array)
        return xp.concatenate(feats), xp.concatenate(probs)
