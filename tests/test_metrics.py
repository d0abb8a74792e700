"""Inception Score / FID formulas, resizing and pooling of the port, evaluation plumbing, trainer extension, quick classifier."""
import json
import math

import chainer
import chainer.functions as F
import numpy as np
import pytest

from chainer_va.metrics import classifier, evaluation, extension, inception, scores


def _random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# --- FID ---------------------------------------------------------------------------------------------
def test_fid_of_identical_statistics_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=16), _random_spd(rng, 16)
    assert abs(scores.fid_from_stats(mu, sigma, mu, sigma)) < 1e-8


def test_fid_of_two_gaussians_matches_closed_form():
    # Commuting covariances S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (sqrt a - sqrt b)^2.
    rng = np.random.default_rng(1)
    d = 12
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = scores.fid_from_stats(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-8)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert scores.fid_from_stats([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0)


def test_fid_from_features_matches_population_formula_on_large_samples():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1.0, size=(20000, 3))
    y = rng.normal(1.0, 2.0, size=(20000, 3))
    assert scores.fid_from_features(x, y) == pytest.approx(3 * 1.0 + 3 * (2.0 - 1.0) ** 2, rel=0.05)


def test_fid_with_singular_covariances_stays_finite_and_nonnegative():
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(5, 8))  # fewer samples than dimensions: rank-deficient covariances
    mu1, s1 = scores.feature_statistics(feats)
    mu2, s2 = scores.feature_statistics(feats + 0.5)
    value = scores.fid_from_stats(mu1, s1, mu2, s2)
    assert math.isfinite(value)
    assert value == pytest.approx(8 * 0.25, abs=1e-3)  # same covariance, means 0.5 apart in 8 dims


def test_fid_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape mismatch"):
        scores.fid_from_stats(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# --- Inception Score ---------------------------------------------------------------------------------
def test_is_of_uniform_probabilities_is_one():
    probs = np.full((1000, 1008), 1.0 / 1008)
    mean, std = scores.inception_score(probs, splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n_classes", [1, 7, 10])
def test_is_of_equally_used_one_hot_classes_is_n(n_classes):
    labels = np.arange(100 * n_classes) % n_classes  # every split holds each class equally often
    probs = np.eye(1008)[labels]
    mean, std = scores.inception_score(probs, splits=10)
    assert mean == pytest.approx(n_classes, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_is_of_two_soft_classes_matches_closed_form():
    a = 0.8
    probs = np.array([[a, 1 - a], [1 - a, a]] * 50)
    expected = math.exp(math.log(2) + a * math.log(a) + (1 - a) * math.log(1 - a))
    mean, _ = scores.inception_score(probs, splits=5)
    assert mean == pytest.approx(expected, rel=1e-12)


def test_is_splits_are_consecutive_and_std_reflects_them():
    # first half one class only (IS 1 per split), second half two classes (IS 2 per split)
    probs = np.concatenate([np.eye(4)[np.zeros(100, int)], np.eye(4)[np.arange(100) % 2]])
    mean, std = scores.inception_score(probs, splits=2)
    assert mean == pytest.approx(1.5) and std == pytest.approx(0.5)


def test_is_rejects_logits_and_too_few_samples():
    with pytest.raises(ValueError, match="sum to 1"):
        scores.inception_score(np.random.default_rng(0).uniform(0.1, 5.0, size=(20, 5)), splits=2)
    with pytest.raises(ValueError, match="at least"):
        scores.inception_score(np.full((5, 3), 1 / 3), splits=10)


# --- resize and pooling of the port ------------------------------------------------------------------
def test_tf_resize_matches_tensorflow_legacy_resize_bilinear():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 255, size=(2, 3, 13, 9)).astype(np.float32)
    ours = inception.resize_bilinear(x, 29, "tf")
    theirs = tf.raw_ops.ResizeBilinear(images=x.transpose(0, 2, 3, 1), size=[29, 29], align_corners=False,
                                       half_pixel_centers=False).numpy().transpose(0, 3, 1, 2)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-3)


def test_align_corners_resize_matches_chainer_resize_images():
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 255, size=(2, 3, 13, 9)).astype(np.float32)
    np.testing.assert_allclose(inception.resize_bilinear(x, 29, "align_corners"),
                               F.resize_images(x, (29, 29)).array, rtol=1e-5, atol=1e-3)


