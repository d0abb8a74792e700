"""TensorFlow Probability MAF flows, U-GAN samplers from unnormalised densities, Bayesian logistic regression."""
import os

from chainer_va import compat  # noqa: F401  (project-wide rule: the compat layer is imported first)

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFP 0.25 needs tf-keras (Keras 2)
