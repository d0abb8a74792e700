"""FusedAdam: bit-identical to chainer.optimizers.Adam on the CPU, same snapshots, clean fallbacks."""
import io

import numpy
import pytest

import chainer
import chainer.links as L
from chainer.optimizers import adam as chainer_adam

from chainer_va import train
from chainer_va.fused_adam import FusedAdam

pytestmark = pytest.mark.usefixtures("one_blas_thread")


class Net(chainer.Chain):
    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(2, 3, 3)
            self.bn = L.BatchNormalization(3)
            self.fc = L.Linear(None, 4)  # initialised on the first forward, as DCGAN's layers are


def _net(seed=0):
    numpy.random.seed(seed)
    net = Net()
    net.fc(numpy.zeros((1, 3 * 4 * 4), numpy.float32))
    return net


def _set_grads(net, step):
    rng = numpy.random.RandomState(100 + step)
    for _, p in sorted(net.namedparams()):
        p.grad = (rng.normal(size=p.shape) * 10.0 ** rng.uniform(-4, 1)).astype(numpy.float32)


def _state(net, optimizer):
    params = {name: p.array.copy() for name, p in net.namedparams()}
    for name, p in net.namedparams():
        for key, value in ((p.update_rule and p.update_rule.state) or {}).items():
            params[name + "/" + key] = value.copy()
    params["t"] = numpy.array(optimizer.t)
    return params


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        numpy.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _train(optimizer_class, steps, **options):
    net = _net()
    optimizer = optimizer_class(**options)
    optimizer.setup(net)
    for step in range(steps):
        _set_grads(net, step)
        if step == 3:
            optimizer.alpha *= 0.5  # a learning-rate change mid-run (as a schedule extension would do)
        optimizer.update()
    return net, optimizer


@pytest.mark.parametrize("options", [dict(alpha=1e-3, beta1=0.5, beta2=0.9),
                                     dict(alpha=2e-4, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay_rate=0.01)])
def test_fused_update_is_bit_identical_to_chainers_adam(options):
    fused_net, fused = _train(FusedAdam, 6, **options)
    plain_net, plain = _train(chainer.optimizers.Adam, 6, **options)
    assert fused.fused_updates == 6
    _assert_identical(_state(fused_net, fused), _state(plain_net, plain))
    moved = _net()
    assert not numpy.array_equal(moved.conv.W.array, fused_net.conv.W.array)


def test_fused_path_runs_no_per_parameter_update(monkeypatch):
    calls = []
    monkeypatch.setattr(chainer_adam.AdamRule, "update_core_cpu", lambda self, p: calls.append(p.name))
    _train(FusedAdam, 2)
    assert calls == []
    _train(chainer.optimizers.Adam, 1)
    assert len(calls) == len(list(_net().params()))


@pytest.mark.parametrize("change", ["amsgrad", "rule_hyperparameter", "hook", "frozen", "loss_scale",
                                    "added_after_setup"])
def test_what_the_fused_path_does_not_cover_falls_back_to_chainer(change):
    def run(optimizer_class):
        net = _net()
        optimizer = optimizer_class(alpha=1e-3, amsgrad=(change == "amsgrad"), eps=1e-3)
        optimizer.setup(net)
        if change == "added_after_setup":  # no update rule: Chainer's Parameter.update skips it
            with net.init_scope():
                net.extra = L.Linear(3, 2)
        if change == "loss_scale":  # backward(loss_scale=1024) marks each parameter; Chainer divides
            for p in net.params():
                p._loss_scale = 1024.0
        if change == "rule_hyperparameter":
            net.fc.W.update_rule.hyperparam.alpha = 1e-2
        if change == "hook":
            net.conv.W.update_rule.add_hook(chainer.optimizer_hooks.WeightDecay(1e-3))
        if change == "frozen":
            net.bn.disable_update()
        for step in range(3):
            _set_grads(net, step)
            optimizer.update()
        return net, optimizer

    fused_net, fused = run(FusedAdam)
    plain_net, plain = run(chainer.optimizers.Adam)
    assert fused.fused_updates == 0
    _assert_identical(_state(fused_net, fused), _state(plain_net, plain))
    for name, p in fused_net.namedparams():  # the gradients Chainer leaves (divided by a loss scale)
        numpy.testing.assert_array_equal(p.grad, dict(plain_net.namedparams())[name].grad, err_msg=name)


def _save(target):
    buffer = io.BytesIO()
    chainer.serializers.save_npz(buffer, target)
    return buffer.getvalue()


def _load(data, target):
    chainer.serializers.load_npz(io.BytesIO(data), target)


@pytest.mark.parametrize("first,second", [(FusedAdam, chainer.optimizers.Adam), (chainer.optimizers.Adam, FusedAdam),
                                          (FusedAdam, FusedAdam)])
def test_snapshots_are_interchangeable_with_chainers_adam(first, second):
    net, optimizer = _train(first, 3)
    saved_net, saved_opt = _save(net), _save(optimizer)
    # continue in the same process ...
    for step in range(3, 5):
        _set_grads(net, step)
        optimizer.update()
    # ... and from the snapshot with the other class: the same numbers
    resumed_net = _net(seed=1)
    resumed = second(alpha=1e-3)
    resumed.setup(resumed_net)
    _load(saved_net, resumed_net)
    _load(saved_opt, resumed)
    resumed.alpha = optimizer.alpha
    for step in range(3, 5):
        _set_grads(resumed_net, step)
        resumed.update()
    _assert_identical(_state(resumed_net, resumed), _state(net, optimizer))


def test_training_steps_with_fused_and_chainer_adam_are_identical(tmp_path):
    images = tmp_path / "images.npy"
    numpy.save(images, numpy.random.RandomState(0).uniform(-1, 1, (32, 1, 32, 32)).astype(numpy.float32))
    results = {}
    for adam in ("fused", "chainer"):
        config = train.resolve_config(["--dataset", str(images), "--width", "0.0625", "--batchsize", "4",
                                       "--iterations", "10", "--channels", "1", "--objective", "wgan",
                                       "--anneal", "ent", "--lambda0", "0.5", "--n-critic", "2", "--adam", adam])
        updater = train.build_updater(config, train.load_dataset(config), chainer.get_device("@numpy"))
        for _ in range(2):
            updater.update()
        results[adam] = {(name, p): a.array.copy() for name, opt in updater.get_all_optimizers().items()
                         for p, a in opt.target.namedparams()}
        kinds = {type(opt) for opt in updater.get_all_optimizers().values()}
        assert kinds == {FusedAdam if adam == "fused" else chainer.optimizers.Adam}
    assert results["fused"].keys() == results["chainer"].keys()
    for key in results["fused"]:
        numpy.testing.assert_array_equal(results["fused"][key], results["chainer"][key], err_msg=str(key))
