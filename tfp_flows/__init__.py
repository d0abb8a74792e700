"""TensorFlow Probability MAF flows, U-GAN samplers from unnormalised densities, Bayesian logistic regression.

No Chainer here: what it shares with the GAN side comes from :mod:`va_core`."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFP 0.25 needs tf-keras (Keras 2)
# before TensorFlow is imported: hides most of its C++ info/warning lines from the command lines of
# tfp_flows, rl and reproduce/ (not the few printed before its logging starts, such as cudart_stub's and
# cuInit's on a CPU-only machine); a value already set is kept
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
