#!/usr/bin/env bash
# One-shot GPU check: on a machine with an NVIDIA GPU and CuPy, run every GPU test (`pytest -m gpu`: the CuPy kernel
# path of each headline op against the CPU results, the `cuda` device of the generic ops) and then the GPU
# benchmarks, and print a short summary table last. Made for a machine with no network: it installs nothing and
# imports the package from this checkout (PYTHONPATH), so CuPy, NumPy, Numba and pytest must already be there
# (PyTorch too for the benchmarks). Everything finishes within GPU_CHECK_SECONDS (default 290 s) of wall time.
#
#   scripts/gpu_check.sh            # or: make gpu-check
#   PYTHON=/path/to/python GPU_CHECK_SECONDS=600 scripts/gpu_check.sh
#   GPU_CHECK_PYTEST_ARGS="-n 8" GPU_CHECK_EXAMPLE_SECONDS=120 scripts/gpu_check.sh
#
# GPU_CHECK_BENCH_ARGS is added to the benchmark command (e.g. "--max-seconds 120" to reach the compile section).
# GPU_CHECK_PYTEST_ARGS is added to the pytest command (default: "-n 8" when pytest-xdist is importable: the CPU
# references of the GPU tests compile and run in parallel). GPU_CHECK_EXAMPLE_SECONDS > 0 also trains the main
# example on the GPU (`examples/stn_digits.py --device cuda`) for at most that long, after the benchmarks.
#
# Logs go to runs/gpu-check/. Exit status: 0 when the GPU is usable and every step passed, 1 otherwise.
set -u -o pipefail

cd "$(dirname "$0")/.."
REPO="$(pwd)"
PYTHON="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_SECONDS:-290}"
LOGS="$REPO/runs/gpu-check"
mkdir -p "$LOGS"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)

remaining() { echo $((BUDGET - ($(date +%s) - START))); }
rows=()
add_row() { rows+=("$(printf '%-18s %-64s %5ss' "$1" "${2:0:64}" "$3")"); }
summary() {
    echo
    echo "== gpu-check summary ($(date -u '+%Y-%m-%d %H:%M UTC'), ${GPU_NAME:-no GPU}) =="
    printf '%-18s %-64s %6s\n' "step" "result" "time"
    for row in "${rows[@]}"; do echo "$row"; done
}

# ---- 1. environment: is there a GPU CuPy can use? ----------------------------------------------------------------
t0=$(date +%s)
ENV_REPORT=$("$PYTHON" - <<'EOF' 2>&1
import sys
import numpy, scratchattn
from scratchattn import backend
reason = backend.cuda_unavailable_reason()
versions = f"python {sys.version.split()[0]}, numpy {numpy.__version__}"
if reason is None:
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    cuda = cupy.cuda.runtime.runtimeGetVersion()
    print(f"GPU_NAME={name}")
    print(f"VERSIONS={versions}, cupy {cupy.__version__}, CUDA runtime {cuda // 1000}.{cuda % 1000 // 10}")
else:
    print(f"NO_GPU={reason}")
    print(f"VERSIONS={versions}")
EOF
)
env_status=$?
echo "$ENV_REPORT" | tee "$LOGS/environment.log"
GPU_NAME=$(echo "$ENV_REPORT" | sed -n 's/^GPU_NAME=//p')
VERSIONS=$(echo "$ENV_REPORT" | sed -n 's/^VERSIONS=//p')
if [ $env_status -ne 0 ] || [ -z "$GPU_NAME" ]; then
    add_row "environment" "no usable GPU (see runs/gpu-check/environment.log)" $(($(date +%s) - t0))
    summary
    exit 1
fi
add_row "environment" "$VERSIONS" $(($(date +%s) - t0))
failed=0

