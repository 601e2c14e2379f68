#!/usr/bin/env bash
# Fetches the Debian packages the build needs (scripts/install-deps.sh's "build" set) and
# unpacks them into a private prefix, for the GPU machine of bench/gpu/check.sh, which
# has nvcc and CMake but no package registry and no internet. Run it HERE (a Debian 12
# machine with apt); it never installs anything into /.
#
#   .gpu-deps/debs/          the downloaded .deb files (cache; not carried)
#   .gpu-deps/root/          `dpkg -x` of each, pruned to what the build and tests read:
#                            headers, .so/.a, CMake package files, WordNet index/exc files
#   .gpu-deps/root/cudnn/include   cuDNN headers copied from this machine's CUDA, a
#                            fallback for a GPU machine whose cuDNN has no headers
#   .gpu-deps/root.tar.gz    the pruned root packed: THIS is what `run` carries (about a
#                            third of the unpacked size; check.sh unpacks it there)
#   .gpu-deps/STAMP          package versions of the current root (idempotence)
#
# Idempotent: when STAMP matches the versions apt would fetch now, nothing is done.
# --force rebuilds root and the tarball from the cached .debs (downloading what's missing).
# Prints the sizes last. Usage: scripts/gpu-deps.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD/.gpu-deps
debs=$top/debs
root=$top/root
force=0
[ "${1:-}" = "--force" ] && force=1

# What CMakeLists.txt, tests/, bench/ and apps/ find, and what those need at run time.
# libopenblas-dev on Debian 12 is a meta package over the pthread variant; its real
# files are in libopenblas-pthread-dev (headers, link) and libopenblas0-pthread (.so),
# which needs libgfortran5 and libquadmath0 (not in a CUDA image, as a rule).
pkgs=(libopenblas-pthread-dev libopenblas0-pthread libgfortran5 libquadmath0
      libgtest-dev libgmock-dev libbenchmark-dev libbenchmark1debian libcli11-dev
      libstb-dev libjpeg62-turbo libjpeg62-turbo-dev libpng16-16 libpng-dev
      nlohmann-json3-dev wordnet-base python3-nltk)

if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "gpu-deps: needs apt-get and dpkg (a Debian 12 machine)" >&2
  exit 2
fi

# The candidate version of each package; an empty answer means the lists are missing.
versions() {
  local p v
  for p in "${pkgs[@]}"; do
    v=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
    echo "$p=${v:-none}"
  done
}
want=$(versions)
if grep -q '=none$\|=(none)$' <<<"$want"; then
  echo "gpu-deps: apt lists lack some packages; running apt-get update"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  want=$(versions)
  if grep -q '=none$\|=(none)$' <<<"$want"; then
    echo "gpu-deps: still not found: $(grep '=none$\|=(none)$' <<<"$want" | tr '\n' ' ')" >&2
    exit 1
  fi
fi

if [ $force -eq 0 ] && [ -f "$top/STAMP" ] && [ -f "$top/root.tar.gz" ] && [ -d "$root" ] &&
   [ "$(cat "$top/STAMP")" = "$want" ]; then
  echo "gpu-deps: up to date ($(du -sh "$root" | cut -f1) unpacked," \
       "$(du -sh "$top/root.tar.gz" | cut -f1) packed in .gpu-deps/root.tar.gz)"
  exit 0
fi

# ---- download (only the .debs not already cached, at the wanted version) ---------------
mkdir -p "$debs"
fetch=()
while IFS='=' read -r p v; do
  # apt-get download names files NAME_VERSION_ARCH.deb, with ':' in the version as %3a.
  ls "$debs/${p}_${v//:/%3a}_"*.deb >/dev/null 2>&1 || fetch+=("$p=$v")
