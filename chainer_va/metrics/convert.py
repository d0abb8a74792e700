"""Convert TensorFlow's ``classify_image_graph_def.pb`` (inception-2015-12-05) into the port's cached ``.npz``.

The GraphDef is parsed with TensorFlow 2's protobuf classes (no TF1 session): every weight is a
``Const`` node, read with ``tf.make_ndarray``. The converter checks each op it relies on against the
layer table (:mod:`chainer_va.metrics.architecture`): op types, strides, paddings, kernel shapes,
pooling windows, and reads each batchnorm's ``variance_epsilon`` and ``scale_after_normalization``.

Converted layout (also produced by :mod:`chainer_va.metrics.torch_weights`): for each unit ``name``,
``name/W`` (O, I, kh, kw float32), ``name/beta``, ``name/gamma``, ``name/mean``, ``name/var``,
``name/eps`` (scalar), ``name/scale`` (bool); ``softmax/W`` (1008, 2048), ``softmax/b`` (1008);
``meta/source`` (str).
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np

from va_core import cli_checks, download
from chainer_va.metrics import architecture as arch
from va_core.runinfo import atomic_write_bytes

#: TensorFlow's published archive of the graph (used by the original IS code, TTUR and chainer-gan-lib).
INCEPTION_URL = "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
INCEPTION_ARCHIVE = "inception-2015-12-05.tgz"
GRAPH_MEMBER = "classify_image_graph_def.pb"
#: Size of the archive in bytes, as TensorFlow's own ``classify_image.py`` reports after downloading it
#: ("Successfully downloaded inception-2015-12-05.tgz 88931400 bytes."), quoted in many public logs.
#: No sha256 of the archive is published; the graph inside it is pinned instead (below).
INCEPTION_ARCHIVE_SIZE = 88_931_400
#: sha256 of the archive: not published anywhere we could find, so None (the size and the graph's md5
#: and structure are checked instead). Fill it in once a digest from a trusted download is known.
INCEPTION_ARCHIVE_SHA256: Optional[str] = None
#: The graph file itself: its size is in the archive listing that ``classify_image.py`` documents
#: (95673916 bytes, Dec 5 2015); its md5 is the one that public evaluation harnesses pin for OpenAI's
#: mirror of the same file (the guided-diffusion evaluator's ``classify_image_graph_def.pb``).
GRAPH_SIZE = 95_673_916
GRAPH_MD5 = "e6bb154e85f5d4331c22abcddb5dcf31"
#: Second source, tried when TensorFlow's archive cannot be downloaded: OpenAI's copy of the graph.
GRAPH_MIRROR_URL = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/classify_image_graph_def.pb"
#: File name of the converted weights in the data cache.
CONVERTED_NAME = "inception-2015-12-05.npz"


class ConversionError(ValueError):
    """The graph does not have the structure of inception-2015-12-05."""


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    return tf


def parse_graph_def(data: bytes):
    """Parse serialized GraphDef bytes with TensorFlow 2's protobuf classes (:class:`ConversionError` if they are not one)."""
    from google.protobuf.message import DecodeError

    tf = _tf()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except DecodeError as e:
        raise ConversionError("not a serialized TensorFlow GraphDef ({})".format(e)) from e
    return graph_def


def _ints(attr) -> list:
    return [int(v) for v in attr.list.i]


