#!/usr/bin/env bash
# The one prepared GPU check, run from the repository root on the lent GPU machine (see
# bench/gpu/README.md for the exact device `run` call). That machine has nvcc, CMake,
# ninja and Python with PyTorch but no package registry: the Debian packages the build
# needs come carried as .gpu-deps/root.tar.gz (made here by scripts/gpu-deps.sh).
#
# Steps, each guarded (a failure is recorded and the next step still runs), each under
# its own time limit inside an overall budget (CHECK_BUDGET_S, default 450 s):
#   env        nvidia-smi, tool versions, where cuDNN was found        -> env.txt
#   deps       unpack the carried prefix; WordNet; library paths       -> env.txt
#   probe      bench/gpu/device_probe.cu: copy GB/s, SGEMM/TF32/BF16    -> probe.txt
#   configure  CMake, sm_90 only, deps from .gpu-deps/root             -> build.log
#   build      everything (library, apps, tests, benchmarks)           -> build.log
#   ctest      the whole suite with CAPTION_REQUIRE_GPU=1               -> ctest.log, ctest-junit.xml
#   sanitizer  compute-sanitizer memcheck on test_ops_consistency      -> sanitizer.log
#   bench      bench_gpu vs PyTorch (torch_bench.py), compare.py     -> bench.log, summary.md
#   train      opt-in (CHECK_TRAIN_S): caption-train on the synthetic set -> bench.log
# Results go to $OUT/gpu-check-<UTC date>-<GPU name>/ (8 files at most, the device tool's
# limit), with summary.md; the same table is printed last. Exit status: 0 when every
# step passed (or was skipped by design), 1 otherwise.
#
# Environment: OUT (results root; default /tmp/caption-gpu-check/out), CHECK_BUDGET_S,
# CHECK_BUILD_DIR (default build-gpu), CHECK_LABEL (free text for the summary, e.g. the
# commit), CHECK_JOBS (default nproc), CHECK_CMAKE_ARGS (extra configure arguments),
# CHECK_BENCH_S (seconds kept for the benchmarks at the end; default 120: ctest and the
# sanitizer stop early enough to leave them), CHECK_BENCH_AMP=1 (our rows under autocast),
# CHECK_SKIP (steps not to run, e.g. "probe bench" for a rerun of the tests only; a skipped
# step is listed as SKIP, and a skipped bench leaves its seconds to ctest and the sanitizer),
# CHECK_PROFILE_ROWS (benchmark rows to run again with the per-op profile, comma-separated).
# CHECK_TEST_THREADS (OpenBLAS / OpenMP threads per test process under ctest; default 4).
# CHECK_BUILD_S (the build's own limit, default 330 s; only a dry run on a small CPU
# machine needs more).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
repo=$PWD

t_start=$(date +%s)
budget=${CHECK_BUDGET_S:-450}
deadline=$((t_start + budget))
jobs=${CHECK_JOBS:-$(nproc)}
build=${CHECK_BUILD_DIR:-build-gpu}
bench_s=${CHECK_BENCH_S:-120}
work=/tmp/caption-gpu-check
mkdir -p "$work"
arch=x86_64-linux-gnu

gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
safe_gpu=$(printf '%s' "${gpu_name:-no-gpu}" | tr -c 'A-Za-z0-9._-' '-' | tr -s '-' | sed 's/-$//')
res=${OUT:-$work/out}/gpu-check-$(date -u +%Y%m%d-%H%MZ)-$safe_gpu
mkdir -p "$res"
# The only files written under $res (the device tool returns at most 8).
ENV=$res/env.txt PROBE=$res/probe.txt BUILDLOG=$res/build.log CTESTLOG=$res/ctest.log
JUNIT=$res/ctest-junit.xml SANLOG=$res/sanitizer.log BENCHLOG=$res/bench.log
SUMMARY=$res/summary.md

names=() states=() secs=() details=()
skipping() {  # step: whether CHECK_SKIP names it
  case " ${CHECK_SKIP:-} " in *" $1 "*) return 0 ;; esac
  return 1
}
skipping bench && bench_s=0
record() {  # name status seconds detail
  names+=("$1"); states+=("$2"); secs+=("$3"); details+=("$4")
  printf '>>> %-10s %-7s %4ss  %s\n' "$1" "$2" "$3" "$4"
}
remaining() { echo $((deadline - $(date +%s))); }
# cap WANT RESERVE: seconds a step may take, leaving RESERVE for the steps after it.
cap() {
  local r=$(($(remaining) - $2))
  [ "$r" -lt "$1" ] && echo "$r" || echo "$1"
}
# run_limited SECONDS LOG cmd...: runs cmd with a time limit, appending to LOG; sets rc
# (124 on time-out).
run_limited() {
  local t=$1 log=$2
  shift 2
  if [ "$t" -lt 5 ]; then  # (timeout 0 would mean no limit at all)
    echo "### not run: the budget is spent ($*)" >>"$log"
    rc=124
    return
  fi
  timeout -k 10 "$t" "$@" >>"$log" 2>&1
  rc=$?
}

echo "=== caption GPU check: ${gpu_name:-no GPU visible}, $(date -u '+%F %T') UTC, budget ${budget}s"
nvidia-smi 2>&1 || true

