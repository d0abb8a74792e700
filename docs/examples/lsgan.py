"""A least-squares GAN objective as a plugin (docs/extending.md).

    python -m chainer_va.train --plugin docs/examples/lsgan.py --objective lsgan \
        --anneal lik --schedule linear --lambda0 1 --iterations 2000 --width 0.25 --out runs/lsgan

Least-squares GAN (Mao et al., 2017) with targets a (fake) = 0, b (real) = 1, c (generator) = 1:
    L_D = 1/2 mean (y_real - b)^2 + 1/2 mean (y_fake - a)^2
    L_G = 1/2 mean (y_fake - c)^2 + annealing term (here: likelihood annealing with --anneal lik)
``updaters.OneStepUpdater`` runs DFM's one-pass step (batches, latents, the annealing term added to
L_G, denoisers, the finiteness check, reporting); this class only writes the two losses.
"""
import chainer_va  # noqa: F401  (the compat layer before chainer)

import chainer.functions as F

from chainer_va import updaters

LSGAN_REAL_TARGET = 1.0  # b
LSGAN_FAKE_TARGET = 0.0  # a
LSGAN_GENERATOR_TARGET = 1.0  # c


@updaters.register("lsgan")
class LSGANUpdater(updaters.OneStepUpdater):
    """Least-squares GAN on the DFM discriminator; any --anneal term is added to L_G."""

    def __init__(self, *args, real_target: float = LSGAN_REAL_TARGET, fake_target: float = LSGAN_FAKE_TARGET,
                 generator_target: float = LSGAN_GENERATOR_TARGET, **kwargs):
        super().__init__(*args, **kwargs)
        self.real_target = real_target
        self.fake_target = fake_target
        self.generator_target = generator_target

    def discriminator_loss(self, y_real, y_fake):
        return 0.5 * F.mean(F.square(y_real - self.real_target)) \
            + 0.5 * F.mean(F.square(y_fake - self.fake_target))

    def generator_adversarial_loss(self, y_fake):
        return 0.5 * F.mean(F.square(y_fake - self.generator_target))
