"""Soft Q-learning with a MAF proposal on MuJoCo Swimmer (supplement J.3)."""
import tfp_flows  # noqa: F401,E402  (its MAF is the proposal; importing it sets TF_USE_LEGACY_KERAS before TF loads)
