"""The speed-ups, chosen in one place: implementation choices that give the same numbers with less work.

Each is a flag of ``chainer_va.train`` (:data:`FLAGS`, with its help text) and a field of :class:`Speedups`
(all on by default): ``--layers`` (:mod:`chainer_va.fused_layers`), ``--losses`` (:mod:`chainer_va.fused_losses`),
``--adam`` (:mod:`chainer_va.fused_adam`), ``--noise`` (:class:`chainer_va.latent.NoiseSource`), ``--backprop``.

The layer and loss choices are Chainer configuration keys, ``chainer.config.fused_layers`` and
``chainer.config.fused_losses``, read where a layer or a loss term is applied (as ``chainer.config.use_cudnn``),
so no switch is passed around: :meth:`chainer_va.updaters.GANUpdater.update` applies its run's :class:`Speedups`
around each step, and code outside a step runs with the defaults. Adam and the noise source are chosen when
the run is built (``chainer_va.train``).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Dict, Iterator

from chainer_va import compat  # noqa: F401  (must precede chainer)

import chainer

__all__ = ["Speedups", "FLAGS", "add_flags"]

chainer.global_config.fused_layers = True
chainer.global_config.fused_losses = True

#: flag -> (the :class:`Speedups` field, the value that turns the speed-up on, the one that turns it off, help);
#: the configuration key is the flag's name (``config["layers"]``)
FLAGS: Dict[str, tuple] = {
    "--adam": ("adam", "fused", "chainer",
               "fused: one whole-network update per link (same numbers, fewer kernel launches); chainer: "
               "chainer.optimizers.Adam, one update per parameter"),
    "--layers": ("layers", "fused", "chainer",
                 "fused: each affine [+ BN] [+ activation] layer of G, D, the critic and the denoisers as one "
                 "function node (same numbers, less host work; no double backprop through BN layers); chainer: "
                 "Chainer's own nodes per layer"),
    "--losses": ("losses", "fused", "chainer",
                 "fused: each loss term that is a chain of elementwise functions (softplus means, the feature "
                 "terms, the gradient penalty) as one function node (same numbers, less host work; no double "
                 "backprop through a loss); chainer: Chainer's own nodes"),
    "--noise": ("noise_prefetch", "prefetch", "inline",
                "prefetch: draw the next step's denoiser noise and WGAN-GP's u in a background thread (same "
                "numbers, off the step's critical path); inline: when the step asks for them"),
    "--backprop": ("backprop_needed_only", "needed", "all",
                   "needed: each backward computes only the gradients of the network it updates (the "
                   "generator's skips D's weight gradients; same numbers, less arithmetic); all: Chainer's "
                   "loss.backward() to every parameter"),
}


def add_flags(add: Callable[..., Any]) -> None:
    """Add the speed-up flags with ``add(flag, default=..., choices=..., help=...)`` (argparse's signature)."""
    for flag, (_, on, off, text) in FLAGS.items():
        add(flag, default=on, choices=(on, off), help="{} ({})".format(text, on))


@dataclasses.dataclass(frozen=True)
class Speedups:
    """Which speed-ups a run uses (module docstring); every combination gives the same numbers (tested)."""

    layers: bool = True
    losses: bool = True
    adam: bool = True
    noise_prefetch: bool = True
    backprop_needed_only: bool = True

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Speedups":
        """The choices of a resolved configuration; a key missing (a run recorded before it existed) is on."""
        return cls(**{field: config.get(flag[2:], on) == on for flag, (field, on, _, _) in FLAGS.items()})

    @contextlib.contextmanager
    def using(self) -> Iterator[None]:
        """Apply the layer and loss choices (``chainer.config.fused_layers``/``fused_losses``) inside the block."""
        with chainer.using_config("fused_layers", self.layers), chainer.using_config("fused_losses", self.losses):
            yield
