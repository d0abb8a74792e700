"""Image data loaders (chainer_va.data) on small files built here in the real formats, plus the bundled
mnist5k and the datasets/ scripts."""
import csv
import dataclasses
import gzip
import hashlib
import io
import pickle
import runpy
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from chainer_va import data
from va_core import download
from va_core.download import DownloadError

REPO = Path(__file__).resolve().parents[1]
UNREACHABLE = "http://127.0.0.1:9/"


def scaled(v):
    return np.float32(v) / np.float32(127.5) - np.float32(1.0)


# ---------------------------------------------------------------------------------------------- idx
def idx_bytes(array: np.ndarray) -> bytes:
    """The idx layout written by hand: 0, 0, type 0x08, ndim, big-endian dims, values."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes()


def make_idx_folder(folder: Path, monkeypatch, name="fashion-mnist", split="train", n=5, compress=True):
    """Write images/labels idx files (gz or plain) with known pixels; pin their content digests."""
    images = np.full((n, 28, 28), 100, dtype=np.uint8)
    images[:, 0, 0] = 255      # top-left pixel white
    images[:, 27, 27] = 0      # bottom-right pixel black
    images[:, 10, 3] = np.arange(n) * 50
    labels = (np.arange(n) * 3) % 10
    folder.mkdir(parents=True, exist_ok=True)
    remotes = []
    for remote, array in zip(data.IDX_FILES[name][split], (images, labels)):
        raw = idx_bytes(array)
        if compress:
            (folder / remote.filename).write_bytes(gzip.compress(raw))
        else:
            (folder / remote.filename[:-3]).write_bytes(raw)
        remotes.append(dataclasses.replace(remote, content_sha256=hashlib.sha256(raw).hexdigest()))
    monkeypatch.setitem(data.IDX_FILES[name], split, tuple(remotes))
    return images, labels


def test_idx_gz_padding_scaling_and_channel_repeat(tmp_path, monkeypatch):
    images, labels = make_idx_folder(tmp_path / "fm", monkeypatch)
    x, y = data.load_labeled("fashion-mnist", data_dir=tmp_path / "fm")
    assert x.shape == (5, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(y, labels)
    # padding: 2 pixels of background (0 -> -1) on every side of the 28x28 digit
    assert np.all(x[:, :, :2, :] == -1.0) and np.all(x[:, :, -2:, :] == -1.0)
    assert np.all(x[:, :, :, :2] == -1.0) and np.all(x[:, :, :, -2:] == -1.0)
    assert np.all(x[:, :, 2, 2] == 1.0)            # pixel (0, 0) = 255 lands at (2, 2)
    assert np.all(x[:, :, 29, 29] == -1.0)         # pixel (27, 27) = 0
    assert np.all(x[:, :, 3, 3] == scaled(100))    # 100 -> -0.2156...
    np.testing.assert_array_equal(x[:, 0, 12, 5], scaled(np.arange(5) * 50))
    np.testing.assert_array_equal(x[:, 0], x[:, 1])   # grey repeated into 3 identical channels
    np.testing.assert_array_equal(x[:, 0], x[:, 2])
    grey = data.load_images("fashion-mnist", data_dir=tmp_path / "fm", channels=1, size=28, limit=2)
    assert grey.shape == (2, 1, 28, 28)
    np.testing.assert_array_equal(grey[:, 0], scaled(images[:2]))


def test_idx_uncompressed_root_layout_and_resize_mode(tmp_path, monkeypatch):
    # a root folder with one sub-folder per data set, uncompressed idx files
    images, _ = make_idx_folder(tmp_path / "mnist", monkeypatch, name="mnist", split="test", compress=False)
    x = data.load_images("mnist", data_dir=tmp_path, split="test", size=56, resize_mode="resize")
    assert x.shape == (5, 3, 56, 56)
    # bilinear 2x upscale keeps the flat 100 region at 100 exactly (well away from the marked pixels)
    assert np.all(x[:, :, 30:50, 30:50] == scaled(100))
    assert x.min() >= -1.0 and x.max() <= 1.0
    with pytest.raises(ValueError, match="resize_mode='resize'"):
        data.load_images("mnist", data_dir=tmp_path, split="test", size=16)


def test_idx_corrupted_files_are_rejected_with_the_fix(tmp_path, monkeypatch):
    make_idx_folder(tmp_path, monkeypatch)
    image_file = tmp_path / data.IDX_FILES["fashion-mnist"]["train"][0].filename
    raw = bytearray(gzip.decompress(image_file.read_bytes()))
    raw[500] ^= 0xFF                                   # one flipped pixel: content digest differs
    image_file.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(data.DataError, match="corrupted") as err:
        data.load_images("fashion-mnist", data_dir=tmp_path)
    assert str(image_file) in str(err.value) and "download it again" in str(err.value)
    image_file.write_bytes(image_file.read_bytes()[:100])  # truncated gzip
    with pytest.raises(data.DataError, match="download it again"):
        data.load_images("fashion-mnist", data_dir=tmp_path)


def test_parse_idx_rejects_a_wrong_length():
    raw = idx_bytes(np.zeros((2, 3, 3), np.uint8))
    assert data.parse_idx(raw).shape == (2, 3, 3)
    with pytest.raises(ValueError, match="header says 18 values"):
        data.parse_idx(raw[:-1])


def test_idx_files_directly_in_the_cache_and_the_shared_names_hint(tmp_path, monkeypatch):
    images, _ = make_idx_folder(tmp_path, monkeypatch)             # fashion-mnist files directly in ROOT
    monkeypatch.setenv("CHAINER_VA_DATA", str(tmp_path))
    np.testing.assert_array_equal(data.load_images("fashion-mnist", channels=1, size=28)[:, 0], scaled(images))
    # the same file names for mnist: found, rejected by digest, and the message says why and what to do
    with pytest.raises(data.DataError, match="same file names") as err:
        data.load_images("mnist")
    assert "mnist/ or fashion-mnist/ sub-folder" in str(err.value)


def test_idx_missing_and_offline_messages(tmp_path, monkeypatch):
    with pytest.raises(data.DataError, match="not found") as err:
        data.load_images("mnist", data_dir=tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(err.value) and "datasets/fetch.py" in str(err.value)
    monkeypatch.setenv("CHAINER_VA_DATA", str(tmp_path / "cache"))
    remotes = tuple(dataclasses.replace(r, urls=(UNREACHABLE + r.filename,))
                    for r in data.IDX_FILES["mnist"]["train"])
    monkeypatch.setitem(data.IDX_FILES["mnist"], "train", remotes)
    with pytest.raises(DownloadError, match="place it at") as err:
        data.load_images("mnist")
    assert str(tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz") in str(err.value)


# ---------------------------------------------------------------------------------------------- CIFAR
def _py2_str(b: bytes) -> bytes:
    """A Python 2 ``str`` in a protocol-2 pickle (SHORT_BINSTRING or BINSTRING)."""
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)


def _py2_int(v: int) -> bytes:
    return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)


def cifar_batch_pickle(data_u8: np.ndarray, labels: list[int], tag: bytes) -> bytes:
    """A batch written opcode by opcode as Python 2's cPickle (protocol 2) wrote the official batches:
    a dict of py2 ``str`` keys; ``data`` rebuilt by numpy.core.multiarray._reconstruct with the
    version-1 ndarray state (1, shape, dtype('u1'), fortran=False, raw bytes); ``labels`` a list."""
    s, i = _py2_str, _py2_int
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + i(0) + b"\x85" + s(b"b") + b"\x87R"
             + b"(" + i(1) + i(data_u8.shape[0]) + i(data_u8.shape[1]) + b"\x86"
             + b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R"
             + b"(" + i(3) + s(b"|") + b"NNN" + i(-1) + i(-1) + i(0) + b"tb"
             + b"\x89" + s(data_u8.tobytes()) + b"tb")
    names = b"](" + b"".join(s(b"img_%d.png" % k) for k in range(len(labels))) + b"e"
    return (b"\x80\x02}(" + s(b"batch_label") + s(tag) + s(b"labels") + b"](" + b"".join(map(i, labels))
            + b"e" + s(b"data") + array + s(b"filenames") + names + b"u.")


def make_cifar_archive(path: Path, per_batch=4, members_override=None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    all_data, all_labels = [], []
    members = {"cifar-10-batches-py/batches.meta": pickle.dumps({b"label_names": [b"airplane"]}, 2),
               "cifar-10-batches-py/readme.html": b"<html></html>"}
    for i in range(1, 6):
        d = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        lab = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        members["cifar-10-batches-py/data_batch_%d" % i] = cifar_batch_pickle(d, lab, b"training batch")
        all_data.append(d)
        all_labels += lab
    test = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    members["cifar-10-batches-py/test_batch"] = cifar_batch_pickle(test, [1, 2, 3], b"testing batch")
    members.update(members_override or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return np.concatenate(all_data), np.asarray(all_labels)


def pin_cifar(monkeypatch, path: Path, urls=None):
    remote = dataclasses.replace(data.CIFAR10_ARCHIVE, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                                 **({"urls": urls} if urls else {}))
    monkeypatch.setattr(data, "CIFAR10_ARCHIVE", remote)


def test_cifar10_archive_layout_values_and_labels(tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-python.tar.gz"
    rows, labels = make_cifar_archive(archive)
    pin_cifar(monkeypatch, archive)
    x, y = data.load_labeled("cifar10", data_dir=tmp_path)  # the folder that holds the archive
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(y, labels)
    # row layout: 1024 red values, then green, then blue, each 32x32 row-major
    assert x[7, 0, 0, 0] == scaled(rows[7, 0])
    assert x[7, 1, 5, 7] == scaled(rows[7, 1024 + 5 * 32 + 7])
    assert x[13, 2, 31, 31] == scaled(rows[13, 3071])
    np.testing.assert_array_equal(x, scaled(rows.reshape(20, 3, 32, 32)))
    # the archive path itself, a limit spanning two batches, the test split, grey conversion
    x6 = data.load_images("cifar10", data_dir=archive, limit=6)
    np.testing.assert_array_equal(x6, x[:6])
    xt, yt = data.load_labeled("cifar10", data_dir=archive, split="test")
    assert xt.shape == (3, 3, 32, 32) and list(yt) == [1, 2, 3]
    grey = data.load_images("cifar10", data_dir=archive, channels=1, limit=1)
    r, g, b = (float(rows[0, c * 1024]) for c in range(3))
    assert grey[0, 0, 0, 0] == scaled(np.rint(0.299 * r + 0.587 * g + 0.114 * b))
    big = data.load_images("cifar10", data_dir=archive, size=64, limit=2)
    assert big.shape == (2, 3, 64, 64) and -1.0 <= big.min() and big.max() <= 1.0


def test_cifar10_extracted_folder(tmp_path):
    archive = tmp_path / "a.tar.gz"
    rows, _ = make_cifar_archive(archive)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    # an extracted folder has no checksum: one with other than 50000 training images is not the official set
    with pytest.warns(UserWarning, match="holds 20 train images where the official archive has 50000"):
        x = data.load_images("cifar10", data_dir=tmp_path / "x")
    np.testing.assert_array_equal(x, scaled(rows.reshape(20, 3, 32, 32)))


def test_cifar10_refuses_code_in_a_pickle(tmp_path, monkeypatch):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    archive = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_archive(archive, members_override={
        "cifar-10-batches-py/data_batch_1": pickle.dumps({b"data": Evil()}, protocol=2)})
    pin_cifar(monkeypatch, archive)
    with pytest.raises(data.DataError, match=r"refusing to load (__builtin__|builtins)\.print"):
        data.load_images("cifar10", data_dir=archive)


def test_cifar10_checksum_and_offline_messages(tmp_path, monkeypatch):
    archive = tmp_path / "cifar-10-python.tar.gz"
    make_cifar_archive(archive)
    pin_cifar(monkeypatch, archive, urls=(UNREACHABLE + "cifar-10-python.tar.gz",))
    payload = bytearray(archive.read_bytes())
    payload[-10] ^= 0xFF
    archive.write_bytes(bytes(payload))
    with pytest.raises(data.DataError, match="corrupted") as err:
        data.load_images("cifar10", data_dir=tmp_path)
    assert str(archive) in str(err.value) and "download it again" in str(err.value)
    monkeypatch.setenv("CHAINER_VA_DATA", str(tmp_path / "cache"))
    with pytest.raises(DownloadError, match="offline") as err:
        data.load_images("cifar10")
    assert str(tmp_path / "cache" / "cifar10" / "cifar-10-python.tar.gz") in str(err.value)
    with pytest.raises(data.DataError, match="cifar-10-python.tar.gz"):
        data.load_images("cifar10", data_dir=tmp_path / "empty")


@pytest.mark.parametrize("sub", ["cifar10", ""])
@pytest.mark.parametrize("via", ["env", "data_dir"])
def test_cifar10_same_layouts_for_the_cache_and_data_dir(tmp_path, monkeypatch, sub, via):
    """$CHAINER_VA_DATA and data_dir both accept the archive in ROOT/cifar10/ or directly in ROOT."""
    (tmp_path / sub).mkdir(exist_ok=True)
    archive = tmp_path / sub / "cifar-10-python.tar.gz"
    rows, _ = make_cifar_archive(archive)
    pin_cifar(monkeypatch, archive, urls=(UNREACHABLE + "c.tar.gz",))
    monkeypatch.setenv("CHAINER_VA_DATA", str(tmp_path) if via == "env" else str(tmp_path / "elsewhere"))
    x = data.load_images("cifar10", data_dir=tmp_path if via == "data_dir" else None, limit=2)
    np.testing.assert_array_equal(x, scaled(rows[:2].reshape(2, 3, 32, 32)))


def test_extracted_cifar10_and_celeba_in_the_cache(tmp_path, monkeypatch):
    archive = tmp_path / "a.tar.gz"
    rows, _ = make_cifar_archive(archive)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "cache", filter="data")         # cache/cifar-10-batches-py/
    make_celeba(tmp_path / "cache" / "img_align_celeba", n=1)
    monkeypatch.setenv("CHAINER_VA_DATA", str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="holds 20 train images"):
        np.testing.assert_array_equal(data.load_images("cifar10"), scaled(rows.reshape(20, 3, 32, 32)))
    assert data.load_images("celeba", size=8).shape == (1, 3, 8, 8)
    # the JPEGs straight in the cache's celeba/ folder (found there before the one rule) still load
    monkeypatch.setenv("CHAINER_VA_DATA", str(tmp_path / "cache2"))
    make_celeba(tmp_path / "cache2" / "celeba", n=2)
    assert data.load_images("celeba", size=8).shape == (2, 3, 8, 8)


def test_offline_message_names_exactly_the_accepted_places(tmp_path, monkeypatch):
    archive = tmp_path / "served.tar.gz"
    make_cifar_archive(archive)
    pin_cifar(monkeypatch, archive, urls=(UNREACHABLE + "c.tar.gz",))
    cache = tmp_path / "cache"
    monkeypatch.setenv("CHAINER_VA_DATA", str(cache))
    with pytest.raises(DownloadError) as err:
        data.load_images("cifar10")
    assert ("place it at {} or {} (or set $CHAINER_VA_DATA to a folder that holds cifar-10-python.tar.gz "
            "directly or in a cifar10/ sub-folder)".format(cache / "cifar10" / "cifar-10-python.tar.gz",
                                                          cache / "cifar-10-python.tar.gz") in str(err.value))
    # following the message works: the archive directly in $CHAINER_VA_DATA
    cache.mkdir(exist_ok=True)
    (cache / "cifar-10-python.tar.gz").write_bytes(archive.read_bytes())
    assert data.load_images("cifar10", limit=1).shape == (1, 3, 32, 32)
    # with a data_dir, $CHAINER_VA_DATA plays no part, and the message does not mention it
    with pytest.raises(DownloadError) as err:
        data.fetch_dataset("cifar10", tmp_path / "d")
    assert "place it at {} or {}.".format(tmp_path / "d" / "cifar10" / "cifar-10-python.tar.gz",
                                          tmp_path / "d" / "cifar-10-python.tar.gz") in str(err.value)
    assert "CHAINER_VA_DATA" not in str(err.value)


def test_download_fetch_mentions_the_environment_only_when_it_applies(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAINER_VA_DATA", str(tmp_path / "cache"))
    with pytest.raises(DownloadError, match=r"\$CHAINER_VA_DATA to a folder that holds x.bin"):
        download.fetch(UNREACHABLE + "x.bin", "x.bin", None)
    with pytest.raises(DownloadError) as err:
        download.fetch(UNREACHABLE + "x.bin", "x.bin", None, directory=tmp_path / "other")
    assert str(tmp_path / "other" / "x.bin") in str(err.value) and "CHAINER_VA_DATA" not in str(err.value)


# ---------------------------------------------------------------------------------------------- CelebA
RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 200, 30)


def make_celeba(folder: Path, n=3):
    """178x218 JPEGs: green outside the 108 px centre box, inside it red left half / blue right half."""
    from PIL import Image

    folder.mkdir(parents=True)
    left, top, right, bottom = data.celeba_crop_box(108)
    for i in range(n):
        img = np.empty((218, 178, 3), np.uint8)
        img[:] = GREEN
        img[top:bottom, left:left + 54] = RED
        img[top:bottom, left + 54:right] = BLUE
        Image.fromarray(img).save(folder / "{:06d}.jpg".format(i + 1), quality=100, subsampling=0)


def test_celeba_crop_box_and_resize(tmp_path):
    assert data.celeba_crop_box(108) == (35, 55, 143, 163)
    assert data.celeba_crop_box(140) == (19, 39, 159, 179)
    make_celeba(tmp_path / "img_align_celeba")
    x = data.load_images("celeba", data_dir=tmp_path)
    assert x.shape == (3, 3, 128, 128) and x.dtype == np.float32   # default size 128 (Table S2)
    tol = 6 / 127.5                                                # JPEG at quality 100
    # left half of the crop (red) fills output columns 0-63, right half (blue) columns 64-127
    assert np.abs(x[:, :, 4:-4, 2:60] - scaled(np.array(RED))[None, :, None, None]).max() <= tol
    assert np.abs(x[:, :, 4:-4, 68:-2] - scaled(np.array(BLUE))[None, :, None, None]).max() <= tol
    # no green (outside the crop box) in the border rows or columns
    assert np.all(np.abs(x[:, 1, [0, -1], :] - scaled(GREEN[1])) > 0.5)
    small = data.load_images("celeba", data_dir=tmp_path / "img_align_celeba", size=32, channels=1, limit=2)
    assert small.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="no class labels"):
        data.load_labeled("celeba", data_dir=tmp_path)


def test_celeba_messages(tmp_path):
    from PIL import Image

    with pytest.raises(data.DataError, match="Google Drive") as err:
        data.load_images("celeba", data_dir=tmp_path)
    assert data.CELEBA_PAGE in str(err.value) and str(tmp_path / "img_align_celeba") in str(err.value)
    (tmp_path / "img_align_celeba").mkdir()
    Image.new("RGB", (250, 250)).save(tmp_path / "img_align_celeba" / "000001.jpg")
    with pytest.raises(data.DataError, match="178x218"):
        data.load_images("celeba", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------- mnist5k
def test_mnist5k_bundled_5000_images_split_4500_train_500_test_by_digit():
    x, y = data.load_labeled("mnist5k")
    assert x.shape == (4500, 3, 32, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 450))
    assert x.min() == -1.0 and x.max() == 1.0
    x_test, y_test = data.load_labeled("mnist5k", split="test")
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), np.full(10, 50))
    # read independently with the csv module: pixels then the label in the last column; the file holds
    # 500 of each digit in order, so file row 123 is train image 123, and row 450 (the 451st 0) is test image 0
    with gzip.open(data.datasets_dir() / data.MNIST5K_FILE, "rt") as f:
        rows = [[int(v) for v in r] for i, r in zip(range(451), csv.reader(f))]
    assert y[123] == rows[123][-1] and y_test[0] == rows[450][-1] == 0
    np.testing.assert_array_equal(x[123, 1, 2:30, 2:30], scaled(np.array(rows[123][:-1]).reshape(28, 28)))
    np.testing.assert_array_equal(x_test[0, 1, 2:30, 2:30], scaled(np.array(rows[450][:-1]).reshape(28, 28)))
    assert np.all(x[:, :, :2] == -1.0)
    # disjoint: no test image equals a train image of its digit (the file holds no duplicates)
    flat_train = {img.tobytes() for img in x[:, 0]}
    assert not any(img.tobytes() in flat_train for img in x_test[:, 0])


def test_mnist5k_limit_takes_every_digit_in_turn_and_the_unlimited_order_is_unchanged():
    """The file is sorted by class (500 0s first): a limit takes the first images of each digit in turn,
    not the first N rows (which were only 0s and 1s for limit=1000)."""
    x_all, y_all = data.load_labeled("mnist5k", channels=1)
    assert list(y_all[:450]) == [0] * 450 and list(y_all[-450:]) == [9] * 450  # file order kept
    x, y = data.load_labeled("mnist5k", channels=1, limit=1000)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 100))
    np.testing.assert_array_equal(y[:20], list(range(10)) * 2)  # classes interleaved
    # the 100 images of each digit are its first 100 in the file, so the same limit gives the same images
    for digit in range(10):
        np.testing.assert_array_equal(x[y == digit], x_all[y_all == digit][:100])
    np.testing.assert_array_equal(data.load_images("mnist5k", channels=1, limit=1000), x)
    few = data.load_labeled("mnist5k", channels=1, limit=15)[1]
    np.testing.assert_array_equal(np.bincount(few, minlength=10), [2] * 5 + [1] * 5)
    np.testing.assert_array_equal(data.load_images("mnist5k", channels=1, limit=4500), x_all)


def test_class_balanced_order_does_not_depend_on_where_the_classes_sit_in_the_file():
    labels = np.repeat([3, 0, 1], [2, 3, 1])  # classes in blocks, not in label order
    order = data._class_balanced_order(labels)
    np.testing.assert_array_equal(labels[order], [0, 1, 3, 0, 3, 0])
    np.testing.assert_array_equal(order, [2, 5, 0, 3, 1, 4])  # within a class: file order
    shuffled = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 7))
    assert all(np.ptp(np.bincount(shuffled[data._class_balanced_order(shuffled)[:n]], minlength=10)) <= 1
               for n in range(1, 71))


def test_mnist5k_corrupted_copy_is_rejected(tmp_path):
    bundled = data.datasets_dir() / data.MNIST5K_FILE
    payload = bytearray(bundled.read_bytes())
    payload[1000] ^= 0x01
    (tmp_path / "mnist_5k.csv.gz").write_bytes(bytes(payload))
    with pytest.raises(data.DataError, match="corrupted") as err:
        data.load_images("mnist5k", data_dir=tmp_path)
    # the user's copy is bad, the bundled one is fine: point at it, not at git
    assert str(tmp_path / "mnist_5k.csv.gz") in str(err.value) and str(bundled) in str(err.value)
    assert "git checkout" not in str(err.value)


@pytest.mark.parametrize("sub", ["mnist5k", ""])
def test_mnist5k_data_dir_uses_the_documented_layout(tmp_path, sub):
    """data_dir=DIR reads DIR/mnist5k/mnist_5k.csv.gz or DIR/mnist_5k.csv.gz, like every data set; so
    data_dir=datasets/images finds the bundled copy."""
    (tmp_path / sub).mkdir(exist_ok=True)
    (tmp_path / sub / "mnist_5k.csv.gz").write_bytes((data.datasets_dir() / data.MNIST5K_FILE).read_bytes())
    assert data.load_images("mnist5k", data_dir=tmp_path, limit=3).shape == (3, 3, 32, 32)
    assert data.load_images("mnist5k", data_dir=data.datasets_dir() / "images", limit=1).shape == (1, 3, 32, 32)


def test_mnist5k_not_found_messages(tmp_path, monkeypatch):
    with pytest.raises(data.DataError, match="not found") as err:
        data.load_images("mnist5k", data_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "mnist5k" / "mnist_5k.csv.gz") in message and str(tmp_path / "mnist_5k.csv.gz") in message
    assert str(data.datasets_dir() / data.MNIST5K_FILE) in message and "git checkout" not in message
    # only when the bundled copy itself is missing does the message send the user to git
    monkeypatch.setattr(data, "datasets_dir", lambda: tmp_path / "repo" / "datasets")
    for data_dir in (None, tmp_path):
        with pytest.raises(data.DataError, match="git checkout -- datasets/images/mnist5k/mnist_5k.csv.gz"):
            data.load_images("mnist5k", data_dir=data_dir)


def test_unknown_name_and_bad_arguments():
    with pytest.raises(ValueError, match="cifar10, celeba, mnist, fashion-mnist, mnist5k"):
        data.load_images("imagenet")
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        data.load_images("mnist5k", channels=2)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        data.load_images("mnist5k", split="val")


# ---------------------------------------------------------------------------------------------- scripts
def test_datasets_folder_is_not_a_package_and_sums_agree():
    assert not (REPO / "datasets" / "__init__.py").exists()
    verify = runpy.run_path(str(REPO / "datasets" / "verify.py"))
    listed = verify["read_checksums"](REPO / "datasets" / "SHA256SUMS")
    assert listed[data.MNIST5K_FILE] == data.MNIST5K_SHA256


def test_verify_script_detects_a_corrupted_bundled_file(tmp_path, capsys):
    verify = runpy.run_path(str(REPO / "datasets" / "verify.py"))
    assert verify["main"]([]) == 0
    assert verify["main"](["--strict"]) == 0  # every bundled data file is listed, the UCI sets included
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.bin").write_bytes(b"abc")
    (tmp_path / "extra.csv").write_bytes(b"x")
    (tmp_path / "SHA256SUMS").write_text("{}  images/a.bin\n".format(hashlib.sha256(b"abc").hexdigest()))
    assert verify["main"](["--root", str(tmp_path)]) == 0
    assert verify["main"](["--root", str(tmp_path), "--strict"]) == 1       # extra.csv unlisted
    (tmp_path / "images" / "a.bin").write_bytes(b"abd")
    assert verify["main"](["--root", str(tmp_path)]) == 1
    assert "images/a.bin: sha256" in capsys.readouterr().err


def test_fetch_script(tmp_path, monkeypatch, capsys):
    fetch = runpy.run_path(str(REPO / "datasets" / "fetch.py"))
    assert fetch["main"](["mnist5k"]) == 0
    assert data.MNIST5K_SHA256 in capsys.readouterr().out
    assert fetch["main"](["celeba", "--data-dir", str(tmp_path)]) == 1
    assert "Google Drive" in capsys.readouterr().err
    make_idx_folder(tmp_path / "fashion-mnist", monkeypatch)
    assert fetch["main"](["fashion-mnist", "--data-dir", str(tmp_path), "--split", "train"]) == 0


def test_download_to_cache_then_load_and_fetch_script_offline(tmp_path, monkeypatch, capsys):
    """Round trip through a local HTTP server: download, sha256 check, load from the cache."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    rows, _ = make_cifar_archive(served / "cifar-10-python.tar.gz")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = "http://127.0.0.1:{}/cifar-10-python.tar.gz".format(server.server_address[1])
        pin_cifar(monkeypatch, served / "cifar-10-python.tar.gz", urls=(url,))
        monkeypatch.setenv("CHAINER_VA_DATA", str(tmp_path / "cache"))
        x = data.load_images("cifar10", limit=4)
        assert (tmp_path / "cache" / "cifar10" / "cifar-10-python.tar.gz").is_file()
        np.testing.assert_array_equal(x, scaled(rows[:4].reshape(4, 3, 32, 32)))
    finally:
        server.shutdown()
        server.server_close()
    fetch = runpy.run_path(str(REPO / "datasets" / "fetch.py"))
    pin_cifar(monkeypatch, served / "cifar-10-python.tar.gz", urls=(UNREACHABLE + "c.tar.gz",))
    assert fetch["main"](["cifar10", "--data-dir", str(tmp_path / "d")]) == 1
    assert str(tmp_path / "d" / "cifar10" / "cifar-10-python.tar.gz") in capsys.readouterr().err