def test_same_average_pool_excludes_padding_like_tensorflow():
    model = inception.Inception2015(with_logits=False)
    ones = np.ones((1, 2, 5, 5), np.float32)
    assert np.allclose(model._avg_pool_same(ones).array, 1.0)  # counting the zero padding gives 4/9 at corners
    legacy = inception.Inception2015(pool_padding="chainer-gan-lib", with_logits=False)
    assert legacy._avg_pool_same(ones).array[0, 0, 0, 0] == pytest.approx(4.0 / 9.0)


# --- evaluation plumbing -----------------------------------------------------------------------------
def test_quantize_truncates_like_chainer_gan_lib_and_to_rgb_repeats():
    x = np.array([-1.0, -0.999, 0.0, 0.999, 1.0, 1.5], np.float32).reshape(1, 1, 1, 6)
    np.testing.assert_array_equal(evaluation.quantize(x).ravel(), [0, 0, 127, 254, 255, 255])
    rgb = evaluation.to_rgb(np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2))
    assert rgb.shape == (1, 3, 2, 2) and np.all(rgb[:, 0] == rgb[:, 2])


class _ConstGenerator(chainer.Link):
    """A 'generator' whose image is z[0] broadcast: lets the tests predict every sample."""

    latent_dim = 3

    def forward(self, z):
        return F.broadcast_to(F.reshape(z[:, :1], (len(z), 1, 1, 1)), (len(z), 1, 4, 4))

    __call__ = forward


class _ToyExtractor:
    """Features = mean pixel; probs = which of 4 equal bins of [0, 255] the mean pixel falls in (one-hot)."""

    name = "toy"
    key = "toy"

    def __call__(self, pixels):
        m = pixels.reshape(len(pixels), -1).mean(axis=1)
        bins = np.clip((m / 64).astype(int), 0, 3)
        return np.stack([m, m ** 2 / 255], axis=1), np.eye(4)[bins]


class _MeanInception(chainer.Link):
    """Stands in for Inception2015 in InceptionExtractor: features = mean pixel of each channel, no probs."""

    def features_and_probs(self, x, resize):
        return x.mean(axis=(2, 3)), None


def test_extractors_refuse_images_that_are_not_8_bit_pixels():
    """Images in [-1, 1] fed straight to an extractor used to give garbage scores (IS 1.0001, FID 0.03) without
    a word: they, [0, 1] floats and values above 255 are refused with the fix; every pixel batch still passes."""
    images = np.random.default_rng(0).uniform(-1, 1, (8, 1, 32, 32)).astype(np.float32)  # data/generator range
    collapsed = evaluation.quantize(images * 0.005 - 0.995)  # a saturated generator: only pixels 0 and 1
    assert set(np.unique(collapsed)) == {0.0, 1.0}
    for extractor in (evaluation.InceptionExtractor(model=_MeanInception()),
                      classifier.ClassifierExtractor(model=classifier.SmallClassifier())):
        for bad in (images, (images + 1) / 2, images * 300):
            with pytest.raises(ValueError, match=r"8-bit pixel values in \[0, 255\].*"
                                                 r"chainer_va\.metrics\.evaluation\.quantize"):
                extractor(bad)
        for good in (evaluation.quantize(images), next(evaluation.dataset_batches(images)), collapsed,
                     evaluation.quantize(images).astype(np.uint8), np.zeros_like(images)):
            assert len(extractor(good)[0]) == 8
    feats, _ = evaluation.InceptionExtractor(model=_MeanInception())(collapsed)  # grey repeated to 3 channels
    np.testing.assert_allclose(feats, np.repeat(collapsed.mean(axis=(2, 3)), 3, axis=1))


