#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS.md in one short script, for a one-GPU machine with JAX + CUDA and no
# TensorFlow. Keras, DEAP and pydantic travel as wheels in .whl/ (Python 3.12, x86_64) when the machine
# lacks them; results go to $OUT. At most about 11 minutes (its timeouts: 150 + 2 x 90 + 330 s) plus start.
# Tiny rehearsal on a CPU (under a minute):
#   KERAS_BACKEND=jax JAX_PLATFORMS=cpu MASKS=2 EPOCHS=2 ROUND_MASKS=2 ROUND_EPOCHS=2 RUNS=2 \
#   MAX_EVALUATIONS=8 POPULATION=4 MAX_EPOCHS=3 FEATURES=256 PEAK_TFLOPS= bash benchmarks/gpu_device.sh
set -u
OUT="${OUT:-/tmp/evoprune-gpu}"
PEAK_TFLOPS="${PEAK_TFLOPS-67}"  # H200 FP32 without tensor cores, NVIDIA's H200 datasheet
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || { echo "wheel install failed" >&2; exit 1; }
fi
# The installed layout (evoprune.workers = workers/, ...) as a tree of folder links: this bare machine has no
# setuptools to install the checkout with, and the links need none.
namespace=/tmp/evoprune-namespace
rm -rf "$namespace" && mkdir -p "$namespace/evoprune"
ln -s "$PWD/evoprune/__init__.py" "$namespace/evoprune/__init__.py"
for folder in api coordinator workers shared benchmarks configs; do ln -s "$PWD/$folder" "$namespace/evoprune/$folder"; done
export PYTHONPATH="/tmp/site:$namespace:$PWD" KERAS_BACKEND="${KERAS_BACKEND:-jax}" PYTHONUNBUFFERED=1 \
  XLA_PYTHON_CLIENT_PREALLOCATE=false
peak_arg=()
[ -n "$PEAK_TFLOPS" ] && peak_arg=(--peak-tflops "$PEAK_TFLOPS")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
quiet() { grep -v -E '^[IWE]0000'; }
# 1. evaluator: model.fit per mask vs batched (fused), fused vs one call per epoch, achieved TFLOP/s
timeout "${EVALUATOR_TIMEOUT_S:-150}" python3 -m evoprune.api.cli bench --masks "${MASKS:-8}" \
  --epochs "${EPOCHS:-20}" "${peak_arg[@]}" 2>&1 | quiet | tee "$OUT/evaluator.log"
# 2. a steady-state round (20 masks) per step: XLA command buffers (CUDA graphs) at their default and off
for buffers in default off; do
  flags="${XLA_FLAGS:-}"
  [ "$buffers" = off ] && flags="$flags --xla_gpu_enable_command_buffer="
  XLA_FLAGS="$flags" timeout "${ROUND_TIMEOUT_S:-90}" python3 -m evoprune.benchmarks.bench_round \
    --masks "${ROUND_MASKS:-20}" --epochs "${ROUND_EPOCHS:-100}" --label "command-buffers-$buffers" \
    2>&1 | quiet | tee -a "$OUT/round.log"
done
# 3. the experiment, bounded: the first round (10 runs x 30 masks) and 3 steady rounds, then the projection
timeout "${SEARCH_TIMEOUT_S:-330}" python3 -m evoprune.benchmarks.bench_gpu_search --runs "${RUNS:-10}" \
  --max-evaluations "${MAX_EVALUATIONS:-200}" --population "${POPULATION:-30}" --max-epochs "${MAX_EPOCHS:-600}" \
  --features "${FEATURES:-2048}" --steady-rounds "${STEADY_ROUNDS:-3}" --time-limit-s "${SEARCH_LIMIT_S:-300}" \
  "${peak_arg[@]}" --out "$OUT/search" 2>&1 | quiet | tee "$OUT/search.log"
cp "$OUT/search/summary.json" "$OUT/search_summary.json" 2>/dev/null || true
rm -rf "$OUT/search"