# ---- env ------------------------------------------------------------------------------
t0=$(date +%s)
{
  echo "# caption GPU check, $(date -u '+%F %T') UTC; label: ${CHECK_LABEL:-none}"
  echo "## uname"; uname -a
  echo "## nvidia-smi"; nvidia-smi 2>&1
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,power.limit \
             --format=csv 2>&1
} >"$ENV" 2>&1
nvcc=$(command -v nvcc || true)
for c in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc; do
  [ -z "$nvcc" ] && [ -x "$c" ] && nvcc=$c
done
cuda_home=""
[ -n "$nvcc" ] && cuda_home=$(cd "$(dirname "$nvcc")/.." && pwd)
sanitizer=$(command -v compute-sanitizer || true)
for c in "$cuda_home/bin/compute-sanitizer" "$cuda_home/compute-sanitizer/compute-sanitizer"; do
  [ -z "$sanitizer" ] && [ -x "$c" ] && sanitizer=$c
done
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)

# cuDNN: an explicit CUDNN_INCLUDE_DIR/CUDNN_LIBRARY_DIR, else the CUDA folders, else
# the system, else Python's nvidia/cudnn wheel (PyTorch's); headers last from the carried
# copy. CMakeLists.txt reads the two variables as hints; we also pass the exact files.
cudnn_inc="" cudnn_lib=""
for d in "${CUDNN_INCLUDE_DIR:-}" "$cuda_home/include" /usr/include /usr/include/$arch; do
  [ -n "$d" ] && [ -f "$d/cudnn.h" ] && { cudnn_inc=$d; break; }
done
pick_lib() {  # folder -> libcudnn.so, else the highest libcudnn.so.N*
  [ -e "$1/libcudnn.so" ] && { echo "$1/libcudnn.so"; return; }
  local f
  for f in "$1"/libcudnn.so.[0-9]*; do [ -e "$f" ] && echo "$f"; done | sort -V | tail -1
}
for d in "${CUDNN_LIBRARY_DIR:-}" "$cuda_home/lib64" "$cuda_home/lib" /usr/lib/$arch; do
  [ -n "$d" ] && [ -n "$(pick_lib "$d")" ] && { cudnn_lib=$(pick_lib "$d"); break; }
done
if [ -z "$cudnn_inc" ] || [ -z "$cudnn_lib" ]; then
  for py in python3 /opt/torch/.venv/bin/python3; do
    command -v "$py" >/dev/null || continue
    for sp in $("$py" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
      [ -d "$sp/nvidia" ] || continue
      [ -z "$cudnn_inc" ] && cudnn_inc=$(dirname "$(find "$sp/nvidia" -maxdepth 4 -name cudnn.h | head -1)" 2>/dev/null)
      [ "$cudnn_inc" = "." ] && cudnn_inc=""
      if [ -z "$cudnn_lib" ]; then
        l=$(find "$sp/nvidia" -maxdepth 4 -name 'libcudnn.so*' | grep -E '/libcudnn\.so(\.[0-9]+)*$' | head -1)
        [ -n "$l" ] && cudnn_lib=$(pick_lib "$(dirname "$l")")
      fi
    done
    [ -n "$cudnn_inc" ] && [ -n "$cudnn_lib" ] && break
  done
fi
cudnn_note=""
if [ -z "$cudnn_inc" ] && [ -n "$cudnn_lib" ] && [ -f .gpu-deps/root/cudnn/include/cudnn.h ]; then
  cudnn_inc=$repo/.gpu-deps/root/cudnn/include
  cudnn_note=" (headers: carried copy)"
fi
{
  echo "## tools"
  echo "nvcc: ${nvcc:-MISSING}"; [ -n "$nvcc" ] && "$nvcc" --version | tail -2
  echo "cmake: $(cmake --version 2>&1 | head -1)"; echo "ninja: $(ninja --version 2>&1)"
  echo "c++: $(c++ --version 2>&1 | head -1)"
  echo "compute-sanitizer: ${sanitizer:-MISSING}"
  echo "python3: $(command -v python3) $(python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1)"
  echo "/usr/bin/python3: $(/usr/bin/python3 -c 'import torch, torchvision, nltk; print("torch+torchvision+nltk ok")' 2>&1 | tail -1)"
  echo "cuDNN include: ${cudnn_inc:-MISSING}$cudnn_note"
  [ -n "$cudnn_inc" ] && grep -hE '#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ' "$cudnn_inc/cudnn_version.h" 2>/dev/null
  echo "cuDNN library: ${cudnn_lib:-MISSING} -> $(readlink -f "${cudnn_lib:-/nonexistent}" 2>/dev/null)"
  echo "carried deps: $(tr '\n' ' ' <.gpu-deps/STAMP 2>/dev/null)"
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo 'no .git here'); label: ${CHECK_LABEL:-none}"
} >>"$ENV" 2>&1
if [ -n "$gpu_name" ] && [ -n "$nvcc" ]; then
  record env PASS $(($(date +%s) - t0)) "$gpu_name; nvcc $("$nvcc" --version | grep -o 'release [0-9.]*')"
else
  record env FAIL $(($(date +%s) - t0)) "GPU: ${gpu_name:-none visible}; nvcc: ${nvcc:-missing}"
