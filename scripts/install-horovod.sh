#!/usr/bin/env bash
# Build Horovod 0.28.1 (PyTorch + gloo, no MPI) into a virtual environment that already has torch 2.14.1.
# Usage: scripts/install-horovod.sh [VENV]   (default .venv; `make test` calls it)
#
# Two fixes make the last Horovod release build against torch >= 2.10 (see README, "Horovod"):
# 1. a CUDA build of torch makes Horovod's CMake look for the CUDA toolkit even for a CPU/gloo build, so
#    CUDA_HOME/CUDAToolkit_ROOT/CUDACXX point at the real toolkit when one is installed;
# 2. torch's headers need C++20 while Horovod forces -std=gnu++14 after CXXFLAGS, so the compiler is
#    wrapped to append -std=gnu++20 last.
# Sites with MPI and NCCL: set HOROVOD_WITH_MPI=1 HOROVOD_GPU_OPERATIONS=NCCL and drop the two WITHOUT_MPI /
# CPU_OPERATIONS lines below (README, "Horovod on a cluster").
set -euo pipefail
VENV="${1:-.venv}"
PYTHON="$VENV/bin/python"
if "$PYTHON" -c "import horovod.torch" 2>/dev/null; then
  echo "horovod already installed in $VENV"; exit 0
fi
missing=()
for tool in g++ cmake; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ cmake >/dev/null
  else
    echo "install-horovod: ${missing[*]} missing (apt-get install g++ cmake)" >&2; exit 1
  fi
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
printf '#!/bin/sh\nexec %s "$@" -std=gnu++20\n' "$(command -v g++)" > "$WORK/gxx20"
chmod +x "$WORK/gxx20"
if [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda CUDAToolkit_ROOT=/usr/local/cuda CUDACXX=/usr/local/cuda/bin/nvcc
fi
echo "building horovod 0.28.1 in $VENV (about 5 minutes on 2 cores)"
CXX="$WORK/gxx20" MAKEFLAGS="-j$(nproc)" HOROVOD_WITH_PYTORCH=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
  HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_CPU_OPERATIONS=GLOO \
  "$VENV/bin/pip" install --quiet --no-cache-dir --no-build-isolation horovod==0.28.1
"$VENV/bin/horovodrun" --check-build
