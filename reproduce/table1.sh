#!/usr/bin/env bash
# Table 1 of the paper (IS/FID of JSD-, RKL-, W-GAN without and with variational annealing).
#   bash reproduce/table1.sh --quick                      # CPU smoke version on MNIST-5k (< 30 min, 2 cores)
#   bash reproduce/table1.sh --gpus 0 --jobs-per-gpu 4    # full grid: CIFAR-10, 150k iterations, 3 seeds
#   bash reproduce/table1.sh --only rkl --seeds 1 --iterations 20000
#   bash reproduce/table1.sh --dataset celeba --data-dir DIR
#   bash reproduce/table1.sh --submitit slurm             # one submitit job per run
# All flags: python reproduce/table1.py --help. Finished runs are skipped; unfinished ones resume.
# Runs .venv/bin/python if it exists, else `python`; PYTHON=/path/to/python bash reproduce/table1.sh picks another.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
export MPLBACKEND="${MPLBACKEND:-Agg}"
exec "$PYTHON" reproduce/table1.py "$@"
