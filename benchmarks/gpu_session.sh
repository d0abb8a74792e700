#!/usr/bin/env bash
# Everything issue 8 needs a GPU for, in one prepared run that fits a 15-minute device lease:
#   the GPU tests, the training CLI end to end, per-objective step times with the annealing overhead and
#   the speed-ups' before/after, the Chainer/PyTorch ratio at the paper's sizes, where a step's time goes
#   (host dispatch per network, host-side sampling, kernels per step and GPU busy time), the optimizer
#   update per network, and the throughput of concurrent runs.
#
#   bash benchmarks/gpu_session.sh [OUT_DIR]        (default: results/gpu_session)
#
# Each part has its own time cap (SIGTERM; 520 s in all with the device check, under the command's 590 s)
# so one slow part cannot eat the others' time. Outputs: OUT_DIR/<part>.txt and OUT_DIR/profile.json, eight
# files, the most the device tool brings back; the end of every part is printed again at the end (the
# output tail holds the numbers too); more in docs/status/gan.md. Needs Chainer, CuPy and torch: either
# the package installed with pip install -e ".[gpu,crosscheck]", or, on the project's device machine
# (Python 3.12, CuPy 14, torch, no Chainer), Chainer's wheel carried in .whl/ (built here with
# `.venv/bin/python -m pip wheel --no-deps --no-build-isolation -w .whl chainer==7.8.1`; .whl/ is in
# .git/info/exclude) and this command, with carry [".whl"] and timeout_s 590:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
#   PYTHONPATH=/tmp/site:$PWD PYTHON=python3 bash benchmarks/gpu_session.sh "$OUT"
#
# DEVICE and WIDTH (default 0 and 1.0) exist for a dry run of the whole script on the CPU before a lease:
#   DEVICE=-1 WIDTH=0.0625 bash benchmarks/gpu_session.sh /tmp/gpu_session_dry
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-results/gpu_session}"
DEV="${DEVICE:-0}"
W="${WIDTH:-1.0}"
PY="${PYTHON:-.venv/bin/python}"
command -v "$PY" >/dev/null || PY=python3
export PYTHONUNBUFFERED=1  # a part stopped by its cap keeps what it printed
PARTS="gpu_tests train step_time compare_torch profile optimizer_update concurrency"
mkdir -p "$OUT"
for name in $PARTS; do rm -f "$OUT/$name.txt"; done
rm -f "$OUT/profile.json"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_session.XXXXXX")"  # this run's own scratch: dry runs do not collide
trap 'rm -rf "$WORK"' EXIT
SESSION_START=$SECONDS
{
    echo "== device check (cap 25s)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    # chainer_va first: its compat layer must precede chainer (numpy 2.5 has no numpy.distutils)
    if [ "$DEV" != "-1" ]; then  # torch and CuPy both work in one process (compare_torch, profile need it)
        timeout -k 3 25 "$PY" -c "import chainer_va, cupy, chainer, torch; torch.zeros(1, device='cuda'); \
cupy.zeros(1).sum(); print('cupy', cupy.__version__, 'chainer', chainer.__version__, 'torch', torch.__version__, \
'cudnn', chainer.backends.cuda.cudnn_enabled)"
    fi
} >"$OUT/gpu_tests.txt" 2>&1
cat "$OUT/gpu_tests.txt"
part() {  # part NAME SECONDS COMMAND...: appends to OUT/NAME.txt
    local name="$1" limit="$2"; shift 2
    echo "== $name (cap ${limit}s): $*" | tee -a "$OUT/$name.txt"
    local start=$SECONDS
    timeout -k 3 "$limit" "$@" >>"$OUT/$name.txt" 2>&1
    echo "== $name: exit $? after $((SECONDS - start)) s" | tee -a "$OUT/$name.txt"
}
part gpu_tests 90 "$PY" -m pytest -q -m gpu tests/test_gpu.py
# the training CLI end to end on the device: 200 iterations, a stop, --resume to 300 (snapshots, log, plots,
# grids); then, whatever the training's exit, what it left (a separate part: a cap hit keeps the listing)
RUN="$WORK/train_run"
part train 55 bash -c "'$PY' -m chainer_va.train --objective jsd --anneal lik --lambda0 1 --dataset mnist5k \
    --width $W --iterations 300 --snapshot-interval 100 --sample-interval 100 --log-interval 50 --stop-at 200 \
    --progress-interval 1000 --device $DEV --out '$RUN' && \
    '$PY' -m chainer_va.train --out '$RUN' --resume --progress-interval 1000 --device $DEV"
part train 5 bash -c "ls -l '$RUN'; cat '$RUN/result.json'; echo; tail -c 1500 '$RUN/log'"
# one-step objectives and WGAN-GP separately: a cap hit loses one half, not both
part step_time 75 "$PY" benchmarks/step_time.py --device "$DEV" --width "$W" --repeat 20 --warmup 3 --objectives jsd,rkl
part step_time 75 "$PY" benchmarks/step_time.py --device "$DEV" --width "$W" --repeat 15 --warmup 2 --objectives wgan
part compare_torch 65 "$PY" benchmarks/compare_torch.py --device "$DEV" --width "$W" --repeat 30
part profile 45 "$PY" benchmarks/profile_step.py --device "$DEV" --width "$W" --anneal none,ent --steps 5 --kernels \
    --out "$OUT/profile.json"
part optimizer_update 25 "$PY" benchmarks/optimizer_update.py --device "$DEV" --width "$W" --repeat 100
part concurrency 60 "$PY" benchmarks/concurrency.py --device "$DEV" --width "$W" --runs 1,2,4 --steps 60 --anneal lik
for name in $PARTS; do
    echo "---- $name (last lines)"
    tail -n 30 "$OUT/$name.txt" | cut -c1-180
done
echo "wrote $OUT in $((SECONDS - SESSION_START)) s"
