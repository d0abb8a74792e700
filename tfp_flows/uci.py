"""The four UCI binary classification sets of the paper's Table S3 (Cancer, Heart, German, Sonar).

Files live in ``datasets/uci/`` next to the package (see its README.md for provenance and checksums);
each is verified against its sha256 before it is read. :func:`load_split` gives the 50/50 train/test
split of Table S3 for a seed, standardised with the TRAINING statistics only, with an intercept column.

Feature encodings (Table S3's feature counts in brackets):

* cancer (32): the 30 real-valued WDBC features. Table S3's 32 most likely counts the raw WDBC file's
  columns (ID, diagnosis, 30 features); ID and label are not features. Label 1 = malignant.
* heart (13): the 13 Statlog attributes as numbers (categorical ones by their integer codes, as in
  the Statlog/LIBSVM encodings). Label 1 = presence of heart disease.
* german (20): by default (``german_encoding="codes"``) the 20 attributes of the original file, the 13
  categorical ones by the index of their A-code within the attribute (A11..A14 -> 0..3), the 7
  numerical ones as they are: 20 features, Table S3's count. ``"numeric24"`` uses UCI's 24-feature
  numeric file (german.data-numeric, the StatLog encoding with indicator variables); ``"onehot"``
  one-hot encodes the categorical attributes (first level dropped; 48 features). Label 1 = bad credit
  (class 2).
* sonar (60): the 60 band energies. Label 1 = mine (M).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from va_core.download import DownloadError, sha256_of

#: Dataset names in Table S3's order.
DATASETS = ("cancer", "heart", "german", "sonar")

#: sha256 of every file in datasets/uci/ (same as /work/shared/data/README.md lists).
SHA256 = {
    "cancer.csv": "ecf296101214fd4879a4b575347223d56ce0203d01982169263bcac1aae15d6b",
    "heart.csv": "239016be60166f39f9c77850e7cd940750b0d14bca70a2c32bedcd83b4377606",
    "german.data": "b21f3d81db8071257d5ff1deaeba1fd4303b62712e6fcc9715c7a86202cb5871",
    "german.data-numeric": "2752b044394958ab6dd193a0b56ca0f0b3a2d8bc7cb8c008e35a5e84bbec02f8",
    "sonar.csv": "cd96ca799e6d2ffef5b7db2c1f0a3f9b9b4b1ff695246d234ea08d0d9f40f121",
}

#: Table S3: (number of training points, number of test points).
TABLE_S3_SPLITS = {"cancer": (285, 284), "heart": (135, 135), "german": (500, 500), "sonar": (104, 104)}

#: Table S3's feature counts (what the paper states; see the module docstring for ours).
TABLE_S3_FEATURES = {"cancer": 32, "heart": 13, "german": 20, "sonar": 60}

GERMAN_ENCODINGS = ("codes", "numeric24", "onehot")
#: Columns (0-based) of german.data that are categorical A-codes; the other 7 are numbers.
_GERMAN_CATEGORICAL = (0, 2, 3, 5, 6, 8, 9, 11, 13, 14, 16, 18, 19)


class DatasetChecksumError(DownloadError):
    """A dataset file in datasets/uci/ does not have its recorded sha256 (edited or corrupted)."""


def default_data_dir() -> Path:
    """``datasets/uci`` next to the package (an editable install or a source checkout)."""
    import tfp_flows

    return Path(tfp_flows.__file__).resolve().parents[1] / "datasets" / "uci"


def data_path(filename: str, data_dir: str | os.PathLike | None = None, verify: bool = True) -> Path:
    """Path of ``filename`` in ``data_dir`` (default :func:`default_data_dir`), its sha256 checked."""
    if filename not in SHA256:
        raise ValueError("unknown UCI file {!r}; known: {}".format(filename, sorted(SHA256)))
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    path = folder / filename
    if not path.is_file():
        raise FileNotFoundError(
            "UCI data file {} not found. The files ship in the repository's datasets/uci/ folder; use a "
            "source checkout or editable install (pip install -e .), or pass the folder that holds {} "
            "(data_dir=; reproduce/blr.py: --data-dir).".format(path, filename))
    if verify:
        actual = sha256_of(path)
        if actual != SHA256[filename]:
            raise DatasetChecksumError(
                "UCI data file {} is corrupted or was edited: sha256 {} != expected {}. Restore it (git "
                "checkout datasets/uci/{}, or re-extract it from the source named in datasets/uci/README.md)."
                .format(path, actual, SHA256[filename], filename))
    return path


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    header = path.read_text().splitlines()[0].split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    if header[-1] != "label":
        raise ValueError("{}: last column must be 'label', got {!r}".format(path, header[-1]))
    return table[:, :-1], table[:, -1].astype(np.int64), header[:-1]


def _german_codes(path: Path, onehot: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    columns = list(zip(*rows))
    if len(columns) != 21:
        raise ValueError("{}: expected 20 attributes + class per row, got {}".format(path, len(columns)))
    feats, names = [], []
    for a, col in enumerate(columns[:20]):
        name = "attribute{}".format(a + 1)
        if a in _GERMAN_CATEGORICAL:
            levels = sorted(set(col), key=lambda c: int(c[1:]))   # A-codes in numeric order
            index = np.array([levels.index(c) for c in col], dtype=np.float64)
            if onehot:
                for k, level in enumerate(levels[1:], start=1):
                    feats.append((index == k).astype(np.float64))
                    names.append("{}={}".format(name, level))
            else:
                feats.append(index)
                names.append(name)
        else:
            feats.append(np.array(col, dtype=np.float64))
            names.append(name)
    y = (np.array(columns[20], dtype=np.int64) == 2).astype(np.int64)
    return np.stack(feats, axis=1), y, names


def _german_numeric(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    table = np.loadtxt(path, dtype=np.float64)
    if table.shape[1] != 25:
        raise ValueError("{}: expected 24 features + class per row, got {}".format(path, table.shape[1]))
    y = (table[:, -1].astype(np.int64) == 2).astype(np.int64)
    return table[:, :-1], y, ["numeric{}".format(i + 1) for i in range(24)]


def load_raw(name: str, data_dir: str | os.PathLike | None = None, german_encoding: str = "codes"
             ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All rows of one Table S3 data set: features (N, D) float64 (not standardised), labels (N,) in {0, 1},
    feature names. See the module docstring for each set's encoding."""
    if name not in DATASETS:
        raise ValueError("unknown data set {!r}; choose one of {}".format(name, ", ".join(DATASETS)))
    if name == "german":
        if german_encoding not in GERMAN_ENCODINGS:
            raise ValueError("german_encoding must be one of {}, got {!r}".format(GERMAN_ENCODINGS, german_encoding))
        if german_encoding == "numeric24":
            return _german_numeric(data_path("german.data-numeric", data_dir))
        return _german_codes(data_path("german.data", data_dir), onehot=german_encoding == "onehot")
    return _read_csv(data_path(name + ".csv", data_dir))


