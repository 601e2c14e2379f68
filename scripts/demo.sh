#!/usr/bin/env bash
# The main job on the embedded default (README): installs what is missing, builds the
# two programs, generates the synthetic captioning set, trains the demo configuration
# (CPU, or the GPU where one is present), evaluates on the synthetic test split with
# beam 3, and captions three test images with their attention maps.
#   CAPTION_DEMO_DIR   where the data, the run and the maps go (default: demo)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/install-deps.sh build
# Without a GPU the CUDA backend is not needed to run the demo: skip compiling it.
cuda=OFF
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then cuda=ON; fi
build=${CAPTION_BUILD_DIR:-build-demo}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCAPTION_CUDA=$cuda \
      -DCAPTION_TESTS=OFF -DCAPTION_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target app_caption-train app_caption
built=$(date +%s)
echo "demo: built in $((built - start)) s"

dir=${CAPTION_DEMO_DIR:-demo}
mkdir -p "$dir"
if [ ! -f "$dir/synthetic/Flickr8k.token.txt" ]; then
  "$build/bin/caption-train" synth --out "$dir/synthetic" --seed 1
fi
"$build/bin/caption-train" fit --config configs/synthetic.toml --data "$dir/synthetic" \
    --output "$dir/run" --device auto
"$build/bin/caption-train" evaluate --checkpoint "$dir/run/best.safetensors" \
    --data "$dir/synthetic" --split test --beam 3 --predictions-out "$dir/test_predictions.jsonl"
mapfile -t images < <(head -n 3 "$dir/synthetic/Flickr_8k.testImages.txt")
paths=()
for name in "${images[@]}"; do paths+=("$dir/synthetic/Flicker8k_Dataset/$name"); done
"$build/bin/caption" --checkpoint "$dir/run/best.safetensors" --beam 3 \
    --attention-map "$dir/attention" "${paths[@]}"
end=$(date +%s)
echo "demo: attention maps in $dir/attention/; total $((end - start)) s ($((end - built)) s after the build)"
