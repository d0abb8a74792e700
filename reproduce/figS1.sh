#!/usr/bin/env bash
# Supplement Fig. S1 / J.2: U-GAN samplers of the banana and kidney densities, with negative
# (likelihood) annealing and without, plus the direct MAF baseline; energy distance / MMD^2 to exact
# samples. CPU, minutes (reduced flows: 4 blocks of [64, 64]; the paper used 8 of [512, 512]).
#   [OUT=results/figS1] bash reproduce/figS1.sh [--resume] [--publish-docs] [more reproduce/figS1.py options except --out]
#   bash reproduce/figS1.sh --preset kidney-coverage [--seeds 20]   # the kidney over 20 seeds: lobe coverage per
#       sampler with 95% intervals, Fisher's and McNemar's tests (results/kidney_coverage; about 1 h on 2 cores)
# Writes only under $OUT: figS1.png, figS1_final.png, table.md, quality.json, config.json, one folder per run.
# --resume continues killed runs and reuses finished ones (same settings required; checked before anything
# is written). --publish-docs (default settings only) also copies figS1.png, figS1_final.png and table.md
# (as figS1_table.md) into docs/images/, the files the README shows.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec "$PY" reproduce/figS1.py ${OUT:+--out "$OUT"} "$@"