def test_generator_batches_are_seeded_and_complete():
    gen = _ConstGenerator()
    a = np.concatenate(list(evaluation.generator_batches(gen, 250, 100, seed=3)))
    b = np.concatenate(list(evaluation.generator_batches(gen, 250, 100, seed=3)))
    c = np.concatenate(list(evaluation.generator_batches(gen, 250, 100, seed=4)))
    assert a.shape == (250, 1, 4, 4) and np.array_equal(a, b) and not np.array_equal(a, c)


def test_inception_score_of_generator_with_uniform_latents_uses_all_bins():
    # z ~ U(-1, 1) -> mean pixel uniform on [0, 255] -> 4 equally likely one-hot bins -> IS close to 4
    mean, _ = evaluation.inception_score_of_generator(_ConstGenerator(), _ToyExtractor(), n_samples=4000,
                                                      splits=4, batchsize=500, progress=False)
    assert mean == pytest.approx(4.0, rel=0.02)


def test_extension_reports_through_reporter_and_log_report(tmp_path):
    gen = _ConstGenerator()
    constant_images = np.broadcast_to(np.random.default_rng(0).uniform(0, 255, (2000, 1, 1, 1)), (2000, 1, 4, 4))
    ref = scores.feature_statistics(_ToyExtractor()(constant_images)[0])
    model = chainer.links.Linear(1, 1)
    opt = chainer.optimizers.SGD()
    opt.setup(model)
    it = chainer.iterators.SerialIterator(np.zeros((4, 1), np.float32), 2)
    updater = chainer.training.updaters.StandardUpdater(it, opt, loss_func=lambda x: F.sum(model(x)))
    trainer = chainer.training.Trainer(updater, (4, "iteration"), out=str(tmp_path))
    ext = extension.GANEvaluation(gen, _ToyExtractor(), _ToyExtractor(), ref, every=2, n_is=400, n_fid=400,
                                  splits=4, batchsize=200)
    trainer.extend(ext)
    trainer.extend(chainer.training.extensions.LogReport(trigger=(2, "iteration")))
    trainer.run()
    log = json.loads((tmp_path / "log").read_text())
    assert [entry["iteration"] for entry in log] == [2, 4]
    assert all({"IS", "IS_std", "FID"} <= set(entry) for entry in log)
    assert log[-1]["IS"] == pytest.approx(ext.last["IS"]) and log[-1]["IS"] > 3.0
    # samples and the reference are both uniform mean pixels -> small FID relative to the feature scale
    assert 0 <= log[-1]["FID"] < 0.05 * ref[1][1, 1]


def test_feature_cache_keys_name_the_weights_and_the_pool_padding():
    """FID reference statistics are cached under the extractor's key: two extractors share them only when
    their weights (BN statistics included) and the Inception port's pool padding are the same."""
    import copy

    import chainer.links as L

    a, b = L.Linear(3, 2), L.Linear(3, 2)  # different random weights
    key = evaluation.InceptionExtractor(model=a).key
    assert key.startswith("inception_tf_pool-tf_model-")
    assert evaluation.InceptionExtractor(model=copy.deepcopy(a)).key == key
    assert evaluation.InceptionExtractor(model=b).key != key
    a.pool_padding = "chainer-gan-lib"
    assert evaluation.InceptionExtractor(model=a).key == key.replace("pool-tf", "pool-chainer-gan-lib")
    bn = L.BatchNormalization(3)
    before = evaluation.weights_digest(bn)
    bn.avg_mean[:] = 1.0
    assert evaluation.weights_digest(bn) != before
    one, two = classifier.SmallClassifier(), classifier.SmallClassifier()
    assert classifier.ClassifierExtractor(model=one).key != classifier.ClassifierExtractor(model=two).key
    assert classifier.ClassifierExtractor(model=one).key == classifier.ClassifierExtractor(model=copy.deepcopy(one)).key