fi

# ---- deps -------------------------------------------------------------------------------
t0=$(date +%s)
deps_ok=1 deps_detail=""
if [ ! -d .gpu-deps/root ] && [ -f .gpu-deps/root.tar.gz ]; then
  tar -C .gpu-deps -xzf .gpu-deps/root.tar.gz || deps_ok=0
fi
deps=$repo/.gpu-deps/root
if [ ! -f "$deps/usr/include/gtest/gtest.h" ]; then
  deps_ok=0 deps_detail="no .gpu-deps/root (carry .gpu-deps/root.tar.gz; scripts/gpu-deps.sh makes it)"
fi
# Library path at build and run time: libopenblas (the build's RUNPATH covers libcaption's
# direct links, but not libopenblas's own needs); libgfortran/libquadmath only when the
# system lacks them (ours, from GCC 12, must not shadow a newer one); cuDNN's folder,
# whose libcudnn.so.9 loads its sub-libraries (libcudnn_graph, _ops, ...) by name.
ld_extra=$deps/usr/lib/$arch/openblas-pthread
if ! ldconfig -p 2>/dev/null | grep -q 'libgfortran\.so\.5 '; then
  mkdir -p "$work/fallback-libs"
  ln -sf "$deps/usr/lib/$arch"/libgfortran.so.5 "$deps/usr/lib/$arch"/libquadmath.so.0 "$work/fallback-libs/"
  ld_extra=$ld_extra:$work/fallback-libs
  deps_detail="$deps_detail libgfortran from the carried prefix;"
fi
# PyTorch brings its own cuDNN (and refuses an older one found first): its benchmark runs
# with the library path the machine had.
orig_ld_path=${LD_LIBRARY_PATH:-}
[ -n "$cudnn_lib" ] && ld_extra=$ld_extra:$(dirname "$cudnn_lib")
[ -n "$cuda_home" ] && [ -d "$cuda_home/lib64" ] && ld_extra=$ld_extra:$cuda_home/lib64
export LD_LIBRARY_PATH=$ld_extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# WordNet: data/text/wordnet.cpp reads /usr/share/wordnet (Debian's wordnet-base). The
# machine is bare and given back after the session, so a link to the carried copy is safe.
if [ ! -e /usr/share/wordnet ] && [ -f "$deps/usr/share/wordnet/index.noun" ]; then
  if ln -s "$deps/usr/share/wordnet" /usr/share/wordnet 2>/dev/null; then
    deps_detail="$deps_detail /usr/share/wordnet linked to the carried copy;"
  else
    deps_detail="$deps_detail /usr/share/wordnet missing (WordNet tests skip);"
  fi
fi
if [ -z "$cudnn_inc" ] || [ -z "$cudnn_lib" ]; then
  deps_ok=0 deps_detail="$deps_detail cuDNN not found (include: ${cudnn_inc:-none}, lib: ${cudnn_lib:-none});"
fi
# The tests' reference Python (CAPTION_REFERENCE_PYTHON): Debian's /usr/bin/python3 where
# it has torch and torchvision, else the machine's own python3 (PyTorch's image), through
# a wrapper that gives it the machine's library path (PyTorch refuses an older cuDNN
# found first) and, where it lacks NLTK, the carried python3-nltk.
ref_py=""
for py in /usr/bin/python3 "$(command -v python3 || true)" /opt/torch/.venv/bin/python3; do
  [ -n "$py" ] && [ -x "$py" ] || continue
  if LD_LIBRARY_PATH=$orig_ld_path "$py" -c 'import torch, torchvision' >/dev/null 2>&1; then
    ref_py=$py
    break
  fi
done
ref_wrapper=$work/reference-python
if [ -n "$ref_py" ]; then
  ref_pythonpath=""
  if ! LD_LIBRARY_PATH=$orig_ld_path "$ref_py" -c 'import nltk' >/dev/null 2>&1 &&
     [ -d "$deps/usr/lib/python3/dist-packages/nltk" ]; then
    mkdir -p "$work/pyref"
    ln -sfn "$deps/usr/lib/python3/dist-packages/nltk" "$work/pyref/nltk"
    ref_pythonpath=$work/pyref
  fi
  {
    echo '#!/bin/sh'
    echo "LD_LIBRARY_PATH='$orig_ld_path'; export LD_LIBRARY_PATH"
    [ -n "$ref_pythonpath" ] &&
      echo "PYTHONPATH='$ref_pythonpath'\${PYTHONPATH:+:\$PYTHONPATH}; export PYTHONPATH"
    echo "exec '$ref_py' \"\$@\""
  } >"$ref_wrapper"
  chmod +x "$ref_wrapper"
  deps_detail="$deps_detail reference Python $ref_py$([ -n "$ref_pythonpath" ] && echo ' + carried NLTK');"
  echo "reference Python: $ref_wrapper -> $ref_py ($("$ref_wrapper" -c 'import torch, torchvision, nltk, PIL; print("torch", torch.__version__, "torchvision", torchvision.__version__, "nltk", nltk.__version__, "PIL", PIL.__version__)' 2>&1 | tail -1))" >>"$ENV"
else
  deps_detail="$deps_detail no Python with torch+torchvision: reference tests excluded;"
