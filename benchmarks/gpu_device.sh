#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS.md, as run on a one-GPU machine with JAX + CUDA and no TensorFlow.
# Keras, DEAP and pydantic travel as wheels in .whl/ (Python 3.12, x86_64); results go to $OUT.
set -u
OUT="${OUT:-/tmp/evoprune-gpu}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed" >&2; exit 1; }
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
# 1. one evaluator call against reference-style model.fit per mask, same masks and epochs (issue 2)
timeout "${EVALUATOR_TIMEOUT_S:-150}" python3 -c \
  "from benchmarks.bench_evaluator import main; main(masks=${MASKS:-8}, epochs=${EPOCHS:-20})" \
  2>&1 | grep -v -E '^[IWE]0000' | tee "$OUT/evaluator.log"
# 2. the full experiment: 10 steady-state runs x 200 evaluations, 600 epochs max, capped in time (issue 3)
timeout "${SEARCH_TIMEOUT_S:-330}" python3 -m evoprune.benchmarks.bench_gpu_search --runs 10 --max-evaluations 200 \
  --time-limit-s "${SEARCH_LIMIT_S:-280}" --out "$OUT/search" 2>&1 | grep -v -E '^[IWE]0000' | tee "$OUT/search.log"
cp "$OUT/search/summary.json" "$OUT/search_summary.json" 2>/dev/null || true
rm -rf "$OUT/search"