# --- quick-mode classifier ---------------------------------------------------------------------------
def test_small_classifier_learns_mnist5k_and_scores_real_digits():
    from chainer_va import data

    images, labels = data.load_labeled("mnist5k", size=32, channels=1)
    pick = np.random.default_rng(0).permutation(len(images))[:1500]
    held_out = data.load_labeled("mnist5k", size=32, channels=1, split="test")
    model, accuracy = classifier.train_classifier(images[pick], labels[pick], epochs=4, batchsize=64, lr=1e-3,
                                                  seed=0, width=8, hidden=32, held_out=held_out, progress=False)
    assert accuracy > 0.75 and accuracy == classifier.accuracy_of(model, *held_out)
    extractor = classifier.ClassifierExtractor(model, {"test": True})
    shuffled = np.random.default_rng(1).permutation(len(images))[:1000]
    pixels = np.concatenate(list(evaluation.dataset_batches(images[shuffled], 500)))
    feats, probs = extractor(pixels)
    assert feats.shape == (1000, 32)
    assert (probs.argmax(axis=1) == labels[shuffled]).mean() > 0.75
    is_mean, _ = scores.inception_score(probs, splits=5)
    assert 3.0 < is_mean <= 10.0  # ten balanced classes: an untrained net scores about 1
    # 3-channel input is turned grey and scored the same
    _, probs_rgb = extractor(evaluation.to_rgb(pixels[:50]))
    np.testing.assert_allclose(probs_rgb, probs[:50], atol=1e-5)


def test_pytorch_fid_state_dict_names_map_onto_every_graph_unit():
    torch = pytest.importorskip("torch")
    from chainer_va.metrics import architecture as arch
    from chainer_va.metrics import torch_weights

    mapping = torch_weights.torchvision_name_map()
    specs = arch.conv_spec_by_name()
    assert sorted(mapping.values()) == sorted(specs)  # one torchvision module per graph unit, none left out
    rng = np.random.default_rng(0)
    state = {}
    for prefix, unit in mapping.items():
        spec = specs[unit]
        state[prefix + ".conv.weight"] = torch.from_numpy(
            rng.normal(size=(spec.out_channels, spec.in_channels) + tuple(spec.ksize)).astype(np.float32))
        for name in ("weight", "bias", "running_mean", "running_var"):
            state["{}.bn.{}".format(prefix, name)] = torch.from_numpy(rng.uniform(0.5, 1.5, spec.out_channels)
                                                                      .astype(np.float32))
    state["fc.weight"] = torch.zeros(1008, 2048)
    state["fc.bias"] = torch.zeros(1008)
    arrays = torch_weights.arrays_from_torchvision_state(state)
    inception.Inception2015().load_arrays(arrays)  # every shape fits the port
    unit = mapping["Mixed_7b.branch3x3dbl_3a"]
    assert unit == "mixed_9/tower_1/mixed/conv" and specs[unit].ksize == (1, 3)
    np.testing.assert_array_equal(arrays[unit + "/gamma"], state["Mixed_7b.branch3x3dbl_3a.bn.weight"].numpy())


