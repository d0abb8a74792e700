"""Twin networks for the speed-up tests: the same weights, one run with fused layers and one without
(``chainer.config.fused_layers``, chosen where a layer is applied; chainer_va.speedups)."""
import chainer


class Switched:
    """``link`` always called with ``chainer.config.fused_layers = fused``; other attributes are the link's."""

    def __init__(self, link: chainer.Link, fused: bool):
        self.link, self.fused = link, fused

    def __call__(self, *args):
        with chainer.using_config("fused_layers", self.fused):
            return self.link(*args)

    def __getattr__(self, name):
        return getattr(self.link, name)


def twins(make):
    """(fused, plain): two networks from ``make()`` with the same parameters."""
    fused, plain = make(), make()
    plain.copyparams(fused)
    return Switched(fused, True), Switched(plain, False)
