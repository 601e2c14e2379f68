// The encoder's inference pass as device graphs (engine/graph.h): ResNet-50 at batch 1
// is about 170 kernels (convolutions with batch norm folded in, ReLUs, residual adds,
// pooling), each too small to hide its launch; captioning an image pays for all of them.
// An EncoderRunner records the pass once per input shape and replays it.
//
// At most 4 shapes are recorded (each recording keeps the memory of its pass); others
// run eagerly. It serves only inference: no gradient recording, the encoder in Eval mode (batch norm
// reading its running statistics), a CUDA device with graphs on. Per shape the first
// pass runs eagerly (it plans the cuDNN convolutions, measuring them under
// CAPTION_CUDNN_BENCHMARK=1), the second records and replays, later ones replay. The
// folded batch-norm weights are recomputed inside the graph, so a replay reads the
// weights as they are then; the runner checks that the parameters and buffers are the
// tensors it recorded (a model moved or reloaded into new tensors is recorded again).
// A FoldedResNet (nn/folded_resnet.h) records its own passes through run(), over weights
// folded once, so its graphs hold no folding kernels.
// A failed recording is logged once and that shape runs eagerly from then on. Results
// equal the eager pass bit for bit (tests/nn/cuda_model_test.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "engine/graph.h"
#include "nn/resnet.h"

namespace caption::nn {

struct EncoderRunnerStats {
  int64_t eager_passes = 0, captures = 0, replays = 0, failed_captures = 0;
};

class EncoderRunner {
 public:
  EncoderRunner();
  ~EncoderRunner();
  EncoderRunner(const EncoderRunner&) = delete;
  EncoderRunner& operator=(const EncoderRunner&) = delete;

  // Whether `encoder` on `images` runs through a runner (inference on a CUDA device with
  // graphs on).
  static bool eligible(const ResNet& encoder, const Tensor& images);
  // Whether passes over `images` can be recorded at all: [B, C, H, W] on a CUDA device
  // with graphs on.
  static bool graphs_possible(const Tensor& images);
  // encoder.forward(images), recorded per shape; the result is the caller's own tensor.
  Tensor forward(const ResNet& encoder, const Tensor& images);
  // pass(images), recorded per shape, autocast and `variant` (what else decides the
  // pass's kernels). `state` holds the address of every tensor the pass reads besides
  // the images: when it changes, every recording is dropped. Callers check
  // graphs_possible(images) and that no gradient is recorded.
  using Pass = std::function<Tensor(const Tensor&)>;
  Tensor run(const Tensor& images, int variant, const std::vector<const void*>& state,
             const Pass& pass);
  const EncoderRunnerStats& stats() const { return stats_; }

 private:
  struct Graph;
  // input shape, autocast, variant (for a ResNet, the stages in NHWC bfloat16:
  // ResNet::nhwc_bf16_stages)
  using Key = std::tuple<std::vector<int64_t>, bool, int>;
  static constexpr size_t kMaxShapes = 4;
  // One pass at a time; a caller that finds it busy waits (running eagerly instead would
  // put its kernels on the device's one stream while a pass may be being recorded there).
  std::mutex mutex_;
  std::vector<const void*> state_;  // the encoder's parameters and buffers when recorded
  std::map<Key, std::unique_ptr<Graph>> graphs_;
  EncoderRunnerStats stats_;
};

}  // namespace caption::nn
