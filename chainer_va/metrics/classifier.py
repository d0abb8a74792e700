"""A small CNN classifier for the ``--quick`` pipeline: classifier-based IS and FID on MNIST-like data.

The Inception weights cannot be assumed offline, so ``reproduce/table1.sh --quick`` scores samples with
this network instead, trained once on the bundled MNIST-5k and cached. Its "IS" is exp(E KL(p(y|x)||p(y)))
with its own 10-way softmax (at most 10), its "FID" the Fréchet distance of its 64-d hidden features.
Trained on MNIST digits, it gives samples of other images (Fashion-MNIST, CIFAR-10) an IS near 1:
:func:`domain_warning` says so.
These numbers are NOT comparable with the paper's or any published Inception-based score.

Network (an MLP, so that training it takes seconds on a shared CPU): flattened image -> Linear 256,
ReLU -> Linear 64 (the FID feature, taken before its ReLU) -> ReLU -> Linear 10. Adam, seeded; 10% of
the images are held out to report its accuracy.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Optional, Tuple

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

from chainer_va import download, runinfo
from chainer_va.metrics.evaluation import check_pixels, weights_digest
from chainer_va.nets import init_rng
from chainer_va.runinfo import atomic_write_bytes

#: Training hyper-parameters of the cached classifier (part of its cache key).
CLASSIFIER_DEFAULTS = dict(dataset="mnist5k", size=32, channels=1, epochs=10, batchsize=64, lr=1e-3,
                           holdout=0.1, seed=0, hidden=64, width=256)
#: Data sets of the same images (MNIST-5k is a subset of MNIST's digits).
DIGIT_DATASETS = ("mnist", "mnist5k")


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

    def __init__(self, in_channels: int = 1, size: int = 32, hidden: int = 64, classes: int = 10,
                 width: int = 256, rng: Optional[np.random.RandomState] = None):
        super().__init__()
        self.in_channels, self.size = in_channels, size
        w = chainer.initializers.LeCunNormal(rng=init_rng(rng))  # Chainer's default for Linear, seeded
        with self.init_scope():
            self.l1 = L.Linear(in_channels * size * size, width, initialW=w)
            self.fc = L.Linear(width, hidden, initialW=w)
            self.out = L.Linear(hidden, classes, initialW=w)

    def forward(self, x):
        feature = self.fc(F.relu(self.l1(x)))
        return feature, self.out(F.relu(feature))


def _cache_path(settings: dict) -> Path:
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return download.cache_dir() / "classifiers" / "{}_{}.npz".format(settings["dataset"], digest)


def train_classifier(images: np.ndarray, labels: np.ndarray, epochs: int, batchsize: int, lr: float,
                     holdout: float, seed: int, hidden: int = 64, width: int = 256, progress: bool = True) -> Tuple[SmallClassifier, float]:
    """Train :class:`SmallClassifier` on images in [-1, 1]; return it and its held-out accuracy."""
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(images))
    n_val = int(round(len(images) * holdout))
    val, train = order[:n_val], order[n_val:]
    model = SmallClassifier(images.shape[1], images.shape[2], hidden, int(labels.max()) + 1, width)
    # the cached classifiers' weights: N(0, 1/fan_in) drawn from ``rng`` after the split, in parameter order
    for param in model.params():
        if param.array is not None and param.name == "W":
            fan_in = int(np.prod(param.shape[1:]))
            param.array[...] = rng.normal(0.0, np.sqrt(1.0 / fan_in), param.shape).astype(np.float32)
    optimizer = chainer.optimizers.Adam(alpha=lr)
    optimizer.setup(model)
    for epoch in range(epochs):
        perm = rng.permutation(train)
        for start in range(0, len(perm), batchsize):
            idx = perm[start:start + batchsize]
            _, logits = model(images[idx])
            loss = F.softmax_cross_entropy(logits, labels[idx])
            model.cleargrads()
            loss.backward()
            optimizer.update()
        if progress:
            print("classifier epoch {}/{}: loss {:.3f}".format(epoch + 1, epochs, float(loss.array)))
    accuracy = float("nan")
    if n_val:
        with chainer.using_config("train", False), chainer.no_backprop_mode():
            _, logits = model(images[val])
        accuracy = float((logits.array.argmax(axis=1) == labels[val]).mean())
    return model, accuracy


def load_or_train(progress: bool = True, **overrides) -> Tuple[SmallClassifier, dict]:
    """The cached classifier for ``CLASSIFIER_DEFAULTS`` (+ overrides); trained and cached on first use."""
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
    images, labels = data.load_labeled(settings["dataset"], size=settings["size"], channels=settings["channels"])
    model, accuracy = train_classifier(images, labels, settings["epochs"], settings["batchsize"], settings["lr"],
                                       settings["holdout"], settings["seed"], settings["hidden"], settings["width"],
                                       progress)
    info = dict(settings, holdout_accuracy=accuracy, n_images=int(len(images)))
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