def graph_def_to_arrays(graph_def) -> Dict[str, np.ndarray]:
    """Extract and check every weight of the inception-2015-12-05 graph (see the module docstring for the layout)."""
    tf = _tf()
    nodes = {node.name: node for node in graph_def.node}

    def node(name: str, op: Optional[str] = None):
        if name not in nodes:
            raise ConversionError("node {!r} not found: this is not the inception-2015-12-05 graph".format(name))
        found = nodes[name]
        if op is not None and found.op != op:
            raise ConversionError("node {!r} is a {} op, expected {}".format(name, found.op, op))
        return found

    def const(input_name: str) -> np.ndarray:
        name = input_name.split(":")[0].lstrip("^")
        current = node(name)
        while current.op == "Identity":
            current = node(current.input[0].split(":")[0])
        if current.op != "Const":
            raise ConversionError("{!r} is a {} op, expected a Const holding weights".format(name, current.op))
        return tf.make_ndarray(current.attr["value"].tensor)

    arrays: Dict[str, np.ndarray] = {}
    for spec in arch.conv_specs():
        conv = node(spec.name + "/Conv2D", "Conv2D")
        strides = _ints(conv.attr["strides"])
        padding = conv.attr["padding"].s.decode()
        if strides != [1, spec.stride, spec.stride, 1] or padding != spec.padding:
            raise ConversionError("{}: strides {} padding {} != expected stride {} padding {}".format(
                spec.name, strides, padding, spec.stride, spec.padding))
        W = const(conv.input[1])
        expected = tuple(spec.ksize) + (spec.in_channels, spec.out_channels)
        if W.shape != expected:
            raise ConversionError("{}: filter shape {} != expected {} (HWIO)".format(spec.name, W.shape, expected))
        bn = node(spec.name + "/batchnorm", "BatchNormWithGlobalNormalization")
        mean, var, beta, gamma = (const(bn.input[i]) for i in (1, 2, 3, 4))
        for label, value in (("mean", mean), ("var", var), ("beta", beta), ("gamma", gamma)):
            if value.shape != (spec.out_channels,):
                raise ConversionError("{}/batchnorm: {} shape {} != ({},)".format(
                    spec.name, label, value.shape, spec.out_channels))
        arrays[spec.name + "/W"] = np.ascontiguousarray(W.transpose(3, 2, 0, 1), dtype=np.float32)
        arrays[spec.name + "/mean"] = mean.astype(np.float32)
        arrays[spec.name + "/var"] = var.astype(np.float32)
        arrays[spec.name + "/beta"] = beta.astype(np.float32)
        arrays[spec.name + "/gamma"] = gamma.astype(np.float32)
        arrays[spec.name + "/eps"] = np.float32(bn.attr["variance_epsilon"].f)
        arrays[spec.name + "/scale"] = np.bool_(bn.attr["scale_after_normalization"].b)

    for pool in arch.pool_specs():
        found = node(pool.name, pool.op)
        window = [1, pool.ksize, pool.ksize, 1]
        stride = [1, pool.stride, pool.stride, 1]
        if (_ints(found.attr["ksize"]) != window or _ints(found.attr["strides"]) != stride
                or found.attr["padding"].s.decode() != pool.padding):
            raise ConversionError("{}: pooling attributes differ from the expected {}".format(pool.name, pool))

    matmul = node("softmax/logits/MatMul", "MatMul")
    weights = const(matmul.input[1])
    if weights.shape != (arch.POOL3_DIM, arch.NUM_LOGITS):
        raise ConversionError("softmax weights shape {} != (2048, 1008)".format(weights.shape))
    bias_nodes = [n for n in graph_def.node if n.op in ("BiasAdd", "Add", "AddV2")
                  and any(i.split(":")[0] == "softmax/logits/MatMul" for i in n.input)]
    if len(bias_nodes) != 1:
        raise ConversionError("expected one bias op after softmax/logits/MatMul, found {}".format(len(bias_nodes)))
    other = [i for i in bias_nodes[0].input if i.split(":")[0] != "softmax/logits/MatMul"][0]
    bias = const(other)
    arrays["softmax/W"] = np.ascontiguousarray(weights.T, dtype=np.float32)
    arrays["softmax/b"] = bias.astype(np.float32).reshape(arch.NUM_LOGITS)
    arrays["meta/source"] = np.array("tensorflow:" + GRAPH_MEMBER)
    return arrays


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write converted weights atomically as an uncompressed ``.npz``."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def load_arrays(path: str | os.PathLike) -> Dict[str, np.ndarray]:
    """Read converted weights."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def check_graph_bytes(data: bytes, source: str) -> None:
    """Raise :class:`va_core.download.DownloadError` unless ``data`` is the pinned graph (size, md5).

    A graph that fails this check can still be converted deliberately with
    ``python -m chainer_va.metrics.convert`` (structure checks only); the automatic path refuses it.
    """
    digest = hashlib.md5(data).hexdigest()
    if len(data) != GRAPH_SIZE or digest != GRAPH_MD5:
        raise download.DownloadError(
            "{} is not the expected {}: {} bytes with md5 {}, expected {} bytes with md5 {}. Delete it and "
            "download it again; to use this file anyway, convert it explicitly with `python -m "
            "chainer_va.metrics.convert {} {}` (checks the graph's structure only).".format(
                source, GRAPH_MEMBER, len(data), digest, GRAPH_SIZE, GRAPH_MD5, source, CONVERTED_NAME))


def read_graph_from_archive(tgz_path: str | os.PathLike) -> bytes:
    """The bytes of ``classify_image_graph_def.pb`` inside ``inception-2015-12-05.tgz`` (nothing extracted)."""
    with tarfile.open(tgz_path, "r:gz") as archive:
        member = next((m for m in archive.getmembers() if Path(m.name).name == GRAPH_MEMBER), None)
        if member is None:
            raise ConversionError("{} has no {}".format(tgz_path, GRAPH_MEMBER))
        return archive.extractfile(member).read()


def convert_graph_bytes(data: bytes, npz_path: str | os.PathLike) -> Path:
    """Convert serialized GraphDef bytes into the port's ``.npz`` (structure checked layer by layer)."""
    return save_arrays(npz_path, graph_def_to_arrays(parse_graph_def(data)))


def convert_graph_file(pb_path: str | os.PathLike, npz_path: str | os.PathLike) -> Path:
    """Convert a ``classify_image_graph_def.pb`` file into the port's ``.npz``."""
    return convert_graph_bytes(Path(pb_path).read_bytes(), npz_path)


