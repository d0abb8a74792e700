"""A least-squares GAN objective as a plugin (docs/extending.md).

    python -m chainer_va.train --plugin docs/examples/lsgan.py --objective lsgan \
        --anneal lik --schedule linear --lambda0 1 --iterations 2000 --width 0.25 --out runs/lsgan

Least-squares GAN (Mao et al., 2017) with targets a (fake) = 0, b (real) = 1, c (generator) = 1:
    L_D = 1/2 mean (y_real - b)^2 + 1/2 mean (y_fake - a)^2
    L_G = 1/2 mean (y_fake - c)^2 + annealing term (here: likelihood annealing with --anneal lik)
The base updater provides batches, latents, denoisers, the annealing term, the finiteness check and
reporting; this class only writes the losses.
"""
import chainer_va  # noqa: F401  (the compat layer before chainer)

import chainer.functions as F

from chainer_va import updaters

LSGAN_REAL_TARGET = 1.0  # b
LSGAN_FAKE_TARGET = 0.0  # a
LSGAN_GENERATOR_TARGET = 1.0  # c


@updaters.register("lsgan")
class LSGANUpdater(updaters.GANUpdater):
    """Least-squares GAN on the DFM discriminator; any --anneal term is added to L_G."""

    def __init__(self, *args, real_target: float = LSGAN_REAL_TARGET, fake_target: float = LSGAN_FAKE_TARGET,
                 generator_target: float = LSGAN_GENERATOR_TARGET, **kwargs):
        super().__init__(*args, **kwargs)
        self.real_target = real_target
        self.fake_target = fake_target
        self.generator_target = generator_target

    def update_core(self):
        lam = self.lambda_t()
        x_real = self.real_batch()
        f_real, y_real = self.dis(x_real)
        x_fake = self.generate(len(x_real))
        f_fake, y_fake = self.dis(x_fake)

        loss_dis = 0.5 * F.mean(F.square(y_real - self.real_target)) \
            + 0.5 * F.mean(F.square(y_fake - self.fake_target))
        parts = {"loss_gen_adv": 0.5 * F.mean(F.square(y_fake - self.generator_target))}
        parts.update(self.annealing_loss(f_fake, lam))  # e.g. + c lambda_t mean (f - sg r_data(f))^2
        loss_gen = sum(parts.values())
        den_losses = self.denoiser_losses(real=f_real, fake=f_fake)

        losses = {"loss_dis": loss_dis, "loss_gen": loss_gen, **parts, **den_losses}
        self.check_finite(losses)  # NaN/inf -> error naming the loss and the iteration
        self.update_denoisers(den_losses)
        self.optimize("gen", loss_gen)
        x_fake.unchain_backward()  # D's loss must not reach G
        self.optimize("dis", loss_dis)
        self.report(losses, lam)
