#!/usr/bin/env bash
# Main-text Fig. 2 / supplement G: DAE-score vs DAE-residual Langevin samplers on the banana,
# with the energy distance / MMD^2 of each to exact samples. CPU, a few minutes.
#   [OUT=results/fig2] bash reproduce/fig2.sh [--resume] [--publish-docs] [more reproduce/fig2.py options except --out]
# Writes only under $OUT: fig2.png, table.md, metrics.json, config.json, dae.npz (the denoiser and the
# settings it was trained with; --resume reuses it only with the same settings). --publish-docs (default
# settings only) also copies fig2.png and table.md (as fig2_table.md) into docs/images/, the files the README shows.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-results/fig2}
exec "$PY" reproduce/fig2.py --out "$OUT" "$@"