# ---- 2. the GPU tests ----------------------------------------------------------------------------------------------
# At most two thirds of the budget, so the benchmarks get their turn even if the tests hang.
t0=$(date +%s)
test_budget=$(( $(remaining) * 2 / 3 ))
if [ -z "${GPU_CHECK_PYTEST_ARGS+set}" ]; then
    GPU_CHECK_PYTEST_ARGS=$("$PYTHON" -c "import xdist" 2>/dev/null && echo "-n 8")
fi
# shellcheck disable=SC2086  # the extra arguments are meant to be split
timeout --kill-after=10 "$test_budget" "$PYTHON" -m pytest -m gpu -q -rs -p no:cacheprovider ${GPU_CHECK_PYTEST_ARGS} \
    "$REPO/tests" \
    2>&1 | tee "$LOGS/pytest.log"
status=${PIPESTATUS[0]}
counts=$(grep -E '[0-9]+ (passed|failed|error|errors|skipped|deselected)' "$LOGS/pytest.log" | tail -1 |
         sed -E 's/=+//g; s/ in [0-9.]+s.*//; s/^ +//')
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    add_row "pytest -m gpu" "TIMED OUT after ${test_budget}s; ${counts:-no summary}" $(($(date +%s) - t0)); failed=1
elif [ "$status" -ne 0 ]; then
    add_row "pytest -m gpu" "FAILED: ${counts:-exit status $status}" $(($(date +%s) - t0)); failed=1
else
    add_row "pytest -m gpu" "ok: ${counts}" $(($(date +%s) - t0))
fi

# ---- 3. the GPU benchmarks ---------------------------------------------------------------------------------------
t0=$(date +%s)
if [ -f "$REPO/benchmarks/__main__.py" ]; then
    bench_budget=$(( $(remaining) - 5 ))
    if [ "$bench_budget" -lt 10 ]; then
        add_row "benchmarks --gpu" "not run: time budget spent" 0; failed=1
    else
        timeout --kill-after=10 "$bench_budget" "$PYTHON" -m benchmarks --gpu ${GPU_CHECK_BENCH_ARGS:-} 2>&1 | tee "$LOGS/benchmarks.log"
        status=${PIPESTATUS[0]}
        if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
            add_row "benchmarks --gpu" "TIMED OUT after ${bench_budget}s (runs/gpu-check/benchmarks.log)" \
                $(($(date +%s) - t0)); failed=1
        elif [ "$status" -ne 0 ]; then
            add_row "benchmarks --gpu" "FAILED: exit status $status (runs/gpu-check/benchmarks.log)" \
                $(($(date +%s) - t0)); failed=1
        else
            add_row "benchmarks --gpu" "ok (table in runs/gpu-check/benchmarks.log)" $(($(date +%s) - t0))
        fi
    fi
else
    add_row "benchmarks --gpu" "not run: benchmarks/__main__.py does not exist yet" 0
fi

# ---- 4. the main example on the GPU (optional) ----------------------------------------------------------------
example_budget=${GPU_CHECK_EXAMPLE_SECONDS:-0}
if [ "$example_budget" -gt 0 ]; then
    t0=$(date +%s)
    left=$(( $(remaining) - 5 ))
    [ "$left" -lt "$example_budget" ] && example_budget=$left
    if [ "$example_budget" -lt 10 ]; then
        add_row "stn_digits cuda" "not run: time budget spent" 0
    else
        timeout --kill-after=10 "$example_budget" "$PYTHON" "$REPO/examples/stn_digits.py" --device cuda \
            --no-progress --out "$LOGS/stn_digits" 2>&1 | tee "$LOGS/stn_digits.log"
        status=${PIPESTATUS[0]}
        if [ "$status" -eq 0 ]; then
            add_row "stn_digits cuda" "ok: $(grep -A3 'Test error' "$LOGS/stn_digits.log" | tail -2 | tr -s ' \n' ' ')" \
                $(($(date +%s) - t0))
        else
            add_row "stn_digits cuda" "exit status $status (runs/gpu-check/stn_digits.log)" $(($(date +%s) - t0))
        fi
    fi
fi

summary
exit $failed
