#!/usr/bin/env bash
# Everything issue 8 needs a GPU for, in one prepared run that fits a 15-minute device lease:
#   the GPU tests, per-objective step times with the annealing overhead and the speed-ups' before/after,
#   the Chainer/PyTorch ratio at the paper's sizes, where a step's time goes (host dispatch per network,
#   kernels per step and GPU busy time), and the throughput of concurrent runs.
#
#   bash benchmarks/gpu_session.sh [OUT_DIR]        (default: results/gpu_session)
#
# Each part has its own time cap (540 s in all, under the device tool's 600 s per call) so one slow part
# cannot eat the others' time; every output goes to OUT_DIR/<part>.txt. Needs Chainer, CuPy and torch:
# either the package installed with pip install -e ".[gpu,crosscheck]", or, on the project's device
# machine (Python 3.12, CuPy 14, torch, no Chainer), Chainer's wheel carried in .whl/ (built here with
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
[ -x "$PY" ] || PY=python
mkdir -p "$OUT"
part() {  # part NAME SECONDS COMMAND...
    local name="$1" limit="$2"; shift 2
    echo "== $name (cap ${limit}s): $*" | tee "$OUT/$name.txt"
    local start=$SECONDS
    timeout "$limit" "$@" >>"$OUT/$name.txt" 2>&1
    echo "== $name: exit $? after $((SECONDS - start)) s" | tee -a "$OUT/$name.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
"$PY" -c "import cupy, chainer; print('cupy', cupy.__version__, 'chainer', chainer.__version__, 'cudnn', chainer.backends.cuda.cudnn_enabled)" >>"$OUT/gpu.txt" 2>&1
part gpu_tests 100 "$PY" -m pytest -q -m gpu tests/test_gpu.py
# the training CLI end to end on the device: 200 iterations, a stop, --resume to 300 (snapshots, log, plots, grids)
RUN="$OUT/train_run"
part train 60 bash -c "'$PY' -m chainer_va.train --objective jsd --anneal lik --lambda0 1 --dataset mnist5k \
    --width $W --iterations 300 --snapshot-interval 100 --sample-interval 100 --log-interval 50 --stop-at 200 \
    --device $DEV --out '$RUN' && '$PY' -m chainer_va.train --out '$RUN' --resume --device $DEV && ls '$RUN'"
part step_time 140 "$PY" benchmarks/step_time.py --device "$DEV" --width "$W" --repeat 20 --warmup 3
part compare_torch 70 "$PY" benchmarks/compare_torch.py --device "$DEV" --width "$W" --repeat 30
part profile 50 "$PY" benchmarks/profile_step.py --device "$DEV" --width "$W" --anneal none,ent --steps 5 --kernels \
    --out "$OUT/profile.json"
part concurrency 120 "$PY" benchmarks/concurrency.py --device "$DEV" --width "$W" --runs 1,2,4 --steps 60 --anneal lik
echo "wrote $OUT"
