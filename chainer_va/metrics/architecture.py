"""The layer table of TensorFlow's ``inception-2015-12-05`` graph (``classify_image_graph_def.pb``).

One source of truth for the Chainer port (:mod:`chainer_va.metrics.inception`), the converters
(:mod:`chainer_va.metrics.convert`, :mod:`chainer_va.metrics.torch_weights`) and the test fixture
that rebuilds the graph in TensorFlow. Every convolution is named as in the graph: a convolution
``<name>`` is the graph's ``<name>/Conv2D`` op with filter ``<name>/conv2d_params`` (HWIO, no bias),
followed by ``<name>/batchnorm`` (``BatchNormWithGlobalNormalization``) and a ReLU named ``<name>``.

Spatial sizes for a 299x299 input: 149 (conv) -> 147 -> 147 -> 73 (pool) -> 73 -> 71 -> 35 (pool_1)
-> 35 (mixed, mixed_1, mixed_2) -> 17 (mixed_3 .. mixed_7) -> 8 (mixed_8, mixed_9, mixed_10)
-> 1 (pool_3: 8x8 average, VALID).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

#: Side length the graph resizes every input to (its ``ResizeBilinear/size`` constant).
INPUT_SIZE = 299
#: The graph's input scaling: ``Mul = (ResizeBilinear - SUB_VALUE) * MUL_VALUE`` maps [0, 255] to [-1, 0.992].
SUB_VALUE = 128.0
MUL_VALUE = 1.0 / 128.0
#: pool3 feature width and the softmax width (1008 = 1000 ImageNet classes + 8 unused entries).
POOL3_DIM = 2048
NUM_LOGITS = 1008
#: ``variance_epsilon`` of every batchnorm in the released graph (the converter reads the real value).
GRAPH_BN_EPSILON = 0.001


@dataclass(frozen=True)
class ConvSpec:
    """One convolution + batchnorm + ReLU unit of the graph."""

    name: str
    in_channels: int
    out_channels: int
    ksize: Tuple[int, int]
    stride: int
    padding: str  # "VALID" or "SAME" (TensorFlow's names)

    @property
    def pad(self) -> Tuple[int, int]:
        """Chainer padding equal to TF's: SAME is symmetric for every stride-1 odd kernel used here."""
        if self.padding == "VALID":
            return (0, 0)
        if self.stride != 1:
            raise ValueError("SAME padding with stride {} is not used by this graph".format(self.stride))
        return (self.ksize[0] // 2, self.ksize[1] // 2)


@dataclass(frozen=True)
class PoolSpec:
    """One pooling op of the graph (TF name, op type, window, stride, padding)."""

    name: str
    op: str  # "MaxPool" or "AvgPool"
    ksize: int
    stride: int
    padding: str


def _tower_a(block: str, cin: int, pool_proj: int) -> List[ConvSpec]:
    """mixed, mixed_1, mixed_2 (35x35): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avgpool -> 1x1."""
    return [
        ConvSpec(block + "/conv", cin, 64, (1, 1), 1, "VALID"),
        ConvSpec(block + "/tower/conv", cin, 48, (1, 1), 1, "VALID"),
        ConvSpec(block + "/tower/conv_1", 48, 64, (5, 5), 1, "SAME"),
        ConvSpec(block + "/tower_1/conv", cin, 64, (1, 1), 1, "VALID"),
        ConvSpec(block + "/tower_1/conv_1", 64, 96, (3, 3), 1, "SAME"),
        ConvSpec(block + "/tower_1/conv_2", 96, 96, (3, 3), 1, "SAME"),
        ConvSpec(block + "/tower_2/conv", cin, pool_proj, (1, 1), 1, "VALID"),
    ]


def _tower_c(block: str, c7: int) -> List[ConvSpec]:
    """mixed_4 .. mixed_7 (17x17): factorised 7x7 towers with ``c7`` inner channels."""
    return [
        ConvSpec(block + "/conv", 768, 192, (1, 1), 1, "VALID"),
        ConvSpec(block + "/tower/conv", 768, c7, (1, 1), 1, "VALID"),
        ConvSpec(block + "/tower/conv_1", c7, c7, (1, 7), 1, "SAME"),
        ConvSpec(block + "/tower/conv_2", c7, 192, (7, 1), 1, "SAME"),
        ConvSpec(block + "/tower_1/conv", 768, c7, (1, 1), 1, "VALID"),
        ConvSpec(block + "/tower_1/conv_1", c7, c7, (7, 1), 1, "SAME"),
        ConvSpec(block + "/tower_1/conv_2", c7, c7, (1, 7), 1, "SAME"),
        ConvSpec(block + "/tower_1/conv_3", c7, c7, (7, 1), 1, "SAME"),
        ConvSpec(block + "/tower_1/conv_4", c7, 192, (1, 7), 1, "SAME"),
        ConvSpec(block + "/tower_2/conv", 768, 192, (1, 1), 1, "VALID"),
    ]


def _tower_e(block: str, cin: int) -> List[ConvSpec]:
    """mixed_9, mixed_10 (8x8): expanded 1x3/3x1 towers."""
    return [
        ConvSpec(block + "/conv", cin, 320, (1, 1), 1, "VALID"),
        ConvSpec(block + "/tower/conv", cin, 384, (1, 1), 1, "VALID"),
        ConvSpec(block + "/tower/mixed/conv", 384, 384, (1, 3), 1, "SAME"),
        ConvSpec(block + "/tower/mixed/conv_1", 384, 384, (3, 1), 1, "SAME"),
        ConvSpec(block + "/tower_1/conv", cin, 448, (1, 1), 1, "VALID"),
        ConvSpec(block + "/tower_1/conv_1", 448, 384, (3, 3), 1, "SAME"),
        ConvSpec(block + "/tower_1/mixed/conv", 384, 384, (1, 3), 1, "SAME"),
        ConvSpec(block + "/tower_1/mixed/conv_1", 384, 384, (3, 1), 1, "SAME"),
        ConvSpec(block + "/tower_2/conv", cin, 192, (1, 1), 1, "VALID"),
    ]


def conv_specs() -> List[ConvSpec]:
    """All 94 convolution units of the graph, in execution order."""
    specs = [
        ConvSpec("conv", 3, 32, (3, 3), 2, "VALID"),
        ConvSpec("conv_1", 32, 32, (3, 3), 1, "VALID"),
        ConvSpec("conv_2", 32, 64, (3, 3), 1, "SAME"),
        ConvSpec("conv_3", 64, 80, (1, 1), 1, "VALID"),
        ConvSpec("conv_4", 80, 192, (3, 3), 1, "VALID"),
    ]
    specs += _tower_a("mixed", 192, 32)
    specs += _tower_a("mixed_1", 256, 64)
    specs += _tower_a("mixed_2", 288, 64)
    specs += [
        ConvSpec("mixed_3/conv", 288, 384, (3, 3), 2, "VALID"),
        ConvSpec("mixed_3/tower/conv", 288, 64, (1, 1), 1, "VALID"),
        ConvSpec("mixed_3/tower/conv_1", 64, 96, (3, 3), 1, "SAME"),
        ConvSpec("mixed_3/tower/conv_2", 96, 96, (3, 3), 2, "VALID"),
    ]
    for block, c7 in (("mixed_4", 128), ("mixed_5", 160), ("mixed_6", 160), ("mixed_7", 192)):
        specs += _tower_c(block, c7)
    specs += [
        ConvSpec("mixed_8/tower/conv", 768, 192, (1, 1), 1, "VALID"),
        ConvSpec("mixed_8/tower/conv_1", 192, 320, (3, 3), 2, "VALID"),
        ConvSpec("mixed_8/tower_1/conv", 768, 192, (1, 1), 1, "VALID"),
        ConvSpec("mixed_8/tower_1/conv_1", 192, 192, (1, 7), 1, "SAME"),
        ConvSpec("mixed_8/tower_1/conv_2", 192, 192, (7, 1), 1, "SAME"),
        ConvSpec("mixed_8/tower_1/conv_3", 192, 192, (3, 3), 2, "VALID"),
    ]
    specs += _tower_e("mixed_9", 1280)
    specs += _tower_e("mixed_10", 2048)
    return specs


def pool_specs() -> List[PoolSpec]:
    """Every pooling op of the graph. Note ``mixed_10/tower_2/pool`` is a MAX pool (the others in towers average)."""
    pools = [
        PoolSpec("pool", "MaxPool", 3, 2, "VALID"),
        PoolSpec("pool_1", "MaxPool", 3, 2, "VALID"),
    ]
    for block in ("mixed", "mixed_1", "mixed_2", "mixed_4", "mixed_5", "mixed_6", "mixed_7", "mixed_9"):
        pools.append(PoolSpec(block + "/tower_2/pool", "AvgPool", 3, 1, "SAME"))
    pools += [
        PoolSpec("mixed_3/pool", "MaxPool", 3, 2, "VALID"),
        PoolSpec("mixed_8/pool", "MaxPool", 3, 2, "VALID"),
        PoolSpec("mixed_10/tower_2/pool", "MaxPool", 3, 1, "SAME"),
        PoolSpec("pool_3", "AvgPool", 8, 1, "VALID"),
    ]
    return pools


def conv_spec_by_name() -> Dict[str, ConvSpec]:
    """``{tf_name: ConvSpec}``."""
    return {spec.name: spec for spec in conv_specs()}


def link_name(tf_name: str) -> str:
    """Chainer child-link name for a graph name ('/' is not allowed in link names)."""
    return tf_name.replace("/", "__")