def inception_weights(cache: str | os.PathLike | None = None) -> Path:
    """Path of the converted weights, downloading, checking and converting the graph once if needed.

    Looked for, in order, in the data cache (``$CHAINER_VA_DATA`` or ``~/.cache/chainer_va``):
    ``inception-2015-12-05.npz`` (converted), ``classify_image_graph_def.pb`` (the graph),
    ``inception-2015-12-05.tgz`` (TensorFlow's archive); otherwise the archive is downloaded from
    TensorFlow (size checked), and if that fails the graph from OpenAI's mirror. The graph is checked
    against :data:`GRAPH_SIZE` and :data:`GRAPH_MD5` before conversion. Offline, the error says which
    file to place where.
    """
    folder = download.cache_dir(cache)
    target = folder / CONVERTED_NAME
    if target.is_file():
        return target
    graph = folder / GRAPH_MEMBER
    if not graph.is_file():
        try:
            archive = download.fetch(INCEPTION_URL, INCEPTION_ARCHIVE, INCEPTION_ARCHIVE_SHA256, directory=folder,
                                     size=INCEPTION_ARCHIVE_SIZE,
                                     what="the Inception weights (inception-2015-12-05.tgz)")
        except download.DownloadError as archive_error:
            try:
                download.fetch(GRAPH_MIRROR_URL, GRAPH_MEMBER, None, directory=folder, size=GRAPH_SIZE,
                               md5=GRAPH_MD5, what="the Inception graph (classify_image_graph_def.pb)")
            except download.DownloadError as mirror_error:
                raise download.DownloadError(
                    "{}\n{}\nEither file, placed in {}, works; so does {} converted elsewhere with "
                    "`python -m chainer_va.metrics.convert classify_image_graph_def.pb {}`.".format(
                        archive_error, mirror_error, folder, CONVERTED_NAME, CONVERTED_NAME)) from mirror_error
        else:
            data = read_graph_from_archive(archive)
            check_graph_bytes(data, "{} (inside {})".format(GRAPH_MEMBER, archive))
            return convert_graph_bytes(data, target)
    data = graph.read_bytes()
    check_graph_bytes(data, str(graph))
    return convert_graph_bytes(data, target)


#: What ``python -m chainer_va.metrics.convert`` reads (named in its errors).
SOURCES = ("SOURCE must be TensorFlow's {} (or the {} inside it), pytorch-fid's .pth or the TorchScript FID "
           "network's .pt".format(INCEPTION_ARCHIVE, GRAPH_MEMBER))


def _read_source(source: str):
    """The converted arrays of SOURCE (.pth) or its parsed GraphDef (.tgz/.tar.gz/.pb), warning when the
    graph is not the pinned file."""
    if source.endswith(".pth") or source.endswith(".pt"):
        from chainer_va.metrics import torch_weights

        try:
            return torch_weights.load_torch_weights(source)
        except ImportError:  # torch is missing: its own message says how to install it
            raise
        except Exception as e:  # torch's unpickling errors have no common base class; its advice (e.g.
            # weights_only=False) does not apply to a file that is not weights, so only the kind is named
            raise ConversionError("cannot read it as PyTorch weights ({})".format(type(e).__name__)) from e
    if source.endswith(".tgz") or source.endswith(".tar.gz"):
        try:
            data = read_graph_from_archive(source)
        except tarfile.TarError as e:
            raise ConversionError("not a readable .tgz archive ({})".format(e)) from e
    else:
        data = Path(source).read_bytes()
    graph_def = parse_graph_def(data)
    try:
        check_graph_bytes(data, source)
    except download.DownloadError:
        print("warning: {} is not byte-identical to the pinned {} ({} bytes, md5 {}); converting it because you "
              "asked for this file explicitly (its structure is still checked)".format(
                  source, GRAPH_MEMBER, GRAPH_SIZE, GRAPH_MD5))
    return graph_def


def main(argv=None) -> int:
    """``python -m chainer_va.metrics.convert SOURCE OUT.npz``: SOURCE is the .pb, the .tgz, or a pytorch-fid .pth.

    A SOURCE that is missing or not one of these is a usage error (one line, exit status 2, as argparse's).
    """

    parser = cli_checks.OneLineParser(prog="python -m chainer_va.metrics.convert", description=main.__doc__)
    parser.add_argument("source")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    source = str(args.source)
    if not Path(source).is_file():
        parser.error("{}: {}; {}".format(source, "not a file" if Path(source).exists() else "no such file", SOURCES))
    try:
        read = _read_source(source)
        arrays = read if isinstance(read, dict) else graph_def_to_arrays(read)
    except (ConversionError, ImportError, OSError) as e:
        message = str(e) if str(e).startswith(source) else "{}: {}".format(source, e)
        parser.error("{}; {}".format(message, SOURCES))
    try:
        path = save_arrays(args.out, arrays)
    except OSError as e:
        parser.error("cannot write {} ({}); choose another OUT".format(args.out, e))
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
