"""Soft Q-learning with a MAF proposal on MuJoCo Swimmer (supplement J.3)."""
from chainer_va import compat  # noqa: F401  (project-wide rule: the compat layer is imported first)

import tfp_flows  # noqa: F401,E402  (its MAF is the proposal; importing it sets TF_USE_LEGACY_KERAS before TF loads)
