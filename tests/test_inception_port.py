"""The GraphDef converter and the Chainer port against TensorFlow's own execution of an inception-2015-12-05 graph.

The fixture is a GraphDef written node by node with the real graph's node names, op types (including
the legacy ``BatchNormWithGlobalNormalization``, which TF 2 still runs for GraphDef producer < 9),
attributes and weight shapes, filled with random weights. TensorFlow runs it (``ExpandDims`` ->
``ResizeBilinear`` -> ``Sub``/``Mul`` -> ... -> ``pool_3`` -> ``softmax``); the converter reads it;
the Chainer port must reproduce ``pool_3`` and ``softmax`` to 1e-4 relative error in float32.
"""
import os

import numpy as np
import pytest

from chainer_va.metrics import architecture as arch
from chainer_va.metrics import convert, inception

tf = pytest.importorskip("tensorflow")

#: Layers given a different batchnorm setting than the released graph, to check the converter reads
#: each layer's attributes instead of assuming them.
SCALED_LAYERS = ("conv_1", "mixed_4/tower/conv_1")
OTHER_EPS_LAYER = ("mixed_9/tower_1/mixed/conv", 0.01)
PRODUCER_VERSION = 5  # GraphDef version of the 2015 graph era (BatchNormWithGlobalNormalization removed in 9)


class _GraphBuilder:
    def __init__(self):
        self.graph_def = tf.compat.v1.GraphDef()
        self.graph_def.versions.producer = PRODUCER_VERSION
        self.f32 = tf.float32.as_datatype_enum

    def node(self, name, op, inputs=(), **attrs):
        n = self.graph_def.node.add()
        n.name, n.op = name, op
        n.input.extend(inputs)
        for key, value in attrs.items():
            if isinstance(value, bool):
                n.attr[key].b = value
            elif isinstance(value, float):
                n.attr[key].f = value
            elif isinstance(value, bytes):
                n.attr[key].s = value
            elif isinstance(value, list):
                n.attr[key].list.i.extend(value)
            elif key in ("T", "dtype", "Tidx", "Tshape"):
                n.attr[key].type = value
            else:
                raise TypeError(key)
        return name

    def const(self, name, array):
        array = np.asarray(array)
        n = self.graph_def.node.add()
        n.name, n.op = name, "Const"
        n.attr["dtype"].type = tf.as_dtype(array.dtype).as_datatype_enum
        n.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(array))
        return name


