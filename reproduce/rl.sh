#!/usr/bin/env bash
# Soft Q-learning on gymnasium Swimmer-v5 (supplement J.3): learning curves (mean ± sample std over seeds)
# of the MAF agent with and without annealing and of the amortised-SVGD baseline, plus a table of final returns.
#
#   bash reproduce/rl.sh --quick          # 1 seed x 3 agents x 2k steps, MAF hidden 64 (minutes on 2 CPU cores)  -> runs/rl_quick
#   bash reproduce/rl.sh                  # "local" preset: 3 seeds x 3 agents x 6k steps, MAF hidden 64       -> runs/rl_local
#   bash reproduce/rl.sh --preset paper   # the paper's size: 3 seeds x 0.5M steps, MAF 2x512 (days on a CPU)  -> runs/rl_paper
#   bash reproduce/rl.sh --preset efficiency --jobs 2  # 5 paired seeds x 5k steps, discount 0.99, eval every 250:
#                          # AUC, steps to 90% of the plateau, paired tests (docs/rl_efficiency; 19 min on 2 idle cores)
#   bash reproduce/rl.sh --preset gamma999 --jobs 2    # the same agents and seeds at discount 0.999, 8k steps (27 min)
# Each preset has its own default output folder (--out overrides it). Runs already there are continued
# (or kept, if finished) only if they were made with the same settings; otherwise the sweep stops and
# names them (move them away or choose another --out).
# Further flags go to reproduce/rl.py (--out, --seeds, --steps, --jobs, --png, --agents, --aggregate-only) or,
# if unknown there, to every `python -m rl.train` run (e.g. --reward-scale 100).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec "$PY" -m reproduce.rl "$@"
