#!/usr/bin/env bash
# The test command (README, and .ci/run calls exactly this): installs the Debian
# packages that are missing, configures a Release build (with the CUDA backend wherever
# nvcc exists), builds everything and runs the whole suite with CTest.
#   CAPTION_BUILD_DIR  build folder (default: build)
#   CAPTION_REQUIRE_GPU=1  a test that needs a GPU and finds none fails instead of skipping
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
build=${CAPTION_BUILD_DIR:-build}
jobs=$(nproc)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CAPTION_CMAKE_ARGS:-}
cmake --build "$build" -j"$jobs"
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 600
