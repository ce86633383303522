#!/usr/bin/env bash
# One-command accelerator benchmark: nested draws/s of every generator family at 1e6-1e8 draws,
# bootstrap B = 100 fit time, compile times, peak device memory, device name; under 8 minutes
# on one GPU. Writes benchmarks/results/gpu_<device>.txt (see benchmarks/README.md).
#
#   benchmarks/gpu.sh            # on the accelerator (needs jax with CUDA/ROCm/TPU support)
#   benchmarks/gpu.sh --quick    # small sizes, e.g. on a CPU; or DCMA_BENCH_QUICK=1
#   PYTHON=python3 benchmarks/gpu.sh --budget 300 --out /tmp/gpu.txt
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
exec "$python" benchmarks/bench_gpu.py "$@"