fi
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >>"$ENV"
echo "deps: $deps_detail" >>"$ENV"
if [ $deps_ok -eq 1 ]; then
  record deps PASS $(($(date +%s) - t0)) "cuDNN $(basename "$(readlink -f "$cudnn_lib")")$cudnn_note;$deps_detail"
else
  record deps FAIL $(($(date +%s) - t0)) "$deps_detail"
fi

# ---- probe: the machine's ceilings (independent of the engine's build) --------------------
t0=$(date +%s)
: >"$PROBE"
if skipping probe; then
  record probe SKIP 0 "CHECK_SKIP"
elif [ -z "$nvcc" ]; then
  record probe FAIL 0 "no nvcc"
else
  t=$(cap 150 300)
  run_limited "$t" "$PROBE" "$nvcc" -O2 -std=c++17 -arch=sm_90 -lineinfo bench/gpu/device_probe.cu \
    -lcublas -o "$work/device_probe"
  if [ $rc -ne 0 ]; then
    record probe FAIL $(($(date +%s) - t0)) "compile failed (rc $rc)"
  else
    t=$(cap 120 300)
    run_limited "$t" "$PROBE" "$work/device_probe"
    summary=$(awk '/^RESULT/ {printf "%s%s %s %s %s", sep, $2, $3, $4, $5; sep="; "}' "$PROBE")
    if [ $rc -eq 0 ]; then
      record probe PASS $(($(date +%s) - t0)) "$summary"
    else
      record probe FAIL $(($(date +%s) - t0)) "rc $rc; ${summary:-$(tail -1 "$PROBE")}"
    fi
  fi
fi

# ---- configure ------------------------------------------------------------------------------
t0=$(date +%s)
cmake_args=(-S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCAPTION_CUDA=ON
            -DCAPTION_DEPS_PREFIX="$deps"
            # CMakeLists.txt sets CMAKE_CUDA_ARCHITECTURES from CAPTION_CUDA_ARCHITECTURES.
            -DCAPTION_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_ARCHITECTURES=90
            # CMake 4 refuses packages' config files written for very old CMake; older
            # versions ignore this (with a note that it was unused).
            -DCMAKE_POLICY_VERSION_MINIMUM=3.5)
[ -n "$nvcc" ] && cmake_args+=(-DCMAKE_CUDA_COMPILER="$nvcc")
# Extra arguments, split on spaces (e.g. -DCMAKE_SYSTEM_IGNORE_PREFIX_PATH=/usr for a dry
# run that must not find the system's packages).
[ -n "$ref_py" ] && cmake_args+=(-DCAPTION_REFERENCE_PYTHON="$ref_wrapper")
read -r -a extra_args <<<"${CHECK_CMAKE_ARGS:-}"
cmake_args+=("${extra_args[@]}")
if [ -n "$cudnn_inc" ] && [ -n "$cudnn_lib" ]; then
  CUDNN_INCLUDE_DIR=$cudnn_inc
  CUDNN_LIBRARY_DIR=$(dirname "$cudnn_lib")
  export CUDNN_INCLUDE_DIR CUDNN_LIBRARY_DIR
  # The exact files too: a wheel ships libcudnn.so.9 only, and find_library wants libcudnn.so.
  cmake_args+=(-DCUDNN_INCLUDE_DIR="$cudnn_inc" -DCUDNN_LIBRARY="$cudnn_lib")
fi
{ echo "### configure: cmake ${cmake_args[*]}"; } >"$BUILDLOG"
t=$(cap 120 240)
run_limited "$t" "$BUILDLOG" cmake "${cmake_args[@]}"
configured=0
if [ $rc -eq 0 ] && grep -q "CUDA backend ON" "$BUILDLOG"; then
  configured=1
  record configure PASS $(($(date +%s) - t0)) "$(grep -o 'CUDA backend ON.*' "$BUILDLOG" | tail -1)"
elif [ $rc -eq 0 ]; then
  configured=1
  record configure FAIL $(($(date +%s) - t0)) "configured WITHOUT the CUDA backend: see build.log"
else
  record configure FAIL $(($(date +%s) - t0)) "rc $rc: $(grep -m1 'CMake Error' -A2 "$BUILDLOG" | tr '\n' ' ' | cut -c1-200)"
fi

