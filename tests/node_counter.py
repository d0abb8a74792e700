"""A Chainer function hook that lists the function nodes applied and the backward calls made (tests of
the fused nodes count them)."""
import chainer


class NodeCounter(chainer.FunctionHook):
    name = "count"

    def __init__(self):
        self.applied, self.backward = [], []

    def forward_preprocess(self, function, in_data):
        self.applied.append(function.label)

    def backward_preprocess(self, function, in_data, out_grad):
        self.backward.append(function.label)
