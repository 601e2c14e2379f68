// The decoder's step as device graphs: see step_graph.h.
#include "nn/step_graph.h"

#include "engine/autocast.h"
#include "engine/backend.h"
#include "engine/error.h"

namespace caption::nn {

// One row count's graph and the tensors it reads and writes.
struct StepRunner::Graph {
  DeviceGraph graph;
  bool failed = false;
  int64_t eager_runs = 0;
  Tensor tokens, h, c, features, enc_proj, h_weight, h_bias;  // inputs
  Tensor h_weight16;  // under autocast: h_weight's bfloat16 copy (one of the runner's shadows)
  Tensor h_out, c_out;                      // outputs, with out
  StepOutput out;
};

namespace {
std::vector<const void*> weight_addresses(const AttentionDecoder& decoder) {
  std::vector<const void*> v;
  // named_parameters() is not const (it hands out mutable references); only read here.
  for (const auto& p : const_cast<AttentionDecoder&>(decoder).named_parameters())
    v.push_back(p.tensor->raw_data());
  return v;
}
}  // namespace

StepRunner::StepRunner(const AttentionDecoder& decoder, Device device)
    : decoder_(decoder), device_(device), graphs_(DeviceGraph::enabled(device)),
      bf16_(autocast_enabled()),
      weights_(graphs_ ? weight_addresses(decoder) : std::vector<const void*>{}) {
  if (!bf16_ || !device.is_cuda()) return;
  for (const auto& p : const_cast<AttentionDecoder&>(decoder).named_parameters()) {
    const Tensor& w = *p.tensor;
    if (w.device() != device || w.dtype() != DType::F32 || !w.is_contiguous() || w.numel() == 0)
      continue;
    shadow_storage_.push_back(Tensor::empty({(w.numel() + 1) / 2}, DType::F32, device));
    shadows_.push_back({w.data<float>(), w.numel(),
                        static_cast<const uint16_t*>(shadow_storage_.back().raw_data())});
  }
}

bool StepRunner::serves(const AttentionDecoder& decoder, Device device) const {
  return &decoder == &decoder_ && device == device_ && graphs_ == DeviceGraph::enabled(device) &&
         bf16_ == autocast_enabled() && weights_ == weight_addresses(decoder);
}

void StepRunner::refresh_shadows() {
  for (size_t i = 0; i < shadows_.size(); ++i)
    cuda_bf16_copy(device_.index, shadows_[i].source, shadows_[i].numel,
                   static_cast<uint16_t*>(shadow_storage_[i].raw_data()));
}

std::shared_ptr<StepRunnerCache> AttentionDecoder::step_cache() const {
  static std::mutex creation;
  std::lock_guard lock(creation);
  if (!step_cache_) step_cache_ = std::make_shared<StepRunnerCache>();
  return step_cache_;
}

StepRunnerLease::StepRunnerLease(const AttentionDecoder& decoder, Device device) {
  if (DeviceGraph::enabled(device)) {
    cache_ = decoder.step_cache();
    if (cache_->holder.load() != std::this_thread::get_id()) {  // not nested in our own lease
      lock_ = std::unique_lock(cache_->mutex);  // waits for another thread's lease
      cache_->holder.store(std::this_thread::get_id());
      try {
        if (!cache_->runner || !cache_->runner->serves(decoder, device))
          cache_->runner = std::make_unique<StepRunner>(decoder, device);
        runner_ = cache_->runner.get();
        runner_->refresh_shadows();
      } catch (...) {
        cache_->holder.store(std::thread::id{});
        throw;
      }
      return;
    }
  }
  own_ = std::make_unique<StepRunner>(decoder, device);
  runner_ = own_.get();
  runner_->refresh_shadows();
}

StepRunnerLease::~StepRunnerLease() {
  if (lock_.owns_lock()) cache_->holder.store(std::thread::id{});
}

StepRunner::~StepRunner() = default;

namespace {
// Copies src into dst unless dst already is src (same storage, offset and shape);
// returns whether it copied.
bool copy_into(Tensor& dst, const Tensor& src) {
  if (dst.raw_data() == src.raw_data() && dst.shape() == src.shape()) return false;
  dst.copy_(src);
  return true;
}
}  // namespace

StepOutput StepRunner::step(const std::vector<int64_t>& tokens, DecoderState& state) {
  const int64_t K = static_cast<int64_t>(tokens.size());
  const int64_t V = decoder_.embedding.weight.size(0);
  for (size_t i = 0; i < tokens.size(); ++i)
    CAPTION_CHECK(tokens[i] >= 0 && tokens[i] < V, "decoding: token id ", tokens[i],
                  " at row ", i, " is out of range for the vocabulary (", V, " words)");
  CAPTION_CHECK(state.h.defined() && state.h.size(0) == K, "decoding: ", K,
                " tokens for a state of ", state.h.defined() ? state.h.describe() : "nothing");
  return run(Tensor::from_vector<int64_t>(tokens, {K}), state);
}

StepOutput StepRunner::step(const Tensor& device_tokens, DecoderState& state) {
  CAPTION_CHECK(device_tokens.defined() && device_tokens.device() == device_ && device_tokens.dim() == 1 &&
                    device_tokens.dtype() == DType::I64,
                "decoding: device tokens must be int64 [K] on ", device_.to_string(), ", got ",
                device_tokens.defined() ? device_tokens.describe() : std::string("nothing"));
  CAPTION_CHECK(state.h.defined() && state.h.size(0) == device_tokens.size(0), "decoding: ",
                device_tokens.size(0), " tokens for a state of ",
                state.h.defined() ? state.h.describe() : "nothing");
  const DeviceIndexChecksOff vouched;  // ids the caller made on the device (an arg-max)
  return run(device_tokens, state);
}

StepOutput StepRunner::run(const Tensor& tokens_in, DecoderState& state) {
  const int64_t K = tokens_in.size(0);
  const kernels::cpu::Bf16ShadowScope shadow_scope(shadows_.empty() ? nullptr : &shadows_);
  auto eager = [&] {
    ++stats_.eager_steps;
    return decoder_.step(tokens_in.to(device_), state);
  };
  if (!graphs_) return eager();
  std::unique_ptr<Graph>& slot = by_rows_[K];
  if (!slot) slot = std::make_unique<Graph>();
  Graph& g = *slot;
  if (g.failed) return eager();
  if (!g.graph.captured()) {
    if (g.eager_runs++ == 0) return eager();  // warm-up: the first step of K rows
    // The graph's inputs: tensors of its own, outside its memory pool.
    g.tokens = Tensor::empty({K}, DType::I64, device_);
    g.h = state.h.detach().clone();
    g.c = state.c.detach().clone();
    g.features = state.features.detach().clone();
    g.enc_proj = state.enc_proj.detach().clone();
    g.h_weight = state.h_weight.detach().clone();
    g.h_bias = state.h_bias.detach().clone();
    if (bf16_ && device_.is_cuda()) {  // the stacked weight read from a bfloat16 copy too
      g.h_weight16 = Tensor::empty({(g.h_weight.numel() + 1) / 2}, DType::F32, device_);
      shadows_.push_back({g.h_weight.data<float>(), g.h_weight.numel(),
                          static_cast<const uint16_t*>(g.h_weight16.raw_data())});
      shadow_storage_.push_back(g.h_weight16);
      refresh_shadows();
    }
    const bool ok = g.graph.capture(device_, [&] {
      DecoderState s{g.h, g.c, g.features, g.enc_proj, g.h_weight, g.h_bias};
      g.out = decoder_.step(g.tokens, s);
      g.h_out = s.h;
      g.c_out = s.c;
    });
    if (!ok) {
      g.failed = true;
      ++stats_.failed_captures;
      g.out = {};
      g.h_out = g.c_out = Tensor();
      log_warning(str("decoding on ", device_.to_string(), ": the step for ", K,
                      " rows could not be captured as a graph (", g.graph.failure(),
                      "); stepping without graphs"));
      return eager();
    }
    ++stats_.captures;
  }
  // New inputs, then the recorded step.
  g.tokens.copy_(tokens_in);
  copy_into(g.h, state.h);
  copy_into(g.c, state.c);
  copy_into(g.features, state.features);
  copy_into(g.enc_proj, state.enc_proj);
  if (copy_into(g.h_weight, state.h_weight) && g.h_weight16.defined())  // a new call's stacking
    cuda_bf16_copy(device_.index, g.h_weight.data<float>(), g.h_weight.numel(),
                   static_cast<uint16_t*>(g.h_weight16.raw_data()));
  copy_into(g.h_bias, state.h_bias);
  g.graph.replay();
  ++stats_.replays;
  // The state now lives in the graph's tensors: features and enc_proj are only read by
  // the graph, so the next step finds them in place; h and c are copied from its outputs
  // into its inputs.
  state.h = g.h_out;
  state.c = g.c_out;
  state.features = g.features;
  state.enc_proj = g.enc_proj;
  state.h_weight = g.h_weight;
  state.h_bias = g.h_bias;
  return g.out;
}

}  // namespace caption::nn