# ---- build ----------------------------------------------------------------------------------
t0=$(date +%s)
built=0
if [ $configured -eq 1 ]; then
  echo "### build: cmake --build $build -j$jobs" >>"$BUILDLOG"
  t=$(cap "${CHECK_BUILD_S:-330}" 150)  # leave 150 s for ctest and the sanitizer
  # Keep going past a failing file so that one error does not hide the others, and so
  # that the tests which did build can still run.
  keep_going=()
  [ ${#gen[@]} -gt 0 ] && keep_going=(-- -k 0)
  run_limited "$t" "$BUILDLOG" cmake --build "$build" -j"$jobs" "${keep_going[@]}"
  if [ $rc -eq 0 ]; then
    built=1
    record build PASS $(($(date +%s) - t0)) "$(grep -c warning: "$BUILDLOG") warning lines"
  else
    [ -f "$build/libcaption.so" ] && built=1  # partial: run what exists
    why="rc $rc"; [ $rc -eq 124 ] && why="TIME-OUT after ${t}s"
    record build FAIL $(($(date +%s) - t0)) "$why; $(grep -c 'FAILED:' "$BUILDLOG") failed targets; first: $(grep -m1 'error' "$BUILDLOG" | cut -c1-160)"
  fi
else
  record build SKIP 0 "not configured"
fi

# ---- ctest ----------------------------------------------------------------------------------
# Tests that need a reference Python with torch and torchvision (the PyTorch golden files
# and the torchvision reference, written by fixtures, and the weights-tools' own tests)
# are excluded only where no such interpreter exists (see deps); they run in CI on the
# CPU as well. GPU tests must not skip: CAPTION_REQUIRE_GPU=1.
t0=$(date +%s)
: >"$CTESTLOG"
exclude=""
if [ -z "$ref_py" ]; then
  exclude='^(golden_files_make|torchvision_reference_make|weights_tools_python)$|^Golden\.|^Torchvision\.'
fi
if skipping ctest; then
  record ctest SKIP 0 "CHECK_SKIP"
elif [ $built -eq 1 ]; then
  t=$(cap 240 $((35 + bench_s)))
  [ "$t" -lt 10 ] && t=10  # never a stop time in the past (ctest would read it as tomorrow)
  stop=$(date -u -d "@$(($(date +%s) + t))" '+%H:%M:%S +0000')
  ctest_args=(--test-dir "$build" --output-on-failure -j"$jobs" --timeout 300 --stop-time "$stop"
              --output-junit "$JUNIT")
  [ -n "$exclude" ] && ctest_args+=(-E "$exclude")
  echo "### CAPTION_REQUIRE_GPU=1 ctest ${ctest_args[*]}" >>"$CTESTLOG"
  [ -n "$exclude" ] && echo "### excluded (no Python with torch/torchvision here; they run in CI): $exclude" >>"$CTESTLOG"
  # $jobs test processes at once, each with OpenBLAS's and PyTorch's thread pools: at
  # their default (one thread per core) 16 processes ran 256 threads on 16 cores.
  blas_threads=${CHECK_TEST_THREADS:-4}
  echo "### OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=$blas_threads per test process" >>"$CTESTLOG"
  OPENBLAS_NUM_THREADS=$blas_threads OMP_NUM_THREADS=$blas_threads CAPTION_REQUIRE_GPU=1 \
    run_limited $((t + 30)) "$CTESTLOG" ctest "${ctest_args[@]}"
  line=$(grep -E 'tests passed(, [0-9]+ tests? failed)? out of' "$CTESTLOG" | tail -1)
  nskip=$(grep -c '\*\*\*Skipped\|Not Run' "$CTESTLOG")
  ex_note=""; [ -n "$exclude" ] && ex_note="; Python-reference tests excluded (no Python with torch here)"
  if [ $rc -eq 0 ]; then
    record ctest PASS $(($(date +%s) - t0)) "$line; $nskip skipped/not run$ex_note"
  else
    # Failures counted by suite (AllOps/Consistency.CudaMatchesCpu/x -> Consistency).
    failed=$(sed -n '/The following tests FAILED/,$p' "$CTESTLOG" | grep -E '^\s+[0-9]+ - ' |
             awk '{print $3}' | sed -E 's#^[^/.]*/##; s#[./].*##' | sort | uniq -c | sort -rn |
             awk '{printf "%s%s:%s", sep, $2, $1; sep=" "}')
    why="rc $rc"; [ $rc -eq 124 ] && why="TIME-OUT"
    record ctest FAIL $(($(date +%s) - t0)) "$why; ${line:-no summary line}; $nskip skipped/not run; failed by suite: ${failed:-see ctest.log}$ex_note"
  fi
else
  record ctest SKIP 0 "nothing built"
fi

# ---- sanitizer --------------------------------------------------------------------------------
# memcheck over the CUDA-vs-CPU consistency cases. Under the sanitizer each kernel runs
# far slower, but all 129 cases took 2 s on the H100 (2026-11-28, run 1); only when less
# than 30 s is left does a quarter of the cases run (gtest's sharding picks every
# fourth), and the summary says so. CAPTION_CUDA_SYNC=1 makes an
# asynchronous fault name its kernel. Note: the caching allocator hands out blocks from
# larger allocations, so memcheck cannot see every overrun; the Guard tests cover that.
t0=$(date +%s)
: >"$SANLOG"
bin=$build/tests/test_ops_consistency
if skipping sanitizer; then
  record sanitizer SKIP 0 "CHECK_SKIP"
elif [ -z "$sanitizer" ]; then
  record sanitizer FAIL 0 "compute-sanitizer not found"
elif [ ! -x "$bin" ]; then
  record sanitizer SKIP 0 "$bin not built"
else
  t=$(cap 200 "$bench_s")
  subset="all cases"
  shard=()
  if [ "$t" -lt 30 ]; then
    subset="subset: shard 1 of 4"
    shard=(env GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=0)
  fi
  echo "### compute-sanitizer memcheck $bin ($subset, limit ${t}s)" >>"$SANLOG"
  CAPTION_REQUIRE_GPU=1 CAPTION_CUDA_SYNC=1 run_limited "$t" "$SANLOG" "${shard[@]}" "$sanitizer" \
    --tool memcheck --error-exitcode 86 --print-limit 50 --leak-check no "$bin"
  errs=$(grep -o 'ERROR SUMMARY: [0-9]* error' "$SANLOG" | tail -1)
  ran=$(grep -c '^\[       OK \]\|^\[  FAILED  \]' "$SANLOG")
  if [ $rc -eq 0 ]; then
    record sanitizer PASS $(($(date +%s) - t0)) "$subset; $ran tests; ${errs:-no summary}"
  else
    why="rc $rc"; [ $rc -eq 124 ] && why="TIME-OUT after ${t}s (partial)"; [ $rc -eq 86 ] && why="memory errors"
    record sanitizer FAIL $(($(date +%s) - t0)) "$why; $subset; $ran tests done; ${errs:-no summary}"
  fi
fi

# ---- GPU benchmarks -----------------------------------------------------------------------
# bench_gpu (bench/gpu_bench.cpp) times the engine's workloads, each checked first, and
# writes the weights it used as a checkpoint; bench/gpu/torch_bench.py times PyTorch on the
# same weights and shapes (eager fp32, eager bf16, torch.compile as far as time allows);
# bench/gpu/compare.py sets them side by side. All output goes to bench.log, the table also
# to summary.md; the JSON files stay in $work (the device tool returns 8 files only, and
# the table carries the figures). About 45% of what is left goes to bench_gpu, the rest
# (less 15 s for compare.py and the summary) to PyTorch; each program also gets its own
# --time-budget, so that it stops between rows and keeps what it measured.
# CAPTION_CUDNN_BENCHMARK=1: the engine's cuDNN convolutions choose algorithms by measuring.
t0=$(date +%s)
: >"$BENCHLOG"
# Defined (and a previous run's removed) even when the step is skipped: the summary reads it.
compare_md=$work/bench-compare.md
rm -f "$compare_md"
if skipping bench; then
  record bench SKIP 0 "CHECK_SKIP"
else
bench_bin=$build/bench/bench_gpu
ours_json=$work/bench-ours.json torch_json=$work/bench-torch.json
bench_ckpt=$work/bench-weights.safetensors
rm -f "$ours_json" "$torch_json" "$bench_ckpt"
# The peak for "% of peak": the best copy bandwidth device_probe measured, else H100 SXM's.
peak=$(awk '/^RESULT copy_/ && $5 == "ok" && $3 > m {m = $3} END {if (m) print m}' "$PROBE")
peak=${peak:-3350}
torch_py=""
for py in python3 /opt/torch/.venv/bin/python3; do
  command -v "$py" >/dev/null || continue
  if LD_LIBRARY_PATH=$orig_ld_path "$py" -c 'import torch, torchvision, numpy; assert torch.cuda.is_available()' >/dev/null 2>&1; then
    torch_py=$py
    break
  fi
done
bench_notes=() bench_ok=1
# CHECK_TRAIN_S (the opt-in training step after the benchmarks) is kept out of their share.
train_reserve=${CHECK_TRAIN_S:-0}
avail=$(($(remaining) - 15 - train_reserve))
t_ours=$((avail * 45 / 100))
[ "$t_ours" -gt 180 ] && t_ours=180
if [ $built -eq 0 ]; then
  bench_ok=0 bench_notes+=("ours: nothing built")
elif [ ! -x "$bench_bin" ]; then
  bench_ok=0 bench_notes+=("ours: $bench_bin not built")
elif [ "$t_ours" -lt 15 ]; then
  bench_ok=0 bench_notes+=("ours: not run, the budget is spent")
else
  budget_ours=$((t_ours - 10)); [ "$budget_ours" -lt 5 ] && budget_ours=5
  ours_args=(--json "$ours_json" --save-checkpoint "$bench_ckpt" --peak-gbs "$peak" --time-budget "$budget_ours")
  # CHECK_BENCH_AMP=1: our rows with bfloat16 products (autocast), as PyTorch's eager bf16.
  [ "${CHECK_BENCH_AMP:-0}" = 1 ] && ours_args+=(--amp)
  echo "### CAPTION_CUDNN_BENCHMARK=1 $bench_bin ${ours_args[*]} (limit ${t_ours}s)" >>"$BENCHLOG"
  CAPTION_CUDNN_BENCHMARK=1 run_limited "$t_ours" "$BENCHLOG" "$bench_bin" "${ours_args[@]}"
  last=$(grep '^bench_gpu: [0-9]* rows' "$BENCHLOG" | tail -1 | sed 's/^bench_gpu: //')
  case $rc in
    0) bench_notes+=("ours: ${last:-ok}") ;;
    124) bench_ok=0 bench_notes+=("ours: TIME-OUT after ${t_ours}s (rows so far kept)") ;;
    *) bench_ok=0 bench_notes+=("ours: rc $rc; ${last:-$(tail -1 "$BENCHLOG" | cut -c1-120)}") ;;
  esac
