#!/usr/bin/env bash
# The test command (README, and .ci/run calls exactly this): installs the Debian
# packages that are missing, configures a Release build (with the CUDA backend wherever
# nvcc exists), builds everything and runs the whole suite with CTest. Then it builds the
# CUDA backend for the host emulator (tools/cuda_emu) and runs every CUDA test there, so
# that the GPU code is exercised on machines without a GPU.
#   CAPTION_BUILD_DIR  build folder (default: build; the emulated one is <it>-emu)
#   CAPTION_REQUIRE_GPU=1  a test that needs a GPU and finds none fails instead of skipping
#   CAPTION_EMULATED_CUDA=0  skip the emulated CUDA stage
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
build=${CAPTION_BUILD_DIR:-build}
jobs=$(nproc)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CAPTION_CMAKE_ARGS:-}
cmake --build "$build" -j"$jobs"
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 600
if [[ "${CAPTION_EMULATED_CUDA:-1}" != "0" ]]; then
  echo "== the CUDA tests on the host emulator (tools/cuda_emu)"
  cmake -S . -B "$build-emu" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCAPTION_CUDA_EMULATION=ON \
    -DCAPTION_BENCH=OFF ${CAPTION_CMAKE_ARGS:-}
  cmake --build "$build-emu" -j"$jobs"
  CAPTION_REQUIRE_GPU=1 ctest --test-dir "$build-emu" --output-on-failure -j"$jobs" --timeout 600 -L cuda
  echo "== again, each block's threads in reverse order (a kernel must not depend on it)"
  CAPTION_EMU_REVERSE=1 CAPTION_EMU_FIBERS=1 CAPTION_REQUIRE_GPU=1 \
    ctest --test-dir "$build-emu" --output-on-failure -j"$jobs" --timeout 600 -L cuda
fi
