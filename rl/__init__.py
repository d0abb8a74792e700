"""Soft Q-learning with a MAF proposal on MuJoCo Swimmer (supplement J.3)."""
import os

from chainer_va import compat  # noqa: F401  (project-wide rule: the compat layer is imported first)

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFP 0.25 needs tf-keras (Keras 2)