def test_evaluate_uses_the_runs_own_data_set_as_fid_reference(tmp_path, monkeypatch):
    """FID compares with the training set of the run's data set (it was CIFAR-10 whatever the run was
    trained on), with the run's data folder; a run trained on a .npy file must name its reference."""
    from chainer_va import evaluate, train
    from va_core import runinfo

    images = tmp_path / "images.npy"
    np.save(images, np.random.RandomState(0).uniform(-1, 1, (8, 1, 32, 32)).astype(np.float32))
    run = tmp_path / "run"
    train.main(["--dataset", str(images), "--channels", "1", "--width", "0.0625", "--batchsize", "4",
                "--iterations", "1", "--out", str(run), "--progress-interval", "1000"])
    with pytest.raises(ValueError, match="trained on the file .*images.npy: pass --reference"):
        evaluate.evaluate_run(run)
    record = runinfo.read_run_config(run)
    record["config"].update(dataset="fashion-mnist", data_dir=str(tmp_path / "fm"))
    (run / "config.json").write_text(json.dumps(record))

    class Stop(Exception):
        pass

    def reference_statistics(dataset, extractor, data_dir=None, **kwargs):
        raise Stop(dataset, data_dir, kwargs["channels"])
    monkeypatch.setattr(evaluation, "InceptionExtractor", lambda **kwargs: type("E", (), {"model": None})())
    monkeypatch.setattr(evaluation, "reference_statistics", reference_statistics)
    with pytest.raises(Stop) as info:
        evaluate.evaluate_run(run)
    # the grey run's samples are compared with grey training images (the extractor repeats the channel)
    assert info.value.args == ("fashion-mnist", str(tmp_path / "fm"), 1)


def test_reference_statistics_are_cached_per_data_folder(tmp_path):
    """Two CelebA folders of other images get their own statistics; the second call for a folder reads
    its cache (before, one folder's statistics were returned for any other's)."""
    from PIL import Image

    def folder(name, value):
        path = tmp_path / name / "img_align_celeba"
        path.mkdir(parents=True)
        for i in range(4):
            pixels = np.full((218, 178, 3), value + 10 * i, np.uint8)
            Image.fromarray(pixels).save(path / "{:06d}.jpg".format(i + 1), quality=100)
        return str(tmp_path / name)

    class MeanPixel:  # features: each image's channel means (a stand-in for pool3)
        key = name = "mean-pixel"
        calls = 0

        def __call__(self, batch):
            MeanPixel.calls += 1
            return np.asarray(batch, np.float32).mean(axis=(2, 3)), None

    dark, bright = folder("dark", 20), folder("bright", 200)
    kwargs = dict(extractor=MeanPixel(), size=32, progress=False)
    mu_dark, _ = evaluation.reference_statistics("celeba", data_dir=dark, **kwargs)
    mu_bright, _ = evaluation.reference_statistics("celeba", data_dir=bright, **kwargs)
    assert mu_dark.mean() < 100 < mu_bright.mean()  # the extractor sees 0-255 pixels: 20-50 vs 200-230
    calls = MeanPixel.calls
    again, _ = evaluation.reference_statistics("celeba", data_dir=dark, **kwargs)
    np.testing.assert_array_equal(again, mu_dark)
    assert MeanPixel.calls == calls  # from the cache