def build_fixture_graph(seed=0):
    """The inception-2015-12-05 GraphDef structure with random weights (real names and shapes)."""
    rng = np.random.default_rng(seed)
    b = _GraphBuilder()
    f32 = b.f32
    x = b.node("ExpandDims", "Placeholder", dtype=f32)
    size = b.const("ResizeBilinear/size", np.array([arch.INPUT_SIZE, arch.INPUT_SIZE], np.int32))
    x = b.node("ResizeBilinear", "ResizeBilinear", [x, size], T=f32, align_corners=False)
    x = b.node("Sub", "Sub", [x, b.const("Sub/y", np.float32(arch.SUB_VALUE))], T=f32)
    x = b.node("Mul", "Mul", [x, b.const("Mul/y", np.float32(arch.MUL_VALUE))], T=f32)

    specs = arch.conv_spec_by_name()

    def unit(name, inp):
        spec = specs[name]
        fan_in = spec.ksize[0] * spec.ksize[1] * spec.in_channels
        w = rng.normal(0, np.sqrt(2.0 / fan_in), tuple(spec.ksize) + (spec.in_channels, spec.out_channels))
        conv = b.node(name + "/Conv2D", "Conv2D", [inp, b.const(name + "/conv2d_params", w.astype(np.float32))],
                      T=f32, strides=[1, spec.stride, spec.stride, 1], padding=spec.padding.encode(),
                      use_cudnn_on_gpu=True)
        c = spec.out_channels
        params = [b.const(name + "/batchnorm/" + k, v.astype(np.float32)) for k, v in (
            ("moving_mean", rng.normal(0, 0.1, c)), ("moving_variance", rng.uniform(0.5, 1.5, c)),
            ("beta", rng.normal(0, 0.1, c)), ("gamma", rng.uniform(0.5, 2.0, c)))]
        eps = OTHER_EPS_LAYER[1] if name == OTHER_EPS_LAYER[0] else arch.GRAPH_BN_EPSILON
        bn = b.node(name + "/batchnorm", "BatchNormWithGlobalNormalization", [conv] + params, T=f32,
                    variance_epsilon=float(eps), scale_after_normalization=name in SCALED_LAYERS)
        return b.node(name, "Relu", [bn], T=f32)

    pools = {p.name: p for p in arch.pool_specs()}

    def pool(name, inp):
        p = pools[name]
        return b.node(name, p.op, [inp], T=f32, ksize=[1, p.ksize, p.ksize, 1], strides=[1, p.stride, p.stride, 1],
                      padding=p.padding.encode())

    axis = b.const("concat_dim", np.int32(3))

    def concat(name, inputs):
        return _concat(b, name, inputs, axis)

    h = unit("conv_2", unit("conv_1", unit("conv", x)))
    h = pool("pool", h)
    h = pool("pool_1", unit("conv_4", unit("conv_3", h)))
    for blk in ("mixed", "mixed_1", "mixed_2"):
        t0 = unit(blk + "/conv", h)
        t1 = unit(blk + "/tower/conv_1", unit(blk + "/tower/conv", h))
        t2 = unit(blk + "/tower_1/conv_2", unit(blk + "/tower_1/conv_1", unit(blk + "/tower_1/conv", h)))
        t3 = unit(blk + "/tower_2/conv", pool(blk + "/tower_2/pool", h))
        h = concat(blk + "/join", [t0, t1, t2, t3])
    t0 = unit("mixed_3/conv", h)
    t1 = unit("mixed_3/tower/conv_2", unit("mixed_3/tower/conv_1", unit("mixed_3/tower/conv", h)))
    h = concat("mixed_3/join", [t0, t1, pool("mixed_3/pool", h)])
    for blk in ("mixed_4", "mixed_5", "mixed_6", "mixed_7"):
        t0 = unit(blk + "/conv", h)
        t1 = h
        for n in ("conv", "conv_1", "conv_2"):
            t1 = unit(blk + "/tower/" + n, t1)
        t2 = h
        for n in ("conv", "conv_1", "conv_2", "conv_3", "conv_4"):
            t2 = unit(blk + "/tower_1/" + n, t2)
        t3 = unit(blk + "/tower_2/conv", pool(blk + "/tower_2/pool", h))
        h = concat(blk + "/join", [t0, t1, t2, t3])
    t0 = unit("mixed_8/tower/conv_1", unit("mixed_8/tower/conv", h))
    t1 = h
    for n in ("conv", "conv_1", "conv_2", "conv_3"):
        t1 = unit("mixed_8/tower_1/" + n, t1)
    h = concat("mixed_8/join", [t0, t1, pool("mixed_8/pool", h)])
    for blk in ("mixed_9", "mixed_10"):
        t0 = unit(blk + "/conv", h)
        a = unit(blk + "/tower/conv", h)
        t1 = concat(blk + "/tower/mixed", [unit(blk + "/tower/mixed/conv", a), unit(blk + "/tower/mixed/conv_1", a)])
        c = unit(blk + "/tower_1/conv_1", unit(blk + "/tower_1/conv", h))
        t2 = concat(blk + "/tower_1/mixed", [unit(blk + "/tower_1/mixed/conv", c),
                                              unit(blk + "/tower_1/mixed/conv_1", c)])
        t3 = unit(blk + "/tower_2/conv", pool(blk + "/tower_2/pool", h))
        h = concat(blk + "/join", [t0, t1, t2, t3])
    h = pool("pool_3", h)
    r = b.node("pool_3/_reshape", "Reshape", [h, b.const("pool_3/_reshape/shape", np.array([-1, 2048], np.int32))],
               T=f32, Tshape=tf.int32.as_datatype_enum)
    w = b.const("softmax/weights", rng.normal(0, 0.05, (arch.POOL3_DIM, arch.NUM_LOGITS)).astype(np.float32))
    mm = b.node("softmax/logits/MatMul", "MatMul", [r, w], T=f32, transpose_a=False, transpose_b=False)
    logits = b.node("softmax/logits", "BiasAdd",
                    [mm, b.const("softmax/biases", rng.normal(0, 0.5, arch.NUM_LOGITS).astype(np.float32))], T=f32)
    b.node("softmax", "Softmax", [logits], T=f32)
    return b.graph_def


