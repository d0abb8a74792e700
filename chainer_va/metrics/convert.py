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

import io
import os
import tarfile
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np

from chainer_va import download
from chainer_va.metrics import architecture as arch
from chainer_va.runinfo import atomic_write_bytes

#: TensorFlow's published archive of the graph (used by the original IS code, TTUR and chainer-gan-lib).
INCEPTION_URL = "http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz"
INCEPTION_ARCHIVE = "inception-2015-12-05.tgz"
GRAPH_MEMBER = "classify_image_graph_def.pb"
#: sha256 of the archive. NOT FILLED: no published digest could be found on these (offline) machines.
#: The download is then checked structurally instead (every layer's op, shape and attribute must match
#: the layer table). Fill this in once the archive has been downloaded and verified.
INCEPTION_ARCHIVE_SHA256: Optional[str] = None
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
    """Parse serialized GraphDef bytes with TensorFlow 2's protobuf classes."""
    tf = _tf()
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(data)
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


def convert_graph_file(pb_path: str | os.PathLike, npz_path: str | os.PathLike) -> Path:
    """Convert a ``classify_image_graph_def.pb`` file into the port's ``.npz``."""
    with open(pb_path, "rb") as f:
        arrays = graph_def_to_arrays(parse_graph_def(f.read()))
    return save_arrays(npz_path, arrays)


def convert_archive(tgz_path: str | os.PathLike, npz_path: str | os.PathLike) -> Path:
    """Convert the graph inside ``inception-2015-12-05.tgz`` (read from the archive, nothing extracted)."""
    with tarfile.open(tgz_path, "r:gz") as archive:
        member = next((m for m in archive.getmembers() if Path(m.name).name == GRAPH_MEMBER), None)
        if member is None:
            raise ConversionError("{} has no {}".format(tgz_path, GRAPH_MEMBER))
        data = archive.extractfile(member).read()
    return save_arrays(npz_path, graph_def_to_arrays(parse_graph_def(data)))


def inception_weights(cache: str | os.PathLike | None = None) -> Path:
    """Path of the converted weights, downloading and converting TensorFlow's archive once if needed.

    Looked for, in order, in the data cache (``$CHAINER_VA_DATA`` or ``~/.cache/chainer_va``):
    ``inception-2015-12-05.npz`` (converted), ``classify_image_graph_def.pb`` (extracted graph),
    ``inception-2015-12-05.tgz`` (the archive); otherwise the archive is downloaded. Offline, the error
    says which file to place where.
    """
    folder = download.cache_dir(cache)
    target = folder / CONVERTED_NAME
    if target.is_file():
        return target
    graph = folder / GRAPH_MEMBER
    if graph.is_file():
        return convert_graph_file(graph, target)
    try:
        archive = download.fetch(INCEPTION_URL, INCEPTION_ARCHIVE, INCEPTION_ARCHIVE_SHA256, directory=folder,
                                 what="the Inception weights (inception-2015-12-05.tgz)")
    except download.DownloadError as exc:
        raise download.DownloadError(
            "{}\nAny of these files, placed in {}, also works: {} (from the archive), or {} converted "
            "elsewhere with `python -m chainer_va.metrics.convert classify_image_graph_def.pb {}`.".format(
                exc, folder, GRAPH_MEMBER, CONVERTED_NAME, CONVERTED_NAME)) from exc
    return convert_archive(archive, target)


def main(argv=None) -> int:
    """``python -m chainer_va.metrics.convert SOURCE OUT.npz``: SOURCE is the .pb, the .tgz, or a pytorch-fid .pth."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("source")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    source = str(args.source)
    if source.endswith(".tgz") or source.endswith(".tar.gz"):
        path = convert_archive(source, args.out)
    elif source.endswith(".pth") or source.endswith(".pt"):
        from chainer_va.metrics import torch_weights

        path = save_arrays(args.out, torch_weights.load_torch_weights(source))
    else:
        path = convert_graph_file(source, args.out)
    print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