fi
# CHECK_PROFILE_ROWS keeps 30 s after PyTorch for the profiled rerun (below).
profile_reserve=0; [ -n "${CHECK_PROFILE_ROWS:-}" ] && profile_reserve=30
t=$(cap 400 $((15 + profile_reserve + train_reserve)))
if [ -z "$torch_py" ]; then
  bench_ok=0 bench_notes+=("PyTorch: no python3 with torch+torchvision+CUDA")
elif [ "$t" -lt 25 ]; then
  bench_ok=0 bench_notes+=("PyTorch: not run, the budget is spent")
else
  budget_torch=$((t - 20)); [ "$budget_torch" -lt 5 ] && budget_torch=5
  torch_args=(bench/gpu/torch_bench.py --json "$torch_json" --peak-gbs "$peak" --time-budget "$budget_torch")
  # The same attention positions as ours (49 where the engine attends over the distinct
  # cells of the 7x7 map: "positions" in its JSON), so that the comparison is fair.
  positions=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["positions"])' \
              "$ours_json" 2>/dev/null || echo 196)
  case $positions in 49|196) torch_args+=(--positions "$positions") ;; esac
  [ -f "$bench_ckpt" ] && torch_args+=(--checkpoint "$bench_ckpt")
  echo "### $torch_py ${torch_args[*]} (limit ${t}s)" >>"$BENCHLOG"
  run_limited "$t" "$BENCHLOG" env LD_LIBRARY_PATH="$orig_ld_path" "$torch_py" "${torch_args[@]}"
  last=$(grep '^torch_bench: done' "$BENCHLOG" | tail -1 | sed 's/^torch_bench: //')
  case $rc in
    0) bench_notes+=("PyTorch: ${last:-ok}") ;;
    124) bench_ok=0 bench_notes+=("PyTorch: TIME-OUT after ${t}s (rows so far kept)") ;;
    *) bench_ok=0 bench_notes+=("PyTorch: rc $rc; ${last:-$(tail -1 "$BENCHLOG" | cut -c1-120)}") ;;
  esac
