#!/usr/bin/env bash
# Main-text Fig. 2 / supplement G: DAE-score vs DAE-residual Langevin samplers on the banana,
# with the energy distance / MMD^2 of each to exact samples. CPU, a few minutes.
#   [OUT=results/fig2] bash reproduce/fig2.sh [--resume] [more reproduce/fig2.py options except --out]
# Writes results/fig2/{fig2.png,table.md,metrics.json,config.json,dae.npz}; copies the PNG to docs/images/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-results/fig2}
"$PY" reproduce/fig2.py --out "$OUT" "$@"
mkdir -p docs/images
cp "$OUT/fig2.png" docs/images/fig2.png
cp "$OUT/table.md" docs/images/fig2_table.md
echo "fig2: $OUT/fig2.png, $OUT/table.md (copies in docs/images/)"
