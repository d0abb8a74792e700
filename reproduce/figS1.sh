#!/usr/bin/env bash
# Supplement Fig. S1 / J.2: U-GAN samplers of the banana and kidney densities, with negative
# (likelihood) annealing and without, plus the direct MAF baseline; energy distance / MMD^2 to exact
# samples. CPU, minutes (reduced flows: 4 blocks of [64, 64]; the paper used 8 of [512, 512]).
#   [OUT=results/figS1] bash reproduce/figS1.sh [--resume] [more reproduce/figS1.py options except --out]
# Writes results/figS1/{figS1.png,figS1_final.png,table.md,quality.json,<run folders>}; copies to docs/images/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-results/figS1}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
"$PY" reproduce/figS1.py --out "$OUT" "$@"
mkdir -p docs/images
cp "$OUT/figS1.png" docs/images/figS1.png
cp "$OUT/figS1_final.png" docs/images/figS1_final.png
cp "$OUT/table.md" docs/images/figS1_table.md
echo "figS1: $OUT/figS1.png, $OUT/figS1_final.png, $OUT/table.md (copies in docs/images/)"