fi
if [ -f "$ours_json" ]; then
  cmp_py=$(command -v python3 || echo "$torch_py")
  cmp_args=(bench/gpu/compare.py --ours "$ours_json" --out "$compare_md")
  [ -f "$torch_json" ] && cmp_args+=(--torch "$torch_json")
  echo "### $cmp_py ${cmp_args[*]}" >>"$BENCHLOG"
  run_limited "$(cap 30 0)" "$BENCHLOG" "$cmp_py" "${cmp_args[@]}"
  if [ $rc -eq 0 ]; then
    bench_notes+=("$(grep -m1 '^Goals:' "$compare_md")")
  else
    bench_ok=0 bench_notes+=("compare.py rc $rc")
  fi
else
  bench_ok=0 bench_notes+=("no results of ours to compare")
fi
# CHECK_PROFILE_ROWS (e.g. "greedy_1img,decoder_train_t20_b64"): those rows once more,
# quick, with CAPTION_PROFILE=1: each row's ops by GPU time (engine/profile.h), in bench.log.
if [ -n "${CHECK_PROFILE_ROWS:-}" ] && [ -x "$bench_bin" ]; then
  t=$(cap 90 $((5 + train_reserve)))
  echo "### CAPTION_PROFILE=1 $bench_bin --only $CHECK_PROFILE_ROWS --quick (limit ${t}s)" >>"$BENCHLOG"
  CAPTION_CUDNN_BENCHMARK=1 CAPTION_PROFILE=1 run_limited "$t" "$BENCHLOG" "$bench_bin" \
    --only "$CHECK_PROFILE_ROWS" --quick --time-budget $((t > 15 ? t - 10 : 5)) \
    $([ "${CHECK_BENCH_AMP:-0}" = 1 ] && echo --amp)
  bench_notes+=("profile of $CHECK_PROFILE_ROWS: rc $rc")
fi
# The raw rows too, in bench.log (no other file may come back).
for f in "$ours_json" "$torch_json"; do
  [ -f "$f" ] && { echo "### $(basename "$f")"; cat "$f"; } >>"$BENCHLOG"
done
detail=$(IFS=';'; echo "${bench_notes[*]}")
if [ $bench_ok -eq 1 ]; then
  record bench PASS $(($(date +%s) - t0)) "$detail"
elif [ $built -eq 0 ]; then
  record bench SKIP $(($(date +%s) - t0)) "$detail"
else
  record bench FAIL $(($(date +%s) - t0)) "$detail"
fi
fi  # CHECK_SKIP bench

# ---- caption-train on the GPU (opt-in) -----------------------------------------------------
# CHECK_TRAIN_S=N (seconds; default 0: not run): the demo's training as a user runs it on a
# GPU (scripts/demo.sh: the synthetic set, configs/synthetic.toml, --device cuda), the
# loader, uploads, feature cache, recorded steps and evaluation together; extra fit
# options in CHECK_TRAIN_ARGS (e.g. "--epochs 3 --amp"). Its output goes to bench.log (the
# device tool returns 8 files); the detail gives the epochs' seconds and the last scores.
t0=$(date +%s)
train_s=${CHECK_TRAIN_S:-0}
train_bin=$build/bin/caption-train
if [ "$train_s" -le 0 ]; then
  record train SKIP 0 "CHECK_TRAIN_S unset"
elif [ ! -x "$train_bin" ]; then
  record train SKIP 0 "$train_bin not built"