def test_scores_with_other_settings_are_kept_and_damaged_caches_are_rebuilt(tmp_path, monkeypatch):
    """A second evaluation with other settings keeps the first metrics.json under a settings-named file;
    a damaged cache (FID statistics, the quick classifier) is removed with a warning and recomputed."""
    from chainer_va import evaluate, train
    from va_core import runinfo

    images = tmp_path / "images.npy"
    np.save(images, np.random.RandomState(0).uniform(-1, 1, (8, 1, 32, 32)).astype(np.float32))
    run = tmp_path / "run"
    train.main(["--dataset", str(images), "--channels", "1", "--width", "0.0625", "--batchsize", "4",
                "--iterations", "1", "--out", str(run), "--progress-interval", "1000"])
    monkeypatch.setattr(evaluation, "InceptionExtractor", lambda **kwargs: type("E", (), {"model": None})())
    monkeypatch.setattr(evaluation, "reference_statistics", lambda *args, **kwargs: None)
    monkeypatch.setattr(evaluation, "evaluate_generator",
                        lambda gen, a, b, ref, n_is, **kwargs: {"IS": float(n_is), "IS_std": 0.0, "FID": 1.0})
    first = evaluate.evaluate_run(run, n_is=100, reference="cifar10", progress=False)
    assert first["IS"] == 100.0
    evaluate.evaluate_run(run, n_is=200, reference="cifar10", progress=False)
    kept = sorted(run.glob("metrics_*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["IS"] == 100.0
    assert json.loads((run / "metrics.json").read_text())["IS"] == 200.0
    assert evaluate.evaluate_run(run, n_is=200, reference="cifar10", progress=False)["IS"] == 200.0  # reused
    assert sorted(run.glob("metrics_*.json")) == kept

    cache = tmp_path / "stats.npz"
    np.savez(cache, mu=np.arange(3.0), sigma=np.eye(3))
    mu, _ = runinfo.read_cache_npz(cache, lambda stored: (stored["mu"], stored["sigma"]))
    np.testing.assert_array_equal(mu, [0.0, 1.0, 2.0])
    cache.write_bytes(cache.read_bytes()[:40])  # truncated
    with pytest.warns(UserWarning, match="stats.npz is damaged .*recomputing"):
        assert runinfo.read_cache_npz(cache, lambda stored: stored["mu"]) is None
    assert not cache.exists()
    np.savez(cache, other=np.zeros(1))  # a file without the arrays asked for
    with pytest.warns(UserWarning, match="damaged \\(KeyError"):
        assert runinfo.read_cache_npz(cache, lambda stored: stored["mu"]) is None


def test_augment_keeps_an_image_for_zero_ranges_and_moves_it_by_whole_pixel_shifts():
    rng = np.random.RandomState(0)
    image = -np.ones((1, 1, 32, 32), np.float32)
    image[0, 0, 10:14, 12:15] = 1.0
    same = classifier.augment(image, rng, rotate=0.0, scale=0.0, shift=0.0)
    np.testing.assert_allclose(same, image, atol=1e-6)

    class Fixed:  # draws fixed values: no rotation or zoom, a shift of (+2, -1) pixels
        def uniform(self, low, high, size=None):
            if size == (1, 2):
                return np.array([[2.0, -1.0]])
            return np.full(size, (low + high) / 2.0)
    moved = classifier.augment(image, Fixed(), rotate=10.0, scale=0.1, shift=2.0)
    np.testing.assert_allclose(moved[0, 0, 12:16, 11:14], 1.0, atol=1e-6)
    assert np.isclose(moved, 1.0).sum() == 12 and moved.min() >= -1.0


def test_chunked_fid_is_the_mean_of_the_chunks_fids():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(60, 3))
    reference = scores.feature_statistics(rng.normal(0.5, 1.0, size=(200, 3)))
    by_hand = np.mean([scores.fid_from_stats(*scores.feature_statistics(feats[i:i + 20]), *reference)
                       for i in (0, 20, 40)])
    assert evaluation.chunked_fid(feats, reference, 20) == pytest.approx(by_hand)
    assert evaluation.chunked_fid(feats, reference) == pytest.approx(
        scores.fid_from_stats(*scores.feature_statistics(feats), *reference))
    with pytest.raises(ValueError, match="divide the 60 samples"):
        evaluation.chunked_fid(feats, reference, 25)


def test_real_data_scores_use_the_same_rounding_extractor_and_chunks():
    from chainer_va.metrics import real_data

    images = np.linspace(-1, 1, 40 * 4, dtype=np.float32).reshape(40, 1, 2, 2)
    seen = []

    def extractor(pixels):  # features: the pixels; probabilities: one-hot on (pixel sum) mod 4
        seen.append(pixels.copy())
        feats = pixels.reshape(len(pixels), -1)
        probs = np.eye(4)[(feats.sum(axis=1).astype(int)) % 4] * 0.96 + 0.01
        return feats, probs
    reference = (np.zeros(4), np.eye(4))
    row = real_data.real_data_scores(images, extractor, reference, splits=2, fid_chunk=20)
    pixels = np.concatenate(seen)
    np.testing.assert_array_equal(pixels, np.clip(np.rint(images * 127.5 + 127.5), 0, 255))  # 8-bit, as samples
    assert row["n"] == 40 and row["FID"] == pytest.approx(evaluation.chunked_fid(pixels.reshape(40, -1), reference, 20))
    probs = extractor(pixels)[1]
    assert (row["IS"], row["IS_std"]) == pytest.approx(scores.inception_score(probs, 2))


@pytest.mark.slow
def test_the_quick_scorer_reaches_98_percent_on_the_held_out_digits():
    """The default scorer, trained as `table1.sh --quick` trains it (about 2.5-3 min of one core), labels at least
    490 of MNIST-5k's 500 held-out test digits correctly, and records that accuracy with itself."""
    model, info = classifier.load_or_train(progress=False)
    assert info["holdout_accuracy"] >= 0.98 and info["n_holdout"] == 500 and info["n_train"] == 4500
    from chainer_va import data

    assert classifier.accuracy_of(model, *data.load_labeled("mnist5k", split="test", channels=1)) == \
        info["holdout_accuracy"]


def test_max_pool_2x2_gives_max_pooling_2d_numbers_and_floors_odd_sizes():
    """The classifier's pooling: the same output and gradient, bit for bit, as F.max_pooling_2d(x, 2) for even
    sizes, ties included (ReLU zeros, equal positive values of a flat background); an odd last row/column is
    dropped, as SmallClassifier sizes its Linear layer (a 30-pixel input used to fail there)."""
    rng = np.random.RandomState(0)
    x = np.maximum(rng.randn(4, 3, 10, 12), 0).astype(np.float32)
    x[0, 0, 2:4, 4:6] = 0.5  # a window of four equal positive values
    x[1, 2, :, :] = 0.25
    gy = rng.randn(4, 3, 5, 6).astype(np.float32)
    results = []
    for pool in (lambda v: F.max_pooling_2d(v, 2), classifier.max_pool_2x2):
        v = chainer.Variable(x.copy())
        y = pool(v)
        y.grad = gy.copy()
        y.backward()
        results.append((y.array, v.grad))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[1][1].flags.c_contiguous
    odd = chainer.Variable(rng.randn(2, 1, 5, 7).astype(np.float32))
    y = classifier.max_pool_2x2(odd)
    np.testing.assert_array_equal(y.array, F.max_pooling_2d(odd[:, :, :4, :6], 2).array)
    F.sum(y).backward()
    assert odd.grad.shape == (2, 1, 5, 7) and odd.grad[:, :, 4].sum() == 0 and odd.grad[:, :, :, 6].sum() == 0
    assert odd.grad.sum() == 2 * 2 * 3  # one maximum per window
    for size in (28, 30, 32):
        feats, logits = classifier.SmallClassifier(size=size, rng=np.random.RandomState(0))(
            np.zeros((2, 1, size, size), np.float32))
        assert feats.shape == (2, 128) and logits.shape == (2, 10)


def test_augment_moves_every_channel_of_an_image_alike():
    """A 3-channel image set (settings channels=3) keeps its channels, each moved as the grey one would be."""
    rng = np.random.RandomState(1)
    channels = [rng.uniform(-1, 1, (6, 1, 32, 32)).astype(np.float32) for _ in range(3)]
    colour = classifier.augment(np.concatenate(channels, axis=1), np.random.RandomState(5))
    assert colour.shape == (6, 3, 32, 32) and colour.dtype == np.float32
    for k, channel in enumerate(channels):  # the same draws move each channel as if it were a grey image
        np.testing.assert_array_equal(colour[:, k:k + 1], classifier.augment(channel, np.random.RandomState(5)))


def test_two_threads_asking_for_the_scorer_train_it_once(monkeypatch):
    """The Table 1 driver evaluates two runs in two threads: the second waits for the first's training."""
    import threading

    calls = []
    real = classifier.train_classifier

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(classifier, "train_classifier", counting)
    tiny = dict(epochs=1, width=4, hidden=8, seed=123)
    results = []
    threads = [threading.Thread(target=lambda: results.append(classifier.load_or_train(progress=False, **tiny)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 2
    assert results[0][1]["holdout_accuracy"] == results[1][1]["holdout_accuracy"]
