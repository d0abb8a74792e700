"""The speed-ups are chosen in one place (chainer_va.speedups): the flags, the configuration and the
Chainer configuration keys the layers and losses read."""
import argparse

import chainer

from chainer_va.speedups import Speedups, add_flags


def test_flags_configuration_and_choices_map_one_to_one():
    parser = argparse.ArgumentParser()
    add_flags(parser.add_argument)
    defaults = vars(parser.parse_args([]))
    assert defaults == {"adam": "fused", "layers": "fused", "losses": "fused", "noise": "prefetch",
                        "backprop": "needed"}
    assert Speedups.from_config(defaults) == Speedups()  # every speed-up on
    off = vars(parser.parse_args(["--layers", "chainer", "--noise", "inline", "--backprop", "all"]))
    assert Speedups.from_config(off) == Speedups(layers=False, noise_prefetch=False, backprop_needed_only=False)
    assert Speedups.from_config({}) == Speedups()  # a run recorded before the flags existed: all on


def test_using_sets_the_layer_and_loss_keys_only_inside_the_block():
    assert chainer.config.fused_layers is True and chainer.config.fused_losses is True
    with Speedups(layers=False).using():
        assert chainer.config.fused_layers is False and chainer.config.fused_losses is True
        with Speedups(losses=False).using():
            assert chainer.config.fused_layers is True and chainer.config.fused_losses is False
    assert chainer.config.fused_layers is True and chainer.config.fused_losses is True