done <<<"$want"
if [ ${#fetch[@]} -gt 0 ]; then
  echo "gpu-deps: downloading ${fetch[*]}"
  # As root, apt would drop to the _apt user, who cannot write here (a harmless warning).
  sandbox=()
  [ "$(id -u)" -eq 0 ] && sandbox=(-o APT::Sandbox::User=root)
  (cd "$debs" && apt-get download -qq "${sandbox[@]}" "${fetch[@]}")
fi

# ---- unpack into a fresh root (never into /) -------------------------------------------
rm -rf "$root" "$top/root.tar.gz"
mkdir -p "$root"
while IFS='=' read -r p v; do
  files=("$debs/${p}_${v//:/%3a}_"*.deb)
  dpkg -x "${files[0]}" "$root"
done <<<"$want"

# ---- prune to what the build reads -----------------------------------------------------
arch=x86_64-linux-gnu
ob=$root/usr/lib/$arch/openblas-pthread
rm -rf "${root:?}/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" \
       "$root/usr/src" "$root/usr/lib/$arch/pkgconfig" "$root/usr/share/pkgconfig" \
       "$ob/pkgconfig" "${root:?}/etc"
# OpenBLAS: keep libopenblas (.so, cblas.h); drop the static archive (58 MB), LAPACK and
# the reference-BLAS aliases, which nothing here links.
rm -f "$ob"/libopenblas*.a "$ob"/libblas.* "$ob"/liblapack.*
# stb: header-only use; the compiled libstb and the headers we never include go.
rm -f "$root/usr/lib/$arch"/libstb.*
find "$root/usr/include/stb" -type f ! -name 'stb_image*.h' -delete
# libjpeg-turbo and libpng: shared libraries only (their static archives go).
rm -f "$root/usr/lib/$arch"/libjpeg.a "$root/usr/lib/$arch"/libturbojpeg.a "$root/usr/lib/$arch"/libpng*.a
# WordNet: data/text/wordnet.cpp reads index.<pos> and <pos>.exc only (data.* is 22 MB).
# WordNet: what data/text/wordnet.cpp reads (index.*, *.exc), and data.adj, whose header
# NLTK's reader checks for the version (tests/data/nltk_text_reference.py).
find "$root/usr/share/wordnet" -type f ! -name 'index.*' ! -name '*.exc' ! -name data.adj -delete
# NLTK (pure Python; the GPU machine's Python has its regex, click, joblib and tqdm):
# the package alone, without its own tests.
rm -rf "$root/usr/lib/python3/dist-packages/nltk/test" "$root/usr/bin"
# No absolute symlinks may travel (they would point into the GPU machine's /).
if find "$root" -type l -lname '/*' | grep -q .; then
  echo "gpu-deps: absolute symlinks left in root:" >&2
  find "$root" -type l -lname '/*' -printf '  %p -> %l\n' >&2
  exit 1
fi
# Dangling links would mean a pruned target still referenced.
find "$root" -xtype l -delete

# cuDNN headers as a fallback for check.sh (the GPU machine's cuDNN may come from a
# Python wheel without them). Only the headers: the libraries are hundreds of MB.
cudnn_h=""
for d in /usr/local/cuda/include /usr/include /usr/include/$arch; do
  [ -f "$d/cudnn.h" ] && { cudnn_h=$d; break; }
done
if [ -n "$cudnn_h" ]; then
  mkdir -p "$root/cudnn/include"
  cp "$cudnn_h"/cudnn*.h "$root/cudnn/include/"
else
  echo "gpu-deps: no cuDNN headers on this machine; no fallback carried (not fatal)"
fi

# ---- check that what the build finds is there ------------------------------------------
for f in usr/include/$arch/openblas-pthread/cblas.h usr/lib/$arch/openblas-pthread/libopenblas.so \
         usr/lib/$arch/libgfortran.so.5 usr/lib/$arch/libquadmath.so.0 \
         usr/include/gtest/gtest.h usr/lib/$arch/libgtest.a usr/lib/$arch/libgmock.a \
         usr/lib/$arch/cmake/GTest/GTestConfig.cmake usr/include/benchmark/benchmark.h \
         usr/lib/$arch/libbenchmark.so usr/lib/$arch/cmake/benchmark/benchmarkConfig.cmake \
         usr/include/CLI/CLI.hpp usr/share/cmake/CLI11/CLI11Config.cmake \
         usr/include/stb/stb_image.h usr/include/nlohmann/json.hpp \
         usr/include/jpeglib.h usr/include/$arch/jconfig.h usr/lib/$arch/libjpeg.so \
         usr/lib/$arch/libjpeg.so.62 usr/include/png.h usr/lib/$arch/libpng16.so \
         usr/lib/$arch/libpng16.so.16 \
         usr/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake \
         usr/share/wordnet/index.noun usr/share/wordnet/verb.exc; do
  [ -e "$root/$f" ] || { echo "gpu-deps: $f missing after unpacking" >&2; exit 1; }
done

# ---- pack for carrying -----------------------------------------------------------------
# gzip, not xz or zstd: every Linux image has it. Owner and times are not kept meaningful.
tar -C "$top" --owner=0 --group=0 --numeric-owner -czf "$top/root.tar.gz.tmp" root
mv "$top/root.tar.gz.tmp" "$top/root.tar.gz"
echo "$want" >"$top/STAMP"
echo "gpu-deps: root $(du -sh "$root" | cut -f1) unpacked, $(du -sh "$top/root.tar.gz" | cut -f1)" \
     "packed (.gpu-deps/root.tar.gz, the path to carry); .debs cached: $(du -sh "$debs" | cut -f1)"