@dataclass(frozen=True)
class Split:
    """One train/test split. ``x_*`` are standardised with the training mean/std and start with an
    intercept column of ones; ``mean``/``std`` are those training statistics (for the D raw features)."""

    name: str
    seed: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    feature_names: list[str] = field(default_factory=list)

    @property
    def dim(self) -> int:
        """Number of regression weights (features + intercept)."""
        return self.x_train.shape[1]


def split_indices(n: int, n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random permutation of range(n) cut into ``n_train`` training and ``n - n_train`` test indices."""
    if not 0 < n_train < n:
        raise ValueError("n_train must be in (0, {}), got {}".format(n, n_train))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre and scale both sets with the training mean and std only (a constant training column gets
    std 1). Returns (x_train, x_test, mean, std)."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (x_train - mean) / std, (x_test - mean) / std, mean, std


def _with_intercept(x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.ones((len(x), 1)), x], axis=1)


def load_split(name: str, seed: int, data_dir: str | os.PathLike | None = None,
               german_encoding: str = "codes", dtype: type = np.float32) -> Split:
    """Table S3's 50/50 split of data set ``name`` for ``seed`` (reproducible: same seed, same split).

    Sizes: cancer 285/284, heart 135/135, german 500/500, sonar 104/104 (train/test).
    """
    x, y, names = load_raw(name, data_dir, german_encoding)
    n_train, n_test = TABLE_S3_SPLITS[name]
    if n_train + n_test != len(x):
        raise ValueError("{}: {} rows, Table S3 needs {} + {}".format(name, len(x), n_train, n_test))
    tr, te = split_indices(len(x), n_train, seed)
    x_tr, x_te, mean, std = standardise(x[tr], x[te])
    return Split(name=name, seed=seed, x_train=_with_intercept(x_tr).astype(dtype), y_train=y[tr],
                 x_test=_with_intercept(x_te).astype(dtype), y_test=y[te], mean=mean, std=std,
                 feature_names=["intercept"] + list(names))


__all__ = ["DATASETS", "SHA256", "TABLE_S3_SPLITS", "TABLE_S3_FEATURES", "GERMAN_ENCODINGS",
           "DatasetChecksumError", "default_data_dir", "data_path", "load_raw", "Split", "split_indices",
           "standardise", "load_split"]
