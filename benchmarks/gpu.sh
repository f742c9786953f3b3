#!/usr/bin/env bash
# GPU checks and benchmarks in one go (< 8 minutes on one GPU), ending with one table.
#
#   pip install ".[gpu,dev]" && bash benchmarks/gpu.sh            # on a machine with an NVIDIA GPU
#   bash benchmarks/gpu.sh --dry-run                               # the same script on CPU, tiny sizes (CI)
#
# 1. a GPU subset of the test suite with the GPU backend (JAX_PLATFORMS=cuda): every family's solver in float64;
# 2. the main job (`dmft run configs/deep_linear_mup.toml`), cold and warm compilation cache;
# 3. sweep throughput of configs/sweeps/scale_out_1000.toml (1000 points) on every local GPU, and its twin sweep.
# Each step has its own time limit; a step that fails or runs out of time is reported as such in the table.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
export OPENBLAS_NUM_THREADS=1 TF_CPP_MIN_LOG_LEVEL=3
CACHE="$(mktemp -d)"
export DMFT_CACHE_DIR="$CACHE"
trap 'rm -rf "$CACHE"' EXIT

if [[ $DRY == 1 ]]; then
    export JAX_PLATFORMS=cpu
    TESTS=(tests/test_sweep_devices.py::test_split_and_padding)
    SWEEP_GRID='lr = [0.01, 0.02]
width_ratio = [1, 2]
gamma0 = [0.5, 1]'
    SIM_GRID='lr = [0.01, 0.02]'
    SIM_SET=(--set simulate.dim=16 --set simulate.seeds=2)
    MAIN_SET=(--set optim.steps=6 --set solver.outliers=false)
    LIMIT=300
else
    export JAX_PLATFORMS=cuda
    if ! python -c "import jax, sys; sys.exit(0 if jax.devices()[0].platform == 'gpu' else 1)" 2>/dev/null; then
        echo "gpu.sh: no GPU visible to JAX (pip install '.[gpu]'; nvidia-smi); use --dry-run on CPU" >&2
        exit 2
    fi
    TESTS=(tests/test_deep_linear_theory.py tests/test_deep_linear_outliers.py tests/test_mean_field_linear.py
           tests/test_sgd_sde_solver.py tests/test_diagonal_linear_solver.py tests/test_spectra_outliers.py
           tests/test_sweep_shard.py)
    SWEEP_GRID=""   # the shipped 1000-point grid
    SIM_GRID='lr = [0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1]
gamma0 = [0.5, 1, 2, 4]'
    SIM_SET=(--set simulate.dim=256 --set simulate.seeds=4)
    MAIN_SET=()
    LIMIT=420
fi

ROWS=()
row() { ROWS+=("$(printf '%-52s %14s  %s' "$1" "$2" "$3")"); }
now() { python -c "import time; print(time.perf_counter())"; }
secs() { python -c "print(f'{$2 - $1:.1f} s')"; }

DEVICE=$(python -c "import jax; d = jax.devices(); print(f'{len(d)} x {d[0].device_kind}')" 2>/dev/null || echo "?")
row "device" "$DEVICE" "JAX_PLATFORMS=$JAX_PLATFORMS"

# 1. tests on the GPU backend (the conftest's float64 and strict settings apply)
t0=$(now)
if timeout "$LIMIT" python -m pytest -q -x -p no:cacheprovider "${TESTS[@]}" > "$CACHE/tests.log" 2>&1; then
    row "tests (${#TESTS[@]} files)" "passed" "$(tail -1 "$CACHE/tests.log") [$(secs "$t0" "$(now)")]"
else
    row "tests (${#TESTS[@]} files)" "FAILED" "$(grep -m1 -E 'FAILED|Error' "$CACHE/tests.log" | cut -c1-80)"
fi

# 2. the main job, cold then warm cache
OUTD="$CACHE/out"
for label in cold warm; do
    t0=$(now)
    if timeout 240 dmft run configs/deep_linear_mup.toml --out "$OUTD/$label" "${MAIN_SET[@]}" > /dev/null 2>&1; then
        row "main job, $label cache" "$(secs "$t0" "$(now)")" "dmft run configs/deep_linear_mup.toml"
    else
        row "main job, $label cache" "FAILED" ""
    fi
done

# 3. sweep throughput (all local devices), theory then twin; a smaller grid is the shipped one with its [sweep] table
# replaced (written to a temporary file)
grid_config() {  # $1: the [sweep] table body, empty for the shipped grid
    if [[ -z "$1" ]]; then echo configs/sweeps/scale_out_1000.toml; return; fi
    sed '/^\[sweep\]/,$d' configs/sweeps/scale_out_1000.toml > "$CACHE/grid-$2.toml"
    printf '[simulate]\ndim = 16\nseeds = 2\nrecord_spectra = false\n\n[sweep]\n%s\n' "$1" >> "$CACHE/grid-$2.toml"
    echo "$CACHE/grid-$2.toml"
}
for kind in solve simulate; do
    SET=()
    GRID=$(grid_config "$SWEEP_GRID" "$kind")
    if [[ $kind == simulate ]]; then SET=("${SIM_SET[@]}"); GRID=$(grid_config "$SIM_GRID" "$kind"); fi
    t0=$(now)
    if timeout 240 dmft sweep "$GRID" --kind "$kind" --out "$OUTD/sweep-$kind" \
            --no-figures "${SET[@]}" > "$CACHE/sweep-$kind.log" 2>&1; then
        n=$(grep -m1 -oE '[0-9]+ points' "$CACHE/sweep-$kind.log" | grep -oE '[0-9]+')
        s=$(grep -oE '^\[[0-9.]+ s\]' "$CACHE/sweep-$kind.log" | tr -d '[] s')
        row "sweep ($kind), first run" "$(python -c "print(f'{$n / $s:.1f} pt/s')")" \
            "$n points in $s s, compiling included"
    else
        row "sweep ($kind)" "FAILED" "$(tail -1 "$CACHE/sweep-$kind.log" | cut -c1-80)"
    fi
done

echo
printf '%-52s %14s  %s\n' "gpu.sh$([[ $DRY == 1 ]] && echo ' (dry run on CPU)')" "value" "note"
printf '%s\n' "${ROWS[@]}"
