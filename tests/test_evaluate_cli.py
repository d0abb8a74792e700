"""The scoring command lines: ``python -m chainer_va.evaluate`` and ``python -m chainer_va.metrics.convert``."""
import json
import shutil
import tarfile

import numpy as np
import pytest

from chainer_va import evaluate, train
from va_core import download, runinfo
from chainer_va.metrics import classifier, convert, evaluation


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    images = folder / "images.npy"
    np.save(images, np.random.RandomState(0).uniform(-1, 1, (8, 1, 32, 32)).astype(np.float32))
    train.main(["--dataset", str(images), "--channels", "1", "--width", "0.0625", "--batchsize", "4",
                "--iterations", "1", "--out", str(folder / "run"), "--progress-interval", "1000"])
    return folder / "run"


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the tiny run, recorded as trained on ``mnist5k`` (so that FID has a reference set)."""
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    set_dataset(copy, "mnist5k")
    return copy


def set_dataset(run_dir, name):
    record = runinfo.read_run_config(run_dir)
    record["config"]["dataset"] = name
    (run_dir / "config.json").write_text(json.dumps(record))


@pytest.mark.parametrize("flags, message", [
    (["--n-is", "0"], "error: --n-is must be at least --splits (10) samples, got 0"),
    (["--n-is", "5"], "error: --n-is must be at least --splits (10) samples, got 5"),
    (["--n-fid", "1"], "error: --n-fid must be at least 2 samples (FID needs their covariance), got 1"),
    (["--splits", "0"], "error: --splits must be a positive integer, got 0"),
    (["--batchsize", "0"], "error: --batchsize must be a positive integer, got 0"),
    (["--scorer", "classifier", "--weights", "w.npz"],
     "error: --weights w.npz is the Inception port's weights, which --scorer classifier does not use: drop "
     "--weights, or pass --scorer inception"),
    (["--weights", "missing.npz"], "error: --weights missing.npz: no such file; give the .npz written by"),
])
def test_bad_settings_are_one_line_errors_with_exit_status_2(run, capsys, flags, message):
    assert evaluate.main([str(run), "--quiet"] + flags) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert "status 2" in evaluate.__doc__  # what main does
    assert not (run / evaluate.METRICS_FILE).exists()


def test_a_folder_without_a_run_is_a_usage_error(tmp_path, capsys):
    assert evaluate.main([str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err == ("error: {} has no config.json: not a training run folder; pass the --out "
                                       "folder of a chainer_va.train run\n".format(tmp_path))


def test_offline_inception_error_names_the_classifier_scorer(run, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise download.DownloadError("could not download the Inception weights (offline)")
    monkeypatch.setattr(convert, "inception_weights", offline)
    assert evaluate.main([str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not download the Inception weights (offline)")
    assert "an MNIST-like run can be scored with --scorer classifier" in err


@pytest.fixture
def scored_without_work(monkeypatch):
    """The classifier scorer with an untrained network and stand-in statistics and scores (no sampling)."""
    monkeypatch.setattr(classifier, "load_or_train", lambda **kwargs: (classifier.SmallClassifier(), {}))
    monkeypatch.setattr(evaluation, "reference_statistics", lambda *args, **kwargs: None)
    monkeypatch.setattr(evaluation, "evaluate_generator", lambda *args, **kwargs: {
        "IS": 1.0, "IS_std": 0.0, "FID": 9.0, "is_extractor": "stand-in"})


def test_classifier_scorer_warns_on_a_run_of_other_images(run, capsys, scored_without_work):
    assert evaluate.main([str(run), "--quiet", "--scorer", "classifier"]) == 0
    assert "warning" not in capsys.readouterr().err  # an MNIST-5k run: the classifier's own images
    set_dataset(run, "fashion-mnist")
    assert evaluate.main([str(run), "--quiet", "--scorer", "classifier", "--force"]) == 0
    err = capsys.readouterr().err
    assert ("warning: the classifier scorer is trained on mnist5k (MNIST digits), not on the run's data set "
            "fashion-mnist") in err and "score this run with --scorer inception" in err
    assert classifier.domain_warning("mnist") is None and classifier.domain_warning("mnist5k") is None
    assert classifier.domain_warning("fashion-mnist", {"dataset": "fashion-mnist"}) is None


def test_fid_from_fewer_samples_than_feature_dimensions_warns(run, capsys, scored_without_work):
    assert evaluate.main([str(run), "--quiet", "--scorer", "classifier", "--n-is", "10", "--n-fid", "64"]) == 0
    assert ("warning: FID from 64 samples of 128-d features: fewer samples than dimensions make their covariance "
            "singular") in capsys.readouterr().err
    assert evaluate.sample_warnings("inception", 2048, "cifar10")[0].startswith("FID from 2048 samples of 2048-d")
    assert evaluate.sample_warnings("inception", 2049, "cifar10") == []
    assert evaluate.sample_warnings("classifier", 129, "mnist5k") == []


def test_classifier_docstring_names_its_feature_dimension():
    hidden = classifier.CLASSIFIER_DEFAULTS["hidden"]
    assert "{}-d hidden features".format(hidden) in classifier.__doc__
    assert classifier.SmallClassifier().fc.out_size == hidden


def _convert_error(capsys, source, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        convert.main([str(source), str(tmp_path / "out.npz")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert not (tmp_path / "out.npz").exists()
    assert len(err.splitlines()) == 1
    line, see = err.strip().rsplit(" (see ", 1)
    assert see == "python -m chainer_va.metrics.convert --help)"
    return line


def test_convert_reports_a_bad_source_in_one_line_with_exit_status_2(tmp_path, capsys):
    what = "SOURCE must be TensorFlow's inception-2015-12-05.tgz (or the classify_image_graph_def.pb inside it)"
    line = _convert_error(capsys, tmp_path / "nope.pb", tmp_path)
    assert line.endswith("error: {}: no such file; {}".format(tmp_path / "nope.pb", convert.SOURCES))
    assert what in line
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"\x00not gzip" * 50)
    assert "junk.tgz: not a readable .tgz archive (not a gzip file); " + what in _convert_error(capsys, junk, tmp_path)
    other = tmp_path / "other.tar.gz"
    (tmp_path / "a.txt").write_text("hello")
    with tarfile.open(other, "w:gz") as archive:
        archive.add(tmp_path / "a.txt", arcname="a.txt")
    assert "other.tar.gz has no classify_image_graph_def.pb; " + what in _convert_error(capsys, other, tmp_path)
    graph = tmp_path / "junk.pb"
    graph.write_bytes(b"\xff" * 64)
    assert "junk.pb: not a serialized TensorFlow GraphDef (" in _convert_error(capsys, graph, tmp_path)


def test_fid_chunk_must_divide_n_fid_and_a_new_scorer_rescores(run, capsys, scored_without_work):
    assert evaluate.main([str(run), "--quiet", "--scorer", "classifier", "--n-fid", "1000", "--fid-chunk", "300"]) == 2
    assert "--fid-chunk 300 must be at least 2 and divide --n-fid 1000" in capsys.readouterr().err
    # the scorer's identity is part of what a metrics.json was computed with
    assert evaluate.classifier_id() != evaluate.classifier_id({"epochs": 1})
    assert evaluate.classifier_id().startswith("mnist5k_")
