#!/usr/bin/env bash
# Bayesian logistic regression (Table S3 data): U-GAN samplers vs SVGD, direct MAF VI and a NUTS reference.
#   reproduce/blr.sh            the committed run: 4 data sets x 5 split seeds x 7 samplers, CPU (~70 min
#                               on 2 shared cores); results in results/blr/ (blr.md, blr.csv, blr.png, config.json)
#   reproduce/blr.sh --quick    minutes: 2 seeds, short runs (a smoke test, not results), in results/blr_quick/
#   reproduce/blr.sh --seeds 10 --ugan-steps 5000 --vi-steps 5000 --nuts-draws 3000 --out results/blr_large
#                               the larger version (hours on 2 cores)
# Extra arguments go to reproduce/blr.py (see --help). blr.py appends everything it prints to OUT/run.log
# of the run's own output folder (OUT from --out, or the default of --quick / the full run). A killed run
# resumes: finished (set, seed, sampler) results are cached under OUT/cache/, keyed by all their settings.
#   reproduce/blr.sh --out DIR --report-only   rebuild DIR's tables from its cache, for the settings DIR/config.json
#                               records (nothing runs; if nothing is cached for them, nothing is written)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-}"   # CPU only: the TF parts run on the CPU
exec "$PY" reproduce/blr.py "$@"
