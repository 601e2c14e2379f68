#!/usr/bin/env bash
# Installs the Debian packages that building, testing and the demo need, and nothing
# more. Idempotent: packages already present are not touched, and apt is not called at
# all when nothing is missing. Usage: scripts/install-deps.sh [build|test|all]
#   build: compilers' libraries (OpenBLAS, GoogleTest, Google Benchmark, CLI11, stb,
#          libjpeg-turbo, libpng, nlohmann-json, WordNet database; pkgconf for the
#          install test's pkg-config half)
#   test:  build + the reference packages the tests compare against (PyTorch 1.13 CPU,
#          torchvision, NLTK, PIL, numpy) for Debian's /usr/bin/python3
set -euo pipefail
what=${1:-all}
build_pkgs=(cmake ninja-build g++ libopenblas-dev googletest libgtest-dev libgmock-dev
            libbenchmark-dev libcli11-dev libstb-dev libjpeg62-turbo-dev libpng-dev
            nlohmann-json3-dev wordnet-base pkgconf)
test_pkgs=(python3 python3-torch python3-torchvision python3-nltk python3-numpy python3-pil)
case "$what" in
  build) want=("${build_pkgs[@]}") ;;
  test|all) want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "install-deps.sh: unknown set '$what' (build, test or all)" >&2; exit 2 ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
