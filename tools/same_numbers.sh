#!/usr/bin/env bash
# Fixed-seed outputs of this tree against those of commit BASE (default: HEAD), for a refactoring step that
# must change no number. Small versions of each experiment, about 5 minutes on 2 cores:
#   GAN training (jsd, rkl, wgan with likelihood annealing; the generator's weights), the U-GAN and direct flow
#   (samples, logs; lr decay, snapshots), RL (MAF and SVGD agents stopped and resumed; episodes and evals),
#   Fig. 2 (its table), Fig. S1 (final samples; its table without the seconds column) and a BLR --quick cell
#   (cancer, split 0: NUTS, SVGD, U-GAN samples; its CSV without the seconds column).
#     bash tools/same_numbers.sh 557dc03
# Prints one line per output, "same" or "DIFFERENT", and exits 1 if any differs.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASE="${1:-HEAD}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
WORK="$(mktemp -d)"
trap 'git -C "$ROOT" worktree remove --force "$WORK/base" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
git -C "$ROOT" worktree add -q "$WORK/base" "$BASE" || exit 2
export OMP_NUM_THREADS=1 MPLBACKEND=Agg

fingerprints() {  # $1 code root, $2 output folder: prints "name digest" lines
  local code="$1" out="$2"
  mkdir -p "$out"
  cd "$code" || return
  export PYTHONPATH="$code"
  for obj in jsd rkl wgan; do
    "$PY" -m chainer_va.train --objective $obj --anneal lik --lambda0 1 --schedule linear --iterations 12 \
      --batchsize 8 --width 0.0625 --dataset mnist5k --channels 1 --n-critic 2 --snapshot-interval 6 \
      --sample-interval 12 --log-interval 4 --out "$out/gan_$obj" > "$out/gan_$obj.log" 2>&1
    echo "gan_$obj $("$PY" -c "import numpy as np, hashlib, sys; d = np.load(sys.argv[1]); print(hashlib.sha256(b''.join(k.encode() + d[k].tobytes() for k in sorted(d.files))).hexdigest()[:16])" "$out/gan_$obj/gen_final.npz" 2>/dev/null)"
  done
  echo "ugan $("$PY" "$ROOT/tools/fingerprint_ugan.py" "$out/ugan" 2>/dev/null | awk '/fingerprint/ {print substr($2, 1, 16)}')"
  echo "rl $("$PY" "$ROOT/tools/fingerprint_rl.py" "$out/rl" 2>/dev/null | awk '/fingerprint/ {print substr($2, 1, 16)}')"
  "$PY" reproduce/fig2.py --out "$out/fig2" --n-data 2000 --dae-steps 300 --chains 300 --langevin-steps 100 > "$out/fig2.log" 2>&1
  echo "fig2_table $(sha256sum < "$out/fig2/table.md" | cut -c1-16)"
  "$PY" reproduce/figS1.py --out "$out/figS1" --targets banana,kidney --steps 30 --flow-blocks 2 --hidden-units 16,16 \
    --generator-hidden 16,16 --batch-size 64 --eval-samples 300 --threads 1 > "$out/figS1.log" 2>&1
  echo "figS1_samples $(cat "$out"/figS1/*/final_samples.npy | sha256sum | cut -c1-16)"
  echo "figS1_table $(cut -d'|' -f2-8 "$out/figS1/table.md" | sha256sum | cut -c1-16)"
  "$PY" reproduce/blr.py --quick --out "$out/blr" --datasets cancer --samplers svgd ugan --seeds 1 > "$out/blr.log" 2>&1
  echo "blr_samples $("$PY" -c "import numpy as np, hashlib, glob, sys; print(hashlib.sha256(b''.join(np.load(p)['samples'].tobytes() for p in sorted(glob.glob(sys.argv[1] + '/*.npz')))).hexdigest()[:16])" "$out/blr/cache")"
  echo "blr_csv $(cut -d, -f1-9,11- "$out/blr/blr.csv" | sha256sum | cut -c1-16)"
}

fingerprints "$WORK/base" "$WORK/out_base" > "$WORK/base.txt"
fingerprints "$ROOT" "$WORK/out_tree" > "$WORK/tree.txt"
status=0
while read -r name digest; do
  other="$(awk -v n="$name" '$1 == n {print $2}' "$WORK/tree.txt")"
  if [ -n "$digest" ] && [ "$digest" = "$other" ]; then verdict=same; else verdict=DIFFERENT; status=1; fi
  printf "%-14s %-9s %s (%s) vs this tree %s\n" "$name" "$verdict" "$BASE" "${digest:-none}" "${other:-none}"
done < "$WORK/base.txt"
exit $status