else
  t=$(cap "$train_s" 5)
  tdir=$work/train
  rm -rf "$tdir" && mkdir -p "$tdir"
  echo "### caption-train synth, then fit --config configs/synthetic.toml --device cuda ${CHECK_TRAIN_ARGS:-} (limit ${t}s)" >>"$BENCHLOG"
  # shellcheck disable=SC2086  # CHECK_TRAIN_ARGS is a list of options
  run_limited "$t" "$BENCHLOG" bash -c "'$train_bin' synth --out '$tdir/synthetic' --seed 1 && \
    '$train_bin' fit --config configs/synthetic.toml --data '$tdir/synthetic' --output '$tdir/run' \
    --device cuda ${CHECK_TRAIN_ARGS:-}"
  train_rc=$rc
  epoch_s=$(grep -o '^epoch [0-9]*/[0-9]*.*(\([0-9.]*\) s)' "$BENCHLOG" | sed 's/.*(\([0-9.]*\) s).*/\1/' | tr '\n' ' ')
  last=$(grep '^epoch [0-9]*/' "$BENCHLOG" | tail -1 | sed 's/.*val [a-z0-9 ]*: //; s/  (.*//' | cut -c1-120)
  # Then `caption` over the 500 test images with the trained checkpoint, images read on
  # the main thread (--read-threads 0) and ahead on 8 threads (pipeline/read_ahead.h).
  caption_s=""
  if [ $train_rc -eq 0 ] && [ -x "$build/bin/caption" ] && [ -f "$tdir/run/best.safetensors" ]; then
    mapfile -t test_images < <(sed "s|^|$tdir/synthetic/Flicker8k_Dataset/|" "$tdir/synthetic/Flickr_8k.testImages.txt")
    for threads in 0 8; do
      c0=$(date +%s%N)
      # (the captions go to a file, not to bench.log)
      run_limited "$(cap 60 5)" "$BENCHLOG" bash -c 'out=$1; shift; "$@" >"$out"' _ "$tdir/captions-$threads.txt" \
        "$build/bin/caption" --checkpoint "$tdir/run/best.safetensors" --device cuda --batch-size 64 \
        --read-threads "$threads" "${test_images[@]}"
      caption_s+="caption ${#test_images[@]} images, read-threads $threads: $(( ($(date +%s%N) - c0) / 1000000 )) ms (rc $rc); "
    done
  fi
  rc=$train_rc
  if [ $rc -eq 0 ]; then
    record train PASS $(($(date +%s) - t0)) "epochs' s: ${epoch_s:-none}; last: ${last:-none}; ${caption_s}"
  else
    why="rc $rc"; [ $rc -eq 124 ] && why="TIME-OUT after ${t}s"
    record train FAIL $(($(date +%s) - t0)) "$why; epochs' s: ${epoch_s:-none}; last: ${last:-none}"
  fi
fi

# ---- summary ----------------------------------------------------------------------------------
nfail=0
for s in "${states[@]}"; do [ "$s" = FAIL ] && nfail=$((nfail + 1)); done
overall=PASS; [ $nfail -gt 0 ] && overall="FAIL ($nfail step(s))"
{
  echo "# caption GPU check"
  echo
  echo "- GPU: ${gpu_name:-none visible}; $(date -u '+%F %T') UTC; label: ${CHECK_LABEL:-none}"
  echo "- Total: $(($(date +%s) - t_start)) s of a ${budget} s budget; result: **$overall**"
  echo "- Files: env.txt, probe.txt, build.log, ctest.log, ctest-junit.xml, sanitizer.log, bench.log"
  # A recording that fails (cuDNN or cuBLAS doing something capture forbids) falls back to
  # eager work with one warning; only the benchmarks' output keeps passing runs' warnings.
  echo "- CUDA graph recordings that failed in the benchmarks: $(grep -c 'could not be recorded as a graph' "$BENCHLOG" 2>/dev/null || true) (bench.log)"
  echo
  echo "| step | status | s | detail |"
  echo "|---|---|---:|---|"
  for i in "${!names[@]}"; do
    echo "| ${names[$i]} | ${states[$i]} | ${secs[$i]} | ${details[$i]//|//} |"
  done
  echo
  echo "## device_probe"
  echo
  echo '```'
  sed -n '/^measurement/,/^RESULT/p' "$PROBE" | grep -v '^RESULT'
  echo '```'
  if [ -s "$compare_md" ]; then
    echo
    cat "$compare_md"
  fi
} >"$SUMMARY"
# Logs over the device tool's 16 MB per file keep their end.
for f in "$res"/*; do
  if [ "$(stat -c %s "$f")" -gt 15000000 ]; then
    tail -c 15000000 "$f" >"$f.tmp" && mv "$f.tmp" "$f"
  fi
done

echo
echo "=== results in $res"
printf '%-10s %-7s %5s  %s\n' step status s detail
for i in "${!names[@]}"; do
  printf '%-10s %-7s %5s  %s\n' "${names[$i]}" "${states[$i]}" "${secs[$i]}" "${details[$i]:0:230}"
done
echo "overall: $overall in $(($(date +%s) - t_start)) s"
[ $nfail -eq 0 ]
