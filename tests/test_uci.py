"""UCI loaders: Table S3 shapes and class counts, checksum rejection, train-only standardisation, seeds."""
import shutil

import numpy as np
import pytest

from tfp_flows import uci

# (rows, raw features, positives) per data set, from the files' documentation (UCI / shared README).
EXPECTED = {"cancer": (569, 30, 212), "heart": (270, 13, 120), "german": (1000, 20, 300), "sonar": (208, 60, 111)}


@pytest.mark.parametrize("name", uci.DATASETS)
def test_shapes_class_counts_and_split_sizes(name):
    rows, feats, pos = EXPECTED[name]
    x, y, names = uci.load_raw(name)
    assert x.shape == (rows, feats) and len(names) == feats
    assert set(np.unique(y)) == {0, 1} and int(y.sum()) == pos
    s = uci.load_split(name, seed=3)
    n_tr, n_te = uci.TABLE_S3_SPLITS[name]
    assert s.x_train.shape == (n_tr, feats + 1) and s.x_test.shape == (n_te, feats + 1)
    assert s.y_train.shape == (n_tr,) and s.y_test.shape == (n_te,)
    assert int(s.y_train.sum() + s.y_test.sum()) == pos
    np.testing.assert_array_equal(s.x_train[:, 0], 1.0)   # intercept
    np.testing.assert_array_equal(s.x_test[:, 0], 1.0)


def test_german_encodings():
    assert uci.load_raw("german", german_encoding="numeric24")[0].shape == (1000, 24)
    x, _, names = uci.load_raw("german", german_encoding="onehot")
    assert x.shape == (1000, 48) and "attribute1=A12" in names
    codes = uci.load_raw("german")[0]
    # First row of german.data: A11 6 A34 ... -> attribute 1 code index 0, duration 6, history index 4.
    np.testing.assert_array_equal(codes[0, :3], [0, 6, 4])
    with pytest.raises(ValueError, match="german_encoding"):
        uci.load_raw("german", german_encoding="bogus")


def test_standardisation_uses_training_statistics_only():
    x, _, _ = uci.load_raw("heart")
    s = uci.load_split("heart", seed=5)
    tr, te = uci.split_indices(len(x), 135, seed=5)
    np.testing.assert_allclose(s.mean, x[tr].mean(0))
    np.testing.assert_allclose(s.std, x[tr].std(0))
    np.testing.assert_allclose(s.x_train[:, 1:].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.x_train[:, 1:].std(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(s.x_test[:, 1:], (x[te] - x[tr].mean(0)) / x[tr].std(0), rtol=1e-5, atol=1e-5)
    # The test set is NOT centred on its own statistics (it would be if they leaked in).
    assert np.abs(s.x_test[:, 1:].mean(0)).max() > 1e-3
    # Changing test rows must not change the training features.
    x_tr2, _, m2, s2 = uci.standardise(x[tr], x[te] * 100.0 + 7.0)
    np.testing.assert_allclose(x_tr2, (x[tr] - x[tr].mean(0)) / x[tr].std(0))
    np.testing.assert_allclose(m2, s.mean)


def test_splits_are_reproducible_and_disjoint():
    a, b, c = uci.load_split("sonar", 1), uci.load_split("sonar", 1), uci.load_split("sonar", 2)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.y_train, c.y_train) or not np.array_equal(a.x_train, c.x_train)
    tr, te = uci.split_indices(208, 104, seed=1)
    assert len(np.intersect1d(tr, te)) == 0 and len(np.union1d(tr, te)) == 208


def test_corrupted_file_is_rejected(tmp_path):
    for f in uci.SHA256:
        shutil.copy(uci.default_data_dir() / f, tmp_path / f)
    assert uci.load_raw("sonar", data_dir=tmp_path)[0].shape == (208, 60)
    path = tmp_path / "sonar.csv"
    data = bytearray(path.read_bytes())
    data[200] = ord("9") if data[200] != ord("9") else ord("8")
    path.write_bytes(bytes(data))
    with pytest.raises(uci.DatasetChecksumError, match="sonar.csv is corrupted.*sha256"):
        uci.load_split("sonar", 0, data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="data_dir"):
        uci.load_raw("cancer", data_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown data set"):
        uci.load_raw("iris")
