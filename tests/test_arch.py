"""--arch: the paper's networks (dcgan) or the CPU study's fully connected ones (mlp), chosen by train."""
import numpy
import pytest

from chainer_va import nets, train
from test_updaters import make_updater, run_steps, snapshot_params, images  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.mark.parametrize("objective,dis_cls", [("jsd", nets.MLPDiscriminator), ("rkl", nets.MLPDiscriminator),
                                               ("wgan", nets.MLPCritic)])
def test_arch_mlp_trains_every_objective_with_the_mlp_networks(images, objective, dis_cls):  # noqa: F811
    updater, config = make_updater(images, "--objective", objective, "--arch", "mlp", "--anneal", "lik",
                                   "--lambda0", "1", "--n-critic", "1")
    assert config["arch"] == "mlp"
    assert type(updater.gen) is nets.MLPGenerator and type(updater.dis) is dis_cls
    assert updater.denoisers.get("data").link.feature_shape == updater.dis.feature_shape == (128,)  # 2048 x 0.0625
    before = snapshot_params(updater)
    logs = run_steps(updater, 2)
    after = snapshot_params(updater)
    for name in before:  # every network (G, D, the data denoiser) moved, and nothing is NaN
        moved = [not numpy.array_equal(before[name][p], after[name][p]) for p in before[name]]
        assert any(moved), name
        assert all(numpy.isfinite(a).all() for a in after[name].values()), name
    assert all(numpy.isfinite(v) for log in logs for v in log.values())


def test_arch_default_is_the_papers_and_bad_values_are_one_line_errors(images):  # noqa: F811
    updater, config = make_updater(images)
    assert config["arch"] == "dcgan" and type(updater.gen) is nets.Generator
    with pytest.raises(SystemExit):  # argparse's choices: "invalid choice: 'resnet' (choose from 'dcgan', 'mlp')"
        train.resolve_config(["--dataset", images, "--arch", "resnet"])
    config = train.resolve_config(["--dataset", images])
    config["arch"] = "resnet"  # as a --config file could give it
    with pytest.raises(train.ConfigError, match="unknown --arch 'resnet'; choose one of: dcgan, mlp") as e:
        train._validate(config)
    assert "\n" not in str(e.value)
