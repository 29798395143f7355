#!/usr/bin/env bash
# The GPU check, decision first: under 9 minutes on a bare H100/H200 with no network. It runs from a
# copy of the repository with PYTHONPATH (nothing installed, nothing downloaded; the Triton decision
# needs no _C build), with the machine's python3 (torch, triton, transformers as found there):
#
#   1. versions: GPU, driver, python, torch, triton, transformers                        ~10 s
#   2. end to end, the decision: attnlrp and cp_lrp, Triton vs torch (SDPA), bf16, BERT-base
#      batch 32 × L 128 and 512, ragged, and a decoder (Llama-3.2-1B widths, 4 layers,
#      batch 8 × L 512, left-padded, causal) where the tree has the llama family: first
#      call, steady state, score agreement, verdict over every row                       ≤ 260 s
#   3. kernel rows: linear rule + matmul vs torch's and the bare matmul; attention vs
#      SDPA × (¼, ¼, ½); causal attention (grouped K/V) vs SDPA is_causal and, left-
#      padded, vs the torch backend; LayerNorm; GELU; RMSNorm; the SwiGLU backward       ≤ 80 s
#   4. edge cases (bf16): head dim 256, B·H > 65,535, a fully padded sequence at L 512    ≤ 45 s
#   5. the bf16 Triton tests of tests/ops and tests/backends                              ≤ 115 s
#   6. if 200 s are left: build _C with CUDA for this GPU (setup.py build_ext --inplace, no
#      pip) and run the non-Triton tests of tests/ops and tests/backends                   the rest
#
# Files in $OUT (or /tmp/lrp_gpu_check), 7: summary.txt (one screen: versions, the verdict and
# every table), e2e.log, kernels.log, edge.log, triton_tests.log, cuda.log, tuning.json (Triton's
# tuning choices, keyed by GPU and versions: configs.py's defaults can be checked against them).
#
#   bash benchmarks/gpu_check.sh              # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run    # print the plan, run nothing (any machine)
#
# Exit status: 0 when steps 2–5 ran and passed (the verdict itself is a finding, not a failure).
set -uo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."

PY=${PYTHON:-python3}
LOGS=${OUT:-/tmp/lrp_gpu_check}
BUDGET_S=${GPU_CHECK_BUDGET_S:-510}  # 8.5 minutes in all
START=$(date +%s)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TRANSFORMERS_OFFLINE=1
export LRP_KERNELS_TRITON_TUNING_FILE="$LOGS/tuning.json"
BENCH="benchmarks/e2e/bench_gpu_e2e.py"
PYTEST=("$PY" -m pytest -q -p no:cacheprovider -o addopts= tests/ops tests/backends)

# STEPS: name | limit s | is a test (fails the check) | log | command
STEPS=(
  "end to end (the decision)|260|1|e2e.log|$PY $BENCH e2e"
  "kernel rows|80|0|kernels.log|$PY $BENCH kernels"
  "edge cases|45|1|edge.log|$PY $BENCH edge"
  "bf16 Triton tests|115|1|triton_tests.log|${PYTEST[*]} -k 'triton and bf16'"
  "CUDA build + tests|0|0|cuda.log|bash $SELF --cuda-step"
)

if [[ ${1:-} == --cuda-step ]]; then  # step 6, in its own process (killed as a whole at its limit)
  ARCH=$("$PY" -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}')")
  LRP_KERNELS_CUDA=1 LRP_KERNELS_CUDA_ARCHS=$ARCH MAX_JOBS=$(nproc) "$PY" setup.py -q build_ext --inplace || exit 1
  "$PY" -c "from lrp_kernels.backends.cpp import _glue; assert _glue.has_cuda(), 'built without CUDA'" || exit 1
  exec "${PYTEST[@]}" -k "not triton"
fi

if [[ ${1:-} == --dry-run ]]; then
  echo "gpu_check plan (budget ${BUDGET_S}s; logs in $LOGS):"
  echo "  versions                         -> summary.txt"
  for step in "${STEPS[@]}"; do
    IFS='|' read -r name limit is_test log cmd <<<"$step"
    ((limit == 0)) && limit="rest, if >= 200s are left"
    printf '  %-32s limit %-24s -> %-17s %s\n' "$name" "${limit}" "$log" "$cmd"
  done
  echo "  summary                          -> summary.txt (+ tuning.json)"
  exit 0
fi

mkdir -p "$LOGS"
SUMMARY="$LOGS/summary.txt"
: >"$SUMMARY"
say() { echo "$@" | tee -a "$SUMMARY"; }
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  say "gpu_check: torch sees no CUDA device; nothing to check here."
  exit 1
fi
say "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
say "$("$PY" -c "
import platform, torch
def v(name):
    try:
        return __import__(name).__version__
    except Exception as exc:
        return f'missing ({type(exc).__name__})'
cc = ''.join(map(str, torch.cuda.get_device_capability()))
print(f'python {platform.python_version()} | torch {torch.__version__} (CUDA {torch.version.cuda}) | triton {v(\"triton\")} '
      f'| transformers {v(\"transformers\")} | {torch.cuda.get_device_name()} sm_{cc}')
" 2>&1 | tail -1)"

FAILED=0
STATUS=()
for step in "${STEPS[@]}"; do
  IFS='|' read -r name limit is_test log cmd <<<"$step"
  left=$((BUDGET_S - ($(date +%s) - START)))
  if ((limit == 0)); then
    limit=$((left - 10))
    ((limit < 190)) && { STATUS+=("$(printf '%-30s skipped (%ss left)' "$name" "$left")"); continue; }
  fi
  ((limit > left - 5)) && limit=$((left - 5))
  if ((limit < 15)); then
    STATUS+=("$(printf '%-30s skipped (time budget spent)' "$name")")
    ((is_test)) && FAILED=1
    continue
  fi
  t0=$(date +%s)
  echo "=== $name (limit ${limit}s): $cmd"
  timeout "$limit" bash -c "$cmd" >"$LOGS/$log" 2>&1
  rc=$?
  word=ok
  ((rc == 124)) && word=TIMEOUT
  ((rc != 0 && rc != 124)) && word="rc=$rc"
  ((rc != 0 && is_test)) && FAILED=1
  counts=$(grep -E '[0-9]+ (passed|failed|skipped|errors?)' "$LOGS/$log" | tail -1)
  STATUS+=("$(printf '%-30s %-8s %4ss %s' "$name" "$word" "$(($(date +%s) - t0))" "$counts")")
  tail -3 "$LOGS/$log"
done

{
  echo
  grep -h -v '^$' "$LOGS/e2e.log" 2>/dev/null | grep -v -E '^(Traceback|  File)' | tail -20
  echo
  grep -h -v '^$' "$LOGS/kernels.log" 2>/dev/null | tail -32
  echo
  grep -h -v '^$' "$LOGS/edge.log" 2>/dev/null | tail -6
  echo
  echo "steps ($(($(date +%s) - START))s in all):"
  printf '  %s\n' "${STATUS[@]}"
  grep -h "^VERDICT" "$LOGS/e2e.log" 2>/dev/null || echo "VERDICT Triton >= 1.5x torch(SDPA) end to end: unknown (the end-to-end step did not finish)"
} | tee -a "$SUMMARY"
exit $FAILED
