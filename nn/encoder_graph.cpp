// The encoder's inference pass as device graphs: see encoder_graph.h.
#include "nn/encoder_graph.h"

#include "engine/autocast.h"
#include "engine/autograd.h"
#include "engine/error.h"

namespace caption::nn {

struct EncoderRunner::Graph {
  DeviceGraph graph;
  bool failed = false;
  int64_t eager_runs = 0;
  Tensor input, output;
};

namespace {
std::vector<const void*> state_addresses(const ResNet& encoder) {
  std::vector<const void*> v;
  // named_state() is not const (it hands out mutable references); only read here.
  for (const auto& r : const_cast<ResNet&>(encoder).named_state()) v.push_back(r.tensor->raw_data());
  return v;
}
}  // namespace

EncoderRunner::EncoderRunner() = default;
EncoderRunner::~EncoderRunner() = default;

bool EncoderRunner::graphs_possible(const Tensor& images) {
  return images.defined() && images.device().is_cuda() && DeviceGraph::enabled(images.device()) &&
         images.dim() == 4;
}

bool EncoderRunner::eligible(const ResNet& encoder, const Tensor& images) {
  return !grad_enabled() && encoder.mode() == Mode::Eval && graphs_possible(images);
}

Tensor EncoderRunner::forward(const ResNet& encoder, const Tensor& images) {
  if (!eligible(encoder, images)) return encoder.forward(images);
  return run(images, encoder.nhwc_bf16_stages(images), state_addresses(encoder),
             [&encoder](const Tensor& x) { return encoder.forward(x); });
}

Tensor EncoderRunner::run(const Tensor& images, int variant, const std::vector<const void*>& state,
                          const Pass& pass) {
  std::unique_lock lock(mutex_);
  if (state != state_) {  // new weights, or the first pass: every recording is stale
    graphs_.clear();
    state_ = state;
  }
  const Device device = images.device();
  const Key key{images.shape(), autocast_enabled(), variant};
  auto eager = [&] {
    ++stats_.eager_passes;
    return pass(images);
  };
  // Each recording keeps its pass's memory: a few shapes (a service's batch sizes, the
  // last partial batch) are recorded, further ones run eagerly.
  if (graphs_.size() >= kMaxShapes && graphs_.count(key) == 0) return eager();
  std::unique_ptr<Graph>& slot = graphs_[key];
  if (!slot) slot = std::make_unique<Graph>();
  Graph& g = *slot;
  if (g.failed) return eager();
  if (!g.graph.captured()) {
    if (g.eager_runs++ == 0) return eager();  // plans the convolutions outside the recording
    g.input = Tensor::empty(images.shape(), images.dtype(), device);
    const bool ok = g.graph.capture(device, [&] { g.output = pass(g.input); });
    if (!ok) {
      g.failed = true;
      g.output = Tensor();
      ++stats_.failed_captures;
      log_warning(str("encoding on ", device.to_string(), ": the pass over ", images.describe(),
                      " could not be recorded as a graph (", g.graph.failure(),
                      "); encoding without graphs"));
      return eager();
    }
    ++stats_.captures;
  }
  g.input.copy_(images);
  g.graph.replay();
  ++stats_.replays;
  return g.output.clone();  // the caller's own: the next replay rewrites g.output
}

}  // namespace caption::nn
