#!/usr/bin/env bash
# GPU check of the compiled kernels, in one go on a CUDA machine (under 8 minutes on an H100):
#   1. build lrp_kernels._C with the CUDA kernels for this GPU's architecture (pip install -e,
#      no build isolation: the machine may be offline, its setuptools/pybind11/cmake/ninja are used);
#   2. run tests/ops and tests/backends without Triton (CUDA and CPU kernels against the torch reference);
#   3. run the Triton cases of tests/ops and tests/backends (compiled for this GPU);
#   4. run benchmarks/ops -k cuda (every CUDA backend's kernels vs the torch reference);
#   5. run benchmarks/e2e/bench_gpu_e2e.py and benchmarks/e2e/bench_e2e.py, if present;
# then print a short table: each step's status and time, and the kernel speedups.
#
#   bash benchmarks/gpu_check.sh                 # logs in $OUT (if set) or /tmp/lrp_gpu_check
#   PYTHON=/path/to/python LRP_KERNELS_CUDA_ARCHS=90 bash benchmarks/gpu_check.sh
#
# Exit status: 0 when the build and every test step passed (benchmarks never fail the check).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
LOGS=${OUT:-/tmp/lrp_gpu_check}
mkdir -p "$LOGS"
BUDGET_S=${GPU_CHECK_BUDGET_S:-450}  # stay under 8 minutes in total
START=$(date +%s)
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export MAX_JOBS=${MAX_JOBS:-$(nproc)}

SUMMARY=()
FAILED=0

# run_step NAME LIMIT_S IS_TEST LOGFILE COMMAND...: time-limited, logged, summarized.
run_step() {
  local name=$1 limit=$2 is_test=$3 log=$4
  shift 4
  local left=$((BUDGET_S - ($(date +%s) - START)))
  if ((left < 20)); then
    SUMMARY+=("$(printf '%-28s %-8s %6s' "$name" skipped "-") (time budget spent)")
    ((is_test)) && FAILED=1
    return
  fi
  ((limit > left)) && limit=$left
  local t0 status
  t0=$(date +%s)
  echo "=== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" >"$LOGS/$log" 2>&1
  status=$?
  local dt=$(($(date +%s) - t0))
  local word=ok
  if ((status == 124)); then word=timeout; elif ((status != 0)); then word="rc=$status"; fi
  SUMMARY+=("$(printf '%-28s %-8s %5ss' "$name" "$word" "$dt") $(grep -E '[0-9]+ (passed|failed|skipped|errors?)( |,|$)' "$LOGS/$log" | tail -1)")
  if ((status != 0)); then
    tail -25 "$LOGS/$log"
    ((is_test)) && FAILED=1
  else
    tail -3 "$LOGS/$log"
  fi
}

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device; nothing to check here." >&2
  exit 1
fi
ARCH=$("$PY" -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}')")
export LRP_KERNELS_CUDA=1 LRP_KERNELS_CUDA_ARCHS=${LRP_KERNELS_CUDA_ARCHS:-$ARCH}
"$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"
echo "building for CUDA architectures $LRP_KERNELS_CUDA_ARCHS with $MAX_JOBS jobs"

run_step "build (pip install -e)" 300 1 build.log \
  "$PY" -m pip install --no-build-isolation --no-deps -v -e .
run_step "import + has_cuda" 60 1 import.log "$PY" -c "
import torch
from lrp_kernels.backends.cpp import CUDA, _glue
assert CUDA.unavailable_reason('cuda') is None, CUDA.unavailable_reason('cuda')
assert _glue.has_cuda(), 'built without CUDA'
u = torch.randn(1000, 77, device='cuda')
torch.testing.assert_close(CUDA.activation.forward(u, 'gelu'), torch.nn.functional.gelu(u))
print('ok: _C has CUDA, ISA', _glue._C.cpu_isa())
"
run_step "tests: cpp + cuda kernels" 180 1 tests.log \
  "$PY" -m pytest -q -p no:cacheprovider tests/ops tests/backends -k "not triton"
run_step "tests: triton" 150 1 triton_tests.log \
  "$PY" -m pytest -q -p no:cacheprovider tests/ops tests/backends -k triton
run_step "bench: cuda kernels vs torch" 150 0 bench.log \
  "$PY" -m pytest -q -p no:cacheprovider benchmarks/ops -k cuda \
  --benchmark-columns=median,iqr,rounds --benchmark-max-time=0.5
# A benchmark file is either a script (it has a __main__ block) or a pytest-benchmark module
# (then only its CUDA cases run).
run_bench_file() {
  local file=$1 name=$2 limit=$3 log=$4
  [[ -f $file ]] || return 0
  if grep -q '__name__ == "__main__"' "$file"; then
    run_step "$name" "$limit" 0 "$log" "$PY" "$file"
  else
    run_step "$name" "$limit" 0 "$log" "$PY" -m pytest -q -p no:cacheprovider "$file" -k cuda \
      --benchmark-columns=median,rounds
  fi
}
run_bench_file benchmarks/e2e/bench_gpu_e2e.py "bench: gpu end to end" 150 bench_gpu_e2e.log
run_bench_file benchmarks/e2e/bench_e2e.py "bench: end to end" 120 bench_e2e.log

{
  echo
  echo "=== gpu_check summary ($(($(date +%s) - START))s, archs $LRP_KERNELS_CUDA_ARCHS)"
  printf '%s\n' "${SUMMARY[@]}"
  echo
  sed -n '/^kernels vs the torch reference/,/^$/p' "$LOGS/bench.log" 2>/dev/null | grep -E '^(kernels|device|cuda|cpu)'
  if [[ -f "$LOGS/bench_gpu_e2e.log" ]]; then
    echo
    echo "--- bench_gpu_e2e.py (last lines)"
    tail -30 "$LOGS/bench_gpu_e2e.log"
  fi
  if [[ -f "$LOGS/bench_e2e.log" ]]; then
    echo
    echo "--- bench_e2e.py (last lines)"
    tail -20 "$LOGS/bench_e2e.log"
  fi
} | tee "$LOGS/summary.txt"
exit $FAILED