def _concat(builder, name, inputs, axis):
    n = builder.graph_def.node.add()
    n.name, n.op = name, "ConcatV2"
    n.input.extend(list(inputs) + [axis])
    n.attr["T"].type = builder.f32
    n.attr["N"].i = len(inputs)
    n.attr["Tidx"].type = tf.int32.as_datatype_enum
    return name


@pytest.fixture(scope="module")
def fixture_graph():
    return build_fixture_graph()


@pytest.fixture(scope="module")
def images():
    """Two 32x32 RGB images with 8-bit values: smooth gradients plus noise (fed to ExpandDims, NHWC)."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    base = np.stack([yy, xx, 1 - yy * xx], axis=-1)
    imgs = [np.clip(255 * base * s + rng.normal(0, 20, base.shape), 0, 255) for s in (1.0, 0.3)]
    return np.round(np.stack(imgs)).astype(np.float32)


def _run_tf(graph_def, images):
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        return sess.run(["pool_3:0", "softmax:0"], {"ExpandDims:0": images})


def _rel(ours, theirs):
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.mark.slow
def test_converted_port_matches_tensorflow_pool3_and_softmax(fixture_graph, images, tmp_path):
    pool3_tf, softmax_tf = _run_tf(fixture_graph, images)
    pb = tmp_path / "classify_image_graph_def.pb"
    pb.write_bytes(fixture_graph.SerializeToString())
    npz = convert.convert_graph_file(pb, tmp_path / "converted.npz")
    arrays = convert.load_arrays(npz)
    assert bool(arrays["conv_1/scale"]) and not bool(arrays["conv/scale"])
    assert float(arrays[OTHER_EPS_LAYER[0] + "/eps"]) == pytest.approx(OTHER_EPS_LAYER[1])
    model = inception.Inception2015().load_arrays(arrays)
    pool3, probs = model.features_and_probs(images.transpose(0, 3, 1, 2), resize="tf")
    assert pool3.shape == (2, 2048) and probs.shape == (2, 1008)
    print("relative error vs TensorFlow: pool3 {:.2e}, softmax {:.2e}".format(
        _rel(pool3, pool3_tf.reshape(2, 2048)), _rel(probs, softmax_tf)))
    assert _rel(pool3, pool3_tf.reshape(2, 2048)) < 1e-4
    assert _rel(probs, softmax_tf) < 1e-4
    # the three images must not collapse onto one output (a port that ignores its input would pass above otherwise)
    assert _rel(pool3[0], pool3[1]) > 1e-2


def test_converter_rejects_a_graph_with_a_wrong_padding(fixture_graph):
    broken = tf.compat.v1.GraphDef()
    broken.CopyFrom(fixture_graph)
    node = next(n for n in broken.node if n.name == "mixed_5/tower/conv_1/Conv2D")
    node.attr["padding"].s = b"VALID"
    with pytest.raises(convert.ConversionError, match="mixed_5/tower/conv_1"):
        convert.graph_def_to_arrays(broken)


def test_converter_rejects_a_missing_node():
    with pytest.raises(convert.ConversionError, match="not the inception-2015-12-05 graph"):
        convert.graph_def_to_arrays(tf.compat.v1.GraphDef())


@pytest.fixture
def pinned_fixture(fixture_graph, monkeypatch):
    """The fixture graph's bytes, with the converter's size/md5 pins pointed at them (the real pins are
    for the real 95 MB graph, which these machines cannot download)."""
    import hashlib

    data = fixture_graph.SerializeToString()
    monkeypatch.setattr(convert, "GRAPH_SIZE", len(data))
    monkeypatch.setattr(convert, "GRAPH_MD5", hashlib.md5(data).hexdigest())
    return data


def _tgz(path, data):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(convert.GRAPH_MEMBER)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def test_real_weight_pins_are_consistent():
    # The archive holds the graph plus labels, compressed: smaller than the graph, not far smaller.
    assert 0.8 * convert.GRAPH_SIZE < convert.INCEPTION_ARCHIVE_SIZE < convert.GRAPH_SIZE
    assert len(convert.GRAPH_MD5) == 32 and int(convert.GRAPH_MD5, 16) >= 0
    assert convert.GRAPH_MIRROR_URL.endswith("/" + convert.GRAPH_MEMBER)


def test_offline_weights_message_says_which_file_to_place_where(tmp_path, monkeypatch):
    from va_core import download

    monkeypatch.setattr(convert, "INCEPTION_URL", "http://127.0.0.1:9/inception-2015-12-05.tgz")
    monkeypatch.setattr(convert, "GRAPH_MIRROR_URL", "http://127.0.0.1:9/classify_image_graph_def.pb")
    with pytest.raises(download.DownloadError) as info:
        convert.inception_weights(cache=tmp_path)
    message = str(info.value)
    for needed in (str(tmp_path), "inception-2015-12-05.tgz", "classify_image_graph_def.pb",
                   "inception-2015-12-05.npz", "127.0.0.1:9/inception", "127.0.0.1:9/classify"):
        assert needed in message
    assert not list(tmp_path.glob(".part-*"))  # no half-downloaded file left behind


def test_weights_are_found_in_the_cache_as_a_graph_file(pinned_fixture, tmp_path):
    (tmp_path / convert.GRAPH_MEMBER).write_bytes(pinned_fixture)
    path = convert.inception_weights(cache=tmp_path)
    assert path == tmp_path / convert.CONVERTED_NAME and path.is_file()
    assert os.path.getsize(path) > 90e6  # 23.8M float32 weights


def test_a_corrupted_graph_in_the_cache_is_refused_with_the_fix(pinned_fixture, tmp_path):
    from va_core import download

    bad = bytearray(pinned_fixture)
    bad[len(bad) // 2] ^= 0xFF                               # same size, one flipped byte
    (tmp_path / convert.GRAPH_MEMBER).write_bytes(bytes(bad))
    with pytest.raises(download.DownloadError, match=r"md5 .* expected .*Delete it.*python -m chainer_va.metrics.convert"):
        convert.inception_weights(cache=tmp_path)
    assert not (tmp_path / convert.CONVERTED_NAME).exists()


def test_archive_is_downloaded_size_checked_and_converted(pinned_fixture, tmp_path, monkeypatch):
    from va_core import download

    served = _tgz(tmp_path / "served.tgz", pinned_fixture)
    monkeypatch.setattr(convert, "INCEPTION_URL", served.as_uri())
    monkeypatch.setattr(convert, "GRAPH_MIRROR_URL", "http://127.0.0.1:9/classify_image_graph_def.pb")
    monkeypatch.setattr(convert, "INCEPTION_ARCHIVE_SIZE", served.stat().st_size + 1)
    with pytest.raises(download.DownloadError, match=r"truncated or not the expected file: \d+ bytes, expected"):
        convert.inception_weights(cache=tmp_path / "a")     # wrong size and no mirror: refused
    assert not (tmp_path / "a" / convert.INCEPTION_ARCHIVE).exists()
    monkeypatch.setattr(convert, "INCEPTION_ARCHIVE_SIZE", served.stat().st_size)
    path = convert.inception_weights(cache=tmp_path / "b")
    assert path.is_file() and (tmp_path / "b" / convert.INCEPTION_ARCHIVE).is_file()


def test_mirror_graph_is_used_when_the_archive_is_unreachable(pinned_fixture, tmp_path, monkeypatch):
    served = tmp_path / "mirror.pb"
    served.write_bytes(pinned_fixture)
    monkeypatch.setattr(convert, "INCEPTION_URL", "http://127.0.0.1:9/inception-2015-12-05.tgz")
    monkeypatch.setattr(convert, "GRAPH_MIRROR_URL", served.as_uri())
    path = convert.inception_weights(cache=tmp_path / "c")
    assert path.is_file() and (tmp_path / "c" / convert.GRAPH_MEMBER).read_bytes() == pinned_fixture
    arrays = convert.load_arrays(path)
    assert arrays["softmax/W"].shape == (arch.NUM_LOGITS, 2048)


def test_explicit_conversion_of_an_unpinned_graph_warns_and_converts(fixture_graph, tmp_path, capsys):
    pb = tmp_path / "mine.pb"
    pb.write_bytes(fixture_graph.SerializeToString())       # not the pinned bytes (random weights)
    assert convert.main([str(pb), str(tmp_path / "mine.npz")]) == 0
    assert "warning: " in capsys.readouterr().out
    assert (tmp_path / "mine.npz").is_file()


def test_convert_module_runs_as_a_script_without_runpy_warnings():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "chainer_va.metrics.convert", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: python -m chainer_va.metrics.convert")
    assert "RuntimeWarning" not in r.stderr
